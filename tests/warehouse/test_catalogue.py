"""The schema catalogue: one definition of each table's columns, and every door derived from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.catalogue import (
    EVENT_SCHEMA,
    EXPORT_TABLES,
    SAMPLE_SCHEMA,
    arrow_table,
    columns,
    required_columns,
)
from warehouse.models import Base
from warehouse.summaries import EARLY_WINDOWS

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter (the catalogue and the API's models are derived at import): a float column is
# added where a developer adds one, in the model and in a migration of its own, and nowhere else.
NEW_COLUMN = """
import asyncio, io, json, shutil, sys
from datetime import datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import mapped_column

import warehouse.migrate as migrate
from warehouse.models import TokenEvent

tmp = Path(sys.argv[1])
# 1. the model's column (the line a developer adds to warehouse/models.py)
TokenEvent.s1_logit = mapped_column(sa.Float, doc="System 1's top logit")
# 2. its migration, beside a copy of the real ones
migrations = tmp / "migrations"
shutil.copytree(migrate.MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
(migrations / "versions" / "9999_s1_logit.py").write_text(MIGRATION.replace("DOWN", migrate.head_revision()))
migrate.MIGRATIONS_DIR = migrations

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from api.app import create_app
from api.settings import ApiSettings
from tests.synthetic import config, events, manifest_of, samples_table
from warehouse.db import duckdb_connection, make_engine
from warehouse.export import export_parquet
from warehouse.ingest import ingest_pending
from warehouse.settings import staging_dir
from warehouse.staging import RunFinal, StagingWriter

path = tmp / "fsgen.duckdb"
migrate.upgrade(path)
engine = make_engine(path)
with engine.connect() as conn:
    opts = {"include_object": migrate.include_object, "compare_type": migrate.compare_type}
    diff = compare_metadata(MigrationContext.configure(conn, opts=opts), migrate.Base.metadata)
engine.dispose()
assert diff == [], diff

rng = np.random.default_rng(0)
lengths = [5, 3]
table = events(rng, lengths, 0.2, False)
staged = (np.arange(table.num_rows, dtype=np.float32) + 0.25).tolist()
table = table.append_column("s1_logit", pa.array(staged, pa.float32()))
writer = StagingWriter(staging_dir(path), "run-a")
writer.write_manifest(manifest_of(config(), "run-a", len(lengths)))
writer.write_batch(0, samples_table(lengths, rng), table)
cost = {"kind": "decode", "tokens": 8, "batch_size": 2, "seconds": 0.5}
writer.write_final(RunFinal("complete", datetime.now().isoformat(), 1.0, 8.0, None, [cost]))
doors = {}
with duckdb_connection(path) as con:
    ingest_pending(con, path)
    rows = con.execute("SELECT run_id, s1_logit FROM token_events ORDER BY sample_id, step").fetchall()
    doors["warehouse"] = [r[1] for r in rows]
    export_parquet(con, tmp / "export")
run_id = rows[0][0]
exported = pq.read_table(tmp / "export" / "token_events", partitioning=None)
exported = exported.sort_by([("sample_id", "ascending"), ("step", "ascending")])
doors["export"] = exported["s1_logit"].to_pylist()
doors["export_run_costs"] = pq.read_table(tmp / "export" / "run_costs")["seconds"].to_pylist()


async def api_doors() -> None:
    app = create_app(ApiSettings(warehouse=path, ingest=False))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = f"/v1/runs/{run_id}/events"
            page = (await client.get(url)).json()
            doors["events"] = [e["s1_logit"] for e in page["data"]]
            nd = (await client.get(url, params={"format": "ndjson"})).text.splitlines()
            doors["ndjson"] = [json.loads(line)["s1_logit"] for line in nd]
            parquet = (await client.get(url, params={"format": "parquet"})).content
            doors["parquet"] = pq.read_table(io.BytesIO(parquet))["s1_logit"].to_pylist()
            tokens = []
            for sample_id in range(len(lengths)):
                tokens += (await client.get(f"/v1/runs/{run_id}/samples/{sample_id}")).json()["tokens"]
            doors["sample tokens"] = [t["s1_logit"] for t in tokens]
            schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
            doors["openapi"] = schema["EventPublic"]["properties"]["s1_logit"]["description"]
    finally:
        app.state.db.close()


asyncio.run(api_doors())
print(json.dumps({"staged": staged, "doors": doors}))
"""
MIGRATION = '''"""token_events.s1_logit (written by tests/warehouse/test_catalogue.py)."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "DOWN"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("token_events", sa.Column("s1_logit", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("token_events", "s1_logit")
'''


def test_a_new_float_column_reaches_every_door(tmp_path: Path) -> None:
    script = f"MIGRATION = {MIGRATION!r}\n{NEW_COLUMN}"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    staged, doors = out["staged"], out["doors"]
    assert doors.pop("openapi") == "System 1's top logit"
    assert doors.pop("export_run_costs") == [0.5]
    assert set(doors) == {"warehouse", "export", "events", "ndjson", "parquet", "sample tokens"}
    for door, values in doors.items():
        assert values == staged, door  # a float, every value as staged (n + 0.25 is exact in float32)


def test_staged_schemas_are_the_tables_columns_less_run_id() -> None:
    for schema, table in ((EVENT_SCHEMA, "token_events"), (SAMPLE_SCHEMA, "samples")):
        cols = [c for c in columns(table) if c.name != "run_id"]
        assert schema.names == [c.name for c in cols]
        assert required_columns(schema) == tuple(c.name for c in cols if not c.nullable)
    assert {"accept_prob", "draft_index", "accepted"} <= set(EVENT_SCHEMA.names)
    assert EVENT_SCHEMA.field("accept_prob").type == pa.float32()


def test_the_export_lists_every_table_and_partitions_the_per_token_ones() -> None:
    assert {t for t, _ in EXPORT_TABLES} == set(Base.metadata.tables)
    assert {t for t, p in EXPORT_TABLES if p} == {"samples", "token_events", "spec_cycles"}
    assert "run_costs" in dict(EXPORT_TABLES)


def test_an_arrow_table_refuses_unknown_and_missing_columns() -> None:
    row = {name: [0] for name in required_columns(SAMPLE_SCHEMA)}
    assert arrow_table(row, SAMPLE_SCHEMA).schema.names == list(required_columns(SAMPLE_SCHEMA))
    with pytest.raises(ValueError, match="not in the schema: \\['s1_logit'\\]"):
        arrow_table({**row, "s1_logit": [0.5]}, SAMPLE_SCHEMA)
    with pytest.raises(ValueError, match="missing: \\['item_id'\\]"):
        arrow_table({k: v for k, v in row.items() if k != "item_id"}, SAMPLE_SCHEMA)


def test_the_readme_schema_names_every_column_of_every_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Warehouse schema", 1)[1].split("\n## ", 1)[0]
    for table in Base.metadata.sorted_tables:
        row = re.search(rf"^\| `{table.name}` \|(.+)$", section, re.MULTILINE)
        assert row, f"README's schema table has no row for {table.name}"
        named = set(re.findall(r"\w+", row.group(1)))
        for stem, lo, hi in re.findall(r"(\w+?)_(\d+)` … `\1_(\d+)", row.group(1)):  # a range: a_1 … a_16
            named |= {f"{stem}_{i}" for i in range(int(lo), int(hi) + 1)}
        if "tokens_<w>, mismatches_<w>" in row.group(1):  # a family of columns: a pair per window named
            named |= {f"{what}_{w}" for w in EARLY_WINDOWS if w in named for what in ("tokens", "mismatches")}
        missing = [c.name for c in table.columns if c.name not in named]
        assert not missing, f"README's schema row of {table.name} lacks {missing}"
