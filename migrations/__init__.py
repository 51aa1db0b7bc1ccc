"""Alembic migrations of the fsgen warehouse (run them with `python -m warehouse upgrade`)."""
