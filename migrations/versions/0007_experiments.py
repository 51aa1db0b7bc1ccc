"""Experiments: `runs.experiment`, the run's identity, tags and exclusion; `pair_cof` by identity.

Existing runs join the experiment `default`. Their `identity` (a hash of the settings that define a run)
and `setup` (the same without the pair's models) are computed here from each run's recorded settings, with
a copy of `collector.config.settings_hash` and of the settings that define a run, with their defaults, as
they stood at this revision (a migration never imports the package; a setting missing from an old run's
record takes its default, and a setting at its default is left out, as `RunConfig.identity_values`
does, so settings added later leave identities as they were); a test checks that a run's backfilled
identity equals the one the collector writes. `pair_cof` now keeps runs of different experiments and
settings apart and leaves excluded runs out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The settings that define a run at this revision (collector.config.DEFINING) and their defaults.
DEFINING = {
    "llm": None, "slm": None, "method": "oracle", "slm_tuned": None, "router": "always", "threshold": None,
    "router_model": None, "dataset": None, "dataset_path": None, "prompts": None, "seed": 0, "shots": None,
    "max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "draft_k": 5, "draft_stop": None,
    "draft_threshold": None, "alpha": 0.1, "lam": 0.5, "weight": 1.0, "device": None, "dtype": None,
    "truncate_prompt": False,
}  # fmt: skip
PAIR = ("llm", "slm", "slm_tuned")
RESOLVED = ("llm", "slm", "slm_tuned", "device", "dtype")  # as the runs row holds them

PAIR_COF = """
    SELECT r.experiment, r.setup, r.identity, r.llm, r.slm,
           ml.params AS llm_params, ms.params AS slm_params,
           CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
           r.method, r.router, r.dataset,
           count(*) AS runs,
           CAST(sum(c.tokens) AS BIGINT) AS tokens,
           CAST(sum(c.mismatches) AS BIGINT) AS mismatches,
           CAST(sum(c.mismatches) AS DOUBLE) / nullif(sum(c.tokens), 0) AS cof
    FROM runs r
    JOIN run_cof c ON c.run_id = r.run_id
    JOIN models ml ON ml.name = r.llm
    JOIN models ms ON ms.name = r.slm
    WHERE r.status = 'complete' AND NOT r.excluded
    GROUP BY r.experiment, r.setup, r.identity, r.llm, r.slm, ml.params, ms.params, r.method, r.router,
             r.dataset
"""
PAIR_COF_0001 = """
    SELECT r.llm, r.slm,
           ml.params AS llm_params, ms.params AS slm_params,
           CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
           r.method, r.router, r.dataset,
           count(*) AS runs,
           CAST(sum(c.tokens) AS BIGINT) AS tokens,
           CAST(sum(c.mismatches) AS BIGINT) AS mismatches,
           CAST(sum(c.mismatches) AS DOUBLE) / nullif(sum(c.tokens), 0) AS cof
    FROM runs r
    JOIN run_cof c ON c.run_id = r.run_id
    JOIN models ml ON ml.name = r.llm
    JOIN models ms ON ms.name = r.slm
    WHERE r.status = 'complete'
    GROUP BY r.llm, r.slm, ml.params, ms.params, r.method, r.router, r.dataset
"""


def settings_hash(values: dict[str, object]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_of(settings: str, resolved: dict[str, object]) -> tuple[str, str]:
    recorded = json.loads(settings or "{}")
    values = {k: recorded[k] for k, default in DEFINING.items() if k in recorded and recorded[k] != default}
    values.update(resolved)
    setup = {k: v for k, v in values.items() if k not in PAIR}
    return settings_hash(values), settings_hash(setup)


def upgrade() -> None:
    op.execute("DROP VIEW pair_cof")
    op.add_column("runs", sa.Column("experiment", sa.Text(), server_default="default", nullable=False))
    op.add_column("runs", sa.Column("identity", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("setup", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("tags", sa.Text(), server_default="[]", nullable=False))
    op.add_column("runs", sa.Column("excluded", sa.Boolean(), server_default=sa.false(), nullable=False))
    conn = op.get_bind()
    cols = ", ".join(RESOLVED)
    rows = conn.execute(sa.text(f"SELECT run_id, settings, {cols} FROM runs")).fetchall()
    for run_id, settings, *resolved in rows:
        identity, setup = identity_of(settings, dict(zip(RESOLVED, resolved, strict=True)))
        conn.execute(
            sa.text("UPDATE runs SET identity = :i, setup = :s WHERE run_id = :r"),
            {"i": identity, "s": setup, "r": run_id},
        )
    op.execute(f"CREATE VIEW pair_cof AS {PAIR_COF}")


def downgrade() -> None:
    op.execute("DROP VIEW pair_cof")
    for col in ("excluded", "tags", "setup", "identity", "experiment"):
        op.drop_column("runs", col)
    op.execute(f"CREATE VIEW pair_cof AS {PAIR_COF_0001}")
