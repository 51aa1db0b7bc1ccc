"""The README's notebook example runs as written on a real warehouse, and lists every exported function."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl

import analytics
from tests.analytics.conftest import build_sweep

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("## Python API (notebooks)") :].split("\n## ", 1)[0]


def test_readme_example_runs_and_returns_frames(empty_warehouse: Path) -> None:
    with duckdb.connect(str(empty_warehouse)) as con:
        build_sweep(con)
    code = re.search(r"```python\n(.*?)```", _section(), re.S)
    assert code is not None
    scope: dict[str, object] = {}
    exec(code.group(1).replace('"fsgen.duckdb"', repr(str(empty_warehouse))), scope)  # noqa: S102
    cof = scope["cof"]
    assert isinstance(cof, pl.DataFrame) and cof.height == 5 and cof["cof"].is_between(0, 1).all()
    assert isinstance(scope["profile"], pl.DataFrame) and isinstance(scope["auroc"], pl.DataFrame)
    assert type(scope["advice"]).__name__ == "Advice"


def test_every_export_is_listed_and_resolves() -> None:
    section = _section()
    for name in analytics.__all__:
        assert f"`{name}`" in section, name
        assert callable(getattr(analytics, name))
