"""`python -m warehouse sql --format csv|json|parquet [--out FILE]`: machine formats, nothing cut."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest

from warehouse.__main__ import main
from warehouse.sql import sql_door

WIDE = (
    "SELECT range AS i, "
    + ", ".join(f"range * {k} AS column_number_{k}" for k in range(12))
    + " FROM range(300)"
)


def test_piped_table_keeps_every_row_and_column(
    warehouse_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # captured stdout is not a terminal, as a pipe is not
    assert main(["--warehouse", str(warehouse_path), "sql", WIDE]) == 0
    out = capsys.readouterr().out
    assert "column_number_11" in out and "shown" not in out
    first_cells = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert first_cells[2:] == [str(i) for i in range(300)]  # (a terminal shows 200 rows)


def test_csv_json_and_parquet_hold_the_whole_result(
    warehouse_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert (
        main(["--warehouse", str(warehouse_path), "sql", WIDE, "--format", "parquet", "--out", str(target)])
        == 0
    )
    assert pl.read_parquet(target).equals(want)
    two = ["--format", "parquet", "--out", str(tmp_path / "two.parquet")]
    assert main(["--warehouse", str(warehouse_path), "sql", "SELECT 1; SELECT 2", *two]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one result" in err
