"""Keyset pages, walked to the end, are the ordered rows once each, at any page size."""

from __future__ import annotations

import duckdb
import pytest

from api.deps import Keyset


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_pages_walk_every_row_once_in_order(size: int) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i % 4 AS a, i % 3 AS b, i AS c FROM range(30) r(i)")
    keyset = Keyset(("a", "b", "c"), ("t.a", "t.b", "t.c"))
    everything = con.execute(f"SELECT a, b, c FROM t ORDER BY {keyset.order_by}").fetchall()
    walked: list[tuple[int, ...]] = []
    cursor: str | None = None
    while True:
        after, params = keyset.after(cursor)
        rows = con.execute(
            f"SELECT a, b, c FROM t WHERE {after} ORDER BY {keyset.order_by} LIMIT ?", [*params, size + 1]
        ).fetchall()
        page = keyset.page(rows, size, lambda r: r)
        walked += page.rows
        assert page.truncated == (page.next_cursor is not None)
        if not page.truncated:
            break
        cursor = page.next_cursor
    assert walked == everything
