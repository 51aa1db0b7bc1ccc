"""`python -m warehouse sql --format csv|json|parquet [--out FILE]`: machine formats, nothing cut."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from warehouse.sql import sql_door

WIDE = (
    "SELECT range AS i, "
    + ", ".join(f"range * {k} AS column_number_{k}" for k in range(12))
    + " FROM range(300)"
)


def test_piped_table_keeps_every_row_and_column(warehouse_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warehouse", "--warehouse", str(warehouse_path), "sql", WIDE],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "column_number_11" in done.stdout and "shown" not in done.stdout
    first_cells = [line.split("│")[1].strip() for line in done.stdout.splitlines() if line.startswith("│")]
    assert first_cells[2:] == [str(i) for i in range(300)]  # (a terminal shows 200 rows)


def test_csv_json_and_parquet_hold_the_whole_result(warehouse_path: Path, tmp_path: Path) -> None:
    want = pl.DataFrame({"i": range(300)}).with_columns(
        *[(pl.col("i") * k).alias(f"column_number_{k}") for k in range(12)]
    )
    out = io.StringIO()
    assert sql_door(warehouse_path, WIDE, out=out, fmt="csv") == 0
    assert pl.read_csv(io.StringIO(out.getvalue())).equals(want)
    out = io.StringIO()
    assert sql_door(warehouse_path, WIDE, out=out, fmt="json") == 0
    assert pl.DataFrame(json.loads(out.getvalue())).equals(want)
    target = tmp_path / "r.parquet"
    assert sql_door(warehouse_path, WIDE, fmt="parquet", out_path=target) == 0
    assert pl.read_parquet(target).equals(want)
    done = subprocess.run(
        [sys.executable, "-m", "warehouse", "--warehouse", str(warehouse_path), "sql", "SELECT 1; SELECT 2",
         "--format", "parquet", "--out", str(tmp_path / "two.parquet")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "one result" in done.stderr
