"""The query layer runs only what DuckDB's parser classifies as one SELECT; each request has its cursor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.db import Database, NotASelect, Watchdog, require_select, select
from api.errors import ApiError


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO models (name, path, params, created_at) VALUES ('x', 'x', 1, now())",
        "DROP TABLE token_events",
        "ATTACH '/tmp/other.duckdb' AS other",
        "COPY token_events TO '/tmp/leak.csv'",
        "SET threads = 1",
        "PRAGMA enable_profiling",
        "SELECT 1; DROP TABLE runs",
        "SELECT 1; SELECT 2",
        "DELETE FROM runs",
        "UPDATE runs SET status = 'x'",
        "CREATE TABLE t AS SELECT 1",
        "CALL pragma_version()",
        "EXPLAIN SELECT 1",
        "this is not sql",
    ],
)
def test_refuses_anything_but_one_select(warehouse_path: Path, sql: str) -> None:
    db = Database(warehouse_path, 5000, ingest=True)  # even on the writable connection
    cur = db.cursor()
    before = select(cur, "SELECT count(*) AS n FROM models")
    with pytest.raises(NotASelect) as err:
        select(cur, sql)
    assert err.value.status == 400
    assert select(cur, "SELECT count(*) AS n FROM models") == before
    assert {r["table_name"] for r in select(cur, "SELECT table_name FROM information_schema.tables")} >= {
        "runs",
        "token_events",
    }
    cur.close()
    db.close()


@pytest.mark.parametrize(
    "sql", ["SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a", "FROM runs", "SELECT 1;"]
)
def test_passes_a_select(sql: str) -> None:
    require_select(sql)


def test_a_refused_statement_is_refused_every_time() -> None:
    for _ in range(2):  # the check remembers only statements that passed
        with pytest.raises(NotASelect):
            require_select("DELETE FROM runs")


def test_each_cursor_is_its_own(warehouse_path: Path) -> None:
    db = Database(warehouse_path, 5000)
    a, b = db.cursor(), db.cursor()
    assert a is not b
    rel = a.execute("SELECT * FROM range(10)")  # a half-read result on one cursor blocks no other
    assert select(b, "SELECT 42 AS x") == [{"x": 42}]
    assert len(rel.fetchall()) == 10
    a.close()
    b.close()
    db.close()


def test_a_query_past_its_limit_is_interrupted_and_fast_ones_are_not(warehouse_path: Path) -> None:
    db = Database(warehouse_path, 5000)
    cur = db.cursor()
    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        select(cur, "SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3", limit_ms=300)
    assert err.value.status == 503 and err.value.code == "query_timeout"
    assert time.monotonic() - started < 4.0
    # Many quick queries under short limits: each is disarmed, none is interrupted later.
    for _ in range(200):
        assert select(cur, "SELECT 1 AS x", limit_ms=50) == [{"x": 1}]
    time.sleep(0.2)
    assert select(cur, "SELECT 2 AS x") == [{"x": 2}]
    cur.close()
    db.close()


def test_the_watchdog_outlives_a_failing_action() -> None:
    dog = Watchdog()
    ran: list[str] = []

    def fail() -> None:
        ran.append("fail")
        raise RuntimeError("boom")

    dog.arm(0.01, fail)
    dog.arm(0.05, lambda: ran.append("later"))
    dog.disarm(dog.arm(0.02, lambda: ran.append("disarmed")))
    deadline = time.monotonic() + 5
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert ran == ["fail", "later"]


def test_an_earlier_deadline_armed_after_a_later_one_fires_first() -> None:
    dog = Watchdog()
    ran: list[str] = []
    dog.arm(0.3, lambda: ran.append("late"))
    time.sleep(0.05)  # the thread now waits for the late one
    dog.arm(0.01, lambda: ran.append("early"))
    deadline = time.monotonic() + 5
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran == ["early", "late"]
