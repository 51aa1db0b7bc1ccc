"""Serving engines' acceptance (imported with `python -m warehouse import`) beside the replay's prediction.

Per (engine, model, draft, K): requests, verify steps, drafted and accepted drafts, acceptance = accepted
/ drafted, mean accepted length = 1 + accepted / steps (tokens per verify step, the engines' own
definition). By draft position i (from the accepted-count histograms): steps reaching i (accepted ≥ i),
accepted there (accepted > i), and P(accept at i | reached): the same figures `acceptance_by_position`
gives for collected runs, so the two read alike (`imported` marks the served ones).

`against(import_id)` replays the greedy oracle run of the same pair (LLM = model, System 1 = draft) at
the served K and sets both side by side with 95% intervals: Wilson intervals per position (binomial over
verify steps, which treats the steps of one request as independent) and a normal interval of the mean
accepted length over steps; a row `differs` where the two intervals do not overlap.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np
import polars as pl

from analytics.frames import Col, FrameSchema
from analytics.source import AnalyticsError, Source, connect, query, query_rows, table_columns
from analytics.speculative import oracle_trace, replay_cycles

KEYS = ("engine", "model", "draft", "k")
# The imported requests' keys (engine, model, draft, K: the draft length where the engine fixes one).
SERVED_KEYS = FrameSchema.of(engine=Col(str), model=Col(str), draft=Col(str), k=Col(int, nullable=True))
IMPORTED = FrameSchema.of(imported=Col(bool, "always true: served, not collected"))
# The columns `served_summary` and `served_by_position` return.
SERVED = SERVED_KEYS.plus(
    FrameSchema.of(
        requests=Col(int),
        steps=Col(int, "verify steps", nullable=True),
        drafted=Col(int),
        accepted=Col(int),
        acceptance=Col(float, "accepted / drafted"),
        mean_accepted_length=Col(float, "1 + accepted / verify steps"),
    ),
    IMPORTED,
)
SERVED_POSITIONS = SERVED_KEYS.plus(
    FrameSchema.of(
        position=Col(int, "draft position i, 0 first"),
        reached=Col(int, "verify steps that reached position i"),
        accepted=Col(int, "of them, steps that accepted the draft at i"),
        acceptance_rate=Col(float, "P(accept | reached)"),
    ),
    IMPORTED,
)
Z95 = 1.959963984540054


def has_served(source: Source) -> bool:
    """Whether the warehouse has the imported-requests tables (schema 0009 and later)."""
    return bool(table_columns(source, "served_requests"))


def _where(
    import_id: int | None, model: str | None = None, draft: str | None = None
) -> tuple[str, list[Any]]:
    """Requests of one import, and of one model and draft, where given."""
    given = {"import_id": import_id, "model": model, "draft": draft}
    clauses = [(f"r.{c} = ?", v) for c, v in given.items() if v is not None]
    return ("WHERE " + " AND ".join(c for c, _ in clauses) if clauses else ""), [v for _, v in clauses]


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """A few rows of one statement."""
    return pl.DataFrame(query_rows(con, sql, params), schema=schema, orient="row")


def _summary(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> pl.DataFrame:
    frame = _frame(
        con,
        f"""SELECT r.engine, r.model, r.draft, CAST(r.k AS BIGINT) AS k,
                   CAST(count(*) AS BIGINT) AS requests, CAST(sum(r.steps) AS BIGINT) AS steps,
                   CAST(sum(r.drafted) AS BIGINT) AS drafted, CAST(sum(r.accepted) AS BIGINT) AS accepted
            FROM served_requests r {where} GROUP BY ALL ORDER BY ALL""",
        params,
        SERVED.polars(leave_out=("acceptance", "mean_accepted_length", "imported")),
    )
    return frame.with_columns(
        (pl.col("accepted") / pl.col("drafted")).alias("acceptance"),
        (1 + pl.col("accepted") / pl.col("steps")).alias("mean_accepted_length"),
        pl.lit(True).alias("imported"),
    ).select(SERVED.names)


def _positions(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> pl.DataFrame:
    frame = _frame(
        con,
        f"""WITH h AS (
                SELECT r.engine, r.model, r.draft, CAST(r.k AS BIGINT) AS k, h.accepted AS a,
                       sum(h.steps) AS n
                FROM served_histogram h JOIN served_requests r USING (request_id) {where} GROUP BY ALL
            )
            SELECT engine, model, draft, k, CAST(t.i AS BIGINT) AS position,
                   CAST(coalesce(sum(n) FILTER (WHERE a >= t.i), 0) AS BIGINT) AS reached,
                   CAST(coalesce(sum(n) FILTER (WHERE a > t.i), 0) AS BIGINT) AS accepted
            FROM h, range(h.k) t(i) GROUP BY ALL ORDER BY ALL""",
        params,
        SERVED_POSITIONS.polars(leave_out=("acceptance_rate", "imported")),
    )
    return frame.with_columns(
        pl.when(pl.col("reached") > 0).then(pl.col("accepted") / pl.col("reached")).alias("acceptance_rate"),
        pl.lit(True).alias("imported"),
    ).select(SERVED_POSITIONS.names)


def served_summary(source: Source, import_id: int | None = None) -> pl.DataFrame:
    """Per (engine, model, draft, K): the served requests' totals, acceptance and mean accepted length."""
    with connect(source) as con:
        if not has_served(con):
            return pl.DataFrame(schema=SERVED.polars())
        return _summary(con, *_where(import_id))


def served_by_position(source: Source, import_id: int | None = None) -> pl.DataFrame:
    """Per (engine, model, draft, K) and draft position: steps reaching it, accepted there, the rate."""
    with connect(source) as con:
        if not has_served(con):
            return pl.DataFrame(schema=SERVED_POSITIONS.polars())
        return _positions(con, *_where(import_id))


def served_tables(
    source: Source, model: str | None = None, draft: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`served_summary` and `served_by_position` of the requests of one model and draft where given."""
    with connect(source) as con:
        if not has_served(con):
            return pl.DataFrame(schema=SERVED.polars()), pl.DataFrame(schema=SERVED_POSITIONS.polars())
        where = _where(None, model, draft)
        return _summary(con, *where), _positions(con, *where)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (nan, nan for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _length_interval(hist: dict[int, int]) -> tuple[float, float, float]:
    """Mean tokens per step (1 + accepted) and its normal 95% interval over steps."""
    n = sum(hist.values())
    if n == 0:
        return math.nan, math.nan, math.nan
    values = np.array([a for a, c in hist.items() for _ in range(c)], dtype=float) + 1
    mean, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return mean, mean - Z95 * se, mean + Z95 * se


def _served_hist(source: Source, import_id: int, model: str, draft: str, k: int) -> dict[int, int]:
    with connect(source) as con:
        rows = query(
            con,
            """SELECT h.accepted, sum(h.steps) AS n FROM served_histogram h JOIN served_requests r
               USING (request_id) WHERE r.import_id = ? AND r.model = ? AND r.draft = ? AND r.k = ?
               GROUP BY 1""",
            [import_id, model, draft, k],
        )
    return {int(a): int(n) for a, n in rows.iter_rows()}


def replay_hist(source: Source, run_id: int, k: int) -> dict[int, int]:
    """Accepted drafts per cycle of the oracle run replayed at K (cycles a sample's end cut are left out,
    as a served step always verifies K)."""
    cycles = replay_cycles(oracle_trace(source, run_id), k).filter(pl.col("drafted") == k)
    counts = cycles.group_by("accepted").len()
    return {int(a): int(n) for a, n in counts.iter_rows()}


def _oracle_run(source: Source, model: str, draft: str) -> int:
    with connect(source) as con:
        rows = query(
            con,
            """SELECT max(run_id) FROM runs WHERE llm = ? AND slm = ? AND method = 'oracle'
               AND router = 'always' AND temperature = 0 AND status = 'complete'""",
            [model, draft],
        )
    if rows.height == 0 or rows[0, 0] is None:
        raise AnalyticsError(
            f"no complete greedy oracle run of {model} with {draft} to replay; collect one with "
            f"python -m collector.run --llm {model} --slm {draft} --method oracle"
        )
    return int(rows[0, 0])


def _rows(hist_s: dict[int, int], hist_r: dict[int, int], k: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(k):
        sr, sa = sum(n for a, n in hist_s.items() if a >= i), sum(n for a, n in hist_s.items() if a > i)
        rr, ra = sum(n for a, n in hist_r.items() if a >= i), sum(n for a, n in hist_r.items() if a > i)
        (s_lo, s_hi), (r_lo, r_hi) = wilson(sa, sr), wilson(ra, rr)
        rows.append({"figure": f"acceptance at position {i}", "served": sa / sr if sr else math.nan,
                     "served_lo": s_lo, "served_hi": s_hi, "replay": ra / rr if rr else math.nan,
                     "replay_lo": r_lo, "replay_hi": r_hi})  # fmt: skip
    (sm, s_lo, s_hi), (rm, r_lo, r_hi) = _length_interval(hist_s), _length_interval(hist_r)
    rows.append({"figure": "mean accepted length", "served": sm, "served_lo": s_lo, "served_hi": s_hi,
                 "replay": rm, "replay_lo": r_lo, "replay_hi": r_hi})  # fmt: skip
    return rows


def against(source: Source, import_id: int) -> pl.DataFrame:
    """Served acceptance by position and mean accepted length beside the replay's, per (model, draft, K)
    of the import, with 95% intervals and whether they differ beyond them (see the module docstring)."""
    summary = served_summary(source, import_id)
    if summary.height == 0:
        raise AnalyticsError(
            f"no imported requests with import id {import_id}; see python -m warehouse import"
        )
    out = []
    for r in summary.iter_rows(named=True):
        if r["k"] is None:
            raise AnalyticsError(f"import {import_id} ({r['engine']}) has no K; import it again with --k")
        run_id = _oracle_run(source, r["model"], r["draft"])
        hist_s = _served_hist(source, import_id, r["model"], r["draft"], r["k"])
        hist_r = replay_hist(source, run_id, r["k"])
        if hist_s:
            rows = _rows(hist_s, hist_r, r["k"])
        else:  # an engine without histograms (TensorRT-LLM): the mean accepted length only, no interval
            served = r["mean_accepted_length"]
            rm, r_lo, r_hi = _length_interval(hist_r)
            rows = [{"figure": "mean accepted length", "served": math.nan if served is None else served,
                     "served_lo": math.nan, "served_hi": math.nan, "replay": rm, "replay_lo": r_lo,
                     "replay_hi": r_hi}]  # fmt: skip
        key = {k: r[k] for k in KEYS} | {"oracle_run_id": run_id}
        out += [{**key, **row} for row in rows]
    frame = pl.DataFrame(out)
    overlap = (pl.col("served_lo") <= pl.col("replay_hi")) & (pl.col("replay_lo") <= pl.col("served_hi"))
    return frame.with_columns(
        pl.when(pl.col("served_lo").is_nan() | pl.col("replay_lo").is_nan())
        .then(None)
        .otherwise(~overlap)
        .alias("differs")
    )


def print_against(frame: pl.DataFrame, import_id: int) -> None:
    """The comparison as a Markdown table."""
    print(
        f"Import {import_id}: served acceptance beside the replay of the pair's oracle run (95% intervals)\n"
    )
    print("| engine | model | draft | K | run | figure | served | replay | differs |")
    print("|---|---|---|---:|---:|---|---|---|---|")

    def cell(v: float, lo: float, hi: float) -> str:
        return f"{v:.3f}" + ("" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]")

    for r in frame.iter_rows(named=True):
        flag = {True: "**yes**", False: "no", None: "—"}[r["differs"]]
        print(
            f"| {r['engine']} | {r['model']} | {r['draft']} | {r['k']} | {r['oracle_run_id']} "
            f"| {r['figure']} "
            f"| {cell(r['served'], r['served_lo'], r['served_hi'])} "
            f"| {cell(r['replay'], r['replay_lo'], r['replay_hi'])} | {flag} |"
        )
