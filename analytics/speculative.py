"""Speculative decoding: acceptance by draft position, accepted length, predicted and measured speed-up.

Reads `spec_cycles(run_id, sample_id, cycle, drafted, accepted)` (one row per draft/verify round) and the
nullable `token_events.draft_index` / `token_events.accepted`. A warehouse without them (schema before the
speculative migration) gives empty frames, never an error.

The speed-ups are `analytics.speedup`'s (one definition for every door). Beside them, labelled as the FLOP
model, the speed-up of K drafted tokens with per-token acceptance a if a forward cost its parameter count,
c = N_SLM / N_LLM (Leviathan et al., 2023): (1 − a^(K+1)) / ((1 − a)(K·c + 1)).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Filters,
    Source,
    check_group_by,
    connect,
    query,
    query_rows,
    run_column_dtype,
    runs_where,
    table_columns,
)
from analytics.speedup import (
    FLOP_MODEL,
    INPUT_NAMES,
    RUN_INPUTS,
    SAMPLE_SUMS,
    SPEEDUP,
    drafted_counts,
    speedup_rows,
)
from warehouse import vocabulary

# The columns `acceptance_by_position` returns after its group-by columns.
ACCEPTANCE = FrameSchema.of(
    position=Col(int, "draft position i, 0 first"),
    reached=Col(int, "cycles that reached position i"),
    accepted=Col(int, "of them, cycles that kept the draft at i"),
    cycles=Col(int, nullable=True),
    acceptance_rate=Col(float, "P(accept | reached)"),
    survival=Col(float, "P(kept > i): accepted / cycles"),
)
# The columns `speculative_runs` returns.
RUN = FrameSchema.of(
    run_id=Col(int),
    llm=Col(str, nullable=True),
    slm=Col(str, nullable=True),
    dataset=Col(str, nullable=True),
    draft_k=Col(int, nullable=True),
    cycles=Col(int, nullable=True),
    drafted=Col(int, nullable=True),
    accepted=Col(int, nullable=True),
    acceptance=Col(float, "per-token acceptance a = accepted / verified positions"),
    mean_accepted=Col(float),
    tokens_per_cycle=Col(float),
    cost_ratio=Col(float, "c = params(SLM) / params(LLM), the FLOP model's"),
    flop_model_speedup=Col(float, FLOP_MODEL),
).plus(SPEEDUP.drop("run_id"))
ACCEPTANCE_SCHEMA = ACCEPTANCE.polars()
RUN_SCHEMA = RUN.polars()
EMITTED_SCHEMA = {"draft_index": pl.Int64, "accepted": pl.Boolean, "tokens": pl.Int64}


def expected_speedup(
    acceptance: npt.ArrayLike, k: npt.ArrayLike, cost_ratio: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """The FLOP model: (1 − a^(K+1)) / ((1 − a)(K·c + 1)), with its limit (K + 1) / (K·c + 1) at a = 1."""
    a = np.asarray(acceptance, dtype=float)
    kk = np.asarray(k, dtype=float)
    c = np.asarray(cost_ratio, dtype=float)
    near_one = np.isclose(a, 1.0)
    safe = np.where(near_one, 0.5, a)
    tokens = np.where(near_one, kk + 1, (1 - safe ** (kk + 1)) / (1 - safe))  # expected tokens per cycle
    return np.asarray(tokens / (kk * c + 1), dtype=float)


def has_speculative_data(source: Source) -> bool:
    """True when the warehouse has the `spec_cycles` table (rows or not)."""
    return bool(table_columns(source, "spec_cycles") >= {"run_id", "drafted", "accepted"})


# The runs columns the runs table shows beside its sums.
_SHOWN = ("run_id", "llm", "slm", "dataset", "settings")


@dataclass(frozen=True)
class Cycles:
    """`spec_cycles` of the runs in scope counted by (run, drafted, accepted): `n` cycles per row (a few
    dozen rows a run) and each row's group-by key; `runs`: each run's shown columns, pair cost ratio,
    and what its speed-ups read (`analytics.speedup.RUN_INPUTS`, prompts and tokens), by run_id."""

    run: npt.NDArray[np.int64]
    drafted: npt.NDArray[np.int64]
    accepted: npt.NDArray[np.int64]
    n: npt.NDArray[np.int64]
    keys: list[tuple[Any, ...]]
    runs: dict[int, dict[str, Any]]


def _cycles(con: duckdb.DuckDBPyConnection, filters: Filters | None, cols: Sequence[str] = ()) -> Cycles:
    """The runs in scope (one query), then their cycles by (drafted, accepted) and their samples' sums in
    one more: the run ids as values let DuckDB skip the row groups of other runs."""
    where, params = runs_where(filters)
    keys = check_group_by(cols or ["run_id"])
    own = [*INPUT_NAMES, "cost_ratio"]
    more = [c for c in dict.fromkeys([*_SHOWN, *keys]) if c not in own]
    found = query_rows(
        con,
        f"""SELECT {RUN_INPUTS}, CAST(ms.params AS DOUBLE) / ml.params AS cost_ratio,
                   {", ".join(f'r."{c}"' for c in more)}
            FROM runs r LEFT JOIN models ml ON ml.name = r.llm LEFT JOIN models ms ON ms.name = r.slm
            {where}""",
        params,
    )
    scope = {row[len(own)]: dict(zip([*own, *more], row, strict=True)) for row in found}
    rows = []
    if scope:
        marks = ", ".join("?" for _ in scope)
        rows = query_rows(
            con,
            f"""SELECT run_id, CAST(drafted AS BIGINT), CAST(accepted AS BIGINT), count(*), NULL::DOUBLE
                FROM spec_cycles WHERE run_id IN ({marks}) GROUP BY run_id, drafted, accepted
                UNION ALL
                SELECT run_id, NULL, NULL, prompts, tokens FROM ({SAMPLE_SUMS.format(marks=marks)})""",
            [*scope, *scope],
        )
    for run in scope.values():
        run["prompts"], run["tokens"] = 0, None
    counted = []
    for run_id, drafted, accepted, n, tokens in rows:
        if drafted is None:
            scope[run_id]["prompts"], scope[run_id]["tokens"] = n, tokens
        else:
            counted.append((run_id, drafted, accepted, n))
    table = np.array(counted, dtype=np.int64).reshape(-1, 4)
    infos = [scope[r] for r in table[:, 0].tolist()]
    return Cycles(
        run=table[:, 0],
        drafted=table[:, 1],
        accepted=table[:, 2],
        n=table[:, 3],
        keys=[tuple(info[k] for k in keys) for info in infos],
        runs={r: scope[r] for r in sorted(set(table[:, 0].tolist()))},
    )


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    """Ascending, nulls last in each column."""
    return tuple((v is None, v) for v in key)


def acceptance_from_cycles(cycles: Cycles, cols: Sequence[str]) -> pl.DataFrame:
    """Per group and draft position i < drafted: cycles reaching i (accepted ≥ i), accepted at i (accepted >
    i), all the group's cycles, and the rates, from `_cycles` rows."""
    keys = list(cols)
    groups: dict[tuple[Any, ...], int] = {}
    g = np.array([groups.setdefault(k, len(groups)) for k in cycles.keys], dtype=np.int64)
    d, a, n = cycles.drafted, cycles.accepted, cycles.n
    position = np.arange(int(d.max()) if d.size else 0)
    drafted = position < d[:, None]  # [rows, positions]: the cycle drafted position i
    reached = np.zeros((len(groups), position.size), np.int64)
    kept = np.zeros_like(reached)
    seen = np.zeros(reached.shape, bool)
    np.add.at(reached, g, n[:, None] * (drafted & (position <= a[:, None])))
    np.add.at(kept, g, n[:, None] * (drafted & (position < a[:, None])))
    np.logical_or.at(seen, g, drafted)
    totals = np.zeros(len(groups), np.int64)
    np.add.at(totals, g, n)
    order = sorted(groups, key=_sort_key)
    gi, pi = np.nonzero(seen[[groups[k] for k in order]])
    rows = np.array([groups[k] for k in order], dtype=np.int64)[gi]
    r, k, c = reached[rows, pi], kept[rows, pi], totals[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(r > 0, k / r, np.nan)
    columns = zip(
        pi.tolist(), r.tolist(), k.tolist(), c.tolist(), rate.tolist(), (k / c).tolist(), strict=True
    )
    out = [(*order[j], p, rr, kk, cc, None if rr == 0 else ra, su)
           for j, (p, rr, kk, cc, ra, su) in zip(gi.tolist(), columns, strict=True)]  # fmt: skip
    schema = {**{col: run_column_dtype(col) for col in keys}, **ACCEPTANCE_SCHEMA}
    return pl.DataFrame(out, schema=schema, orient="row")  # rows: a few dozen, cheaper than columns


def acceptance_by_position(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Per group and draft position i: cycles reaching i, accepted, P(accept | reached), P(accepted > i)."""
    cols = check_group_by(group_by)
    with connect(source) as con:
        if not has_speculative_data(con):
            return pl.DataFrame(schema={**{c: run_column_dtype(c) for c in cols}, **ACCEPTANCE_SCHEMA})
        return acceptance_from_cycles(_cycles(con, filters, cols), cols)


def _draft_k(settings: str | None) -> int | None:
    """The recorded `draft_k` setting as an integer (a JSON integer or a string of one), else None."""
    recorded = json.loads(settings) if settings else None
    value = recorded.get("draft_k") if isinstance(recorded, dict) else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        return None
    return value


def speedup_table(cycles: Cycles, speedups: Mapping[int, tuple[Any, ...]]) -> pl.DataFrame:
    """Per run: cycles, drafted, accepted; acceptance a = accepted / verified positions (accepted + a
    rejection that ended a cycle); the FLOP model's speed-up, and `speedup_rows`' own."""
    ids = np.array(list(cycles.runs), dtype=np.int64)
    at = np.searchsorted(ids, cycles.run)
    d, a, n = cycles.drafted, cycles.accepted, cycles.n
    sums = np.zeros((4, ids.size), np.int64)  # cycles, drafted, accepted, trials
    for i, x in enumerate((n, n * d, n * a, n * (a + (a < d)))):
        np.add.at(sums[i], at, x)
    longest = np.zeros(ids.size, np.int64)
    np.maximum.at(longest, at, d)
    count, drafted, accepted, trials = sums
    info = list(cycles.runs.values())
    k = [_draft_k(r["settings"]) for r in info]
    draft_k = np.array([longest[i] if v is None else v for i, v in enumerate(k)], dtype=np.int64)
    ratio = [r["cost_ratio"] for r in info]
    with np.errstate(divide="ignore", invalid="ignore"):
        acceptance = accepted / trials
    mean = accepted / count
    flop = expected_speedup(acceptance, draft_k, np.array(ratio, dtype=float))
    rows = zip(
        ids.tolist(), info, draft_k.tolist(), count.tolist(), drafted.tolist(), accepted.tolist(),
        acceptance.tolist(), mean.tolist(), flop.tolist(), strict=True,
    )  # fmt: skip
    out = [
        (rid, r["llm"], r["slm"], r["dataset"], k, c, d, a, ac, m, m + 1, r["cost_ratio"],
         None if math.isnan(f) else f, *speedups.get(rid, (None,) * 4))
        for rid, r, k, c, d, a, ac, m, f in rows
    ]  # fmt: skip
    return pl.DataFrame(out, schema=RUN_SCHEMA, orient="row")


def runs_from_cycles(con: duckdb.DuckDBPyConnection, cycles: Cycles) -> pl.DataFrame:
    """`speculative_runs` from `_cycles` rows (the speed-ups read their drafted counts: no second scan)."""
    drafted = drafted_counts(cycles.run, cycles.drafted, cycles.n)
    return speedup_table(cycles, speedup_rows(con, cycles.runs, drafted))


def speculative_runs(source: Source, *, filters: Filters | None = None) -> pl.DataFrame:
    """Per speculative run: K, acceptance, mean accepted length, the predicted and measured speed-up
    (`analytics.speedup`) and the FLOP model's."""
    with connect(source) as con:
        if not has_speculative_data(con):
            return pl.DataFrame(schema=RUN_SCHEMA)
        return runs_from_cycles(con, _cycles(con, filters))


def speculative_tables(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`speculative_runs` and `acceptance_by_position` from one scan of the cycles."""
    cols = check_group_by(group_by)
    with connect(source) as con:
        if not has_speculative_data(con):
            return speculative_runs(con, filters=filters), acceptance_by_position(con, cols, filters=filters)
        cycles = _cycles(con, filters, cols)
        return runs_from_cycles(con, cycles), acceptance_from_cycles(cycles, cols)


def emitted_by_draft_index(source: Source, *, filters: Filters | None = None) -> pl.DataFrame:
    """Emitted tokens by draft index (K = the LLM's bonus or correction token) and acceptance flag."""
    with connect(source) as con:
        if not table_columns(con, "token_events") >= {"draft_index", "accepted"}:
            return pl.DataFrame(schema=EMITTED_SCHEMA)
        where, params = runs_where(filters, alias="rf")
        sem = f"AND e.run_id IN (SELECT rf.run_id FROM runs rf {where})" if where else ""
        return query(
            con,
            f"""SELECT CAST(e.draft_index AS BIGINT) AS draft_index, e.accepted,
                       CAST(count(*) AS BIGINT) AS tokens
                FROM token_events e WHERE e.draft_index IS NOT NULL {sem}
                GROUP BY ALL ORDER BY draft_index, accepted""",
            params,
        )


# Replay: under greedy decoding a speculative cycle accepts exactly the run of consecutive matches of the
# oracle trace (capped at the drafted count), so one oracle run gives the cycles of any K and stop rule.
REPLAY_SCHEMA = {
    "sample_id": pl.Int32,
    "cycle": pl.Int32,
    "drafted": pl.Int16,
    "accepted": pl.Int16,
    "drafted_exact": pl.Boolean,
}


@dataclass(frozen=True)
class OracleTrace:
    """A greedy oracle run's tokens, flattened sample after sample: `start` [S] / `n_tokens` [S] index the
    per-token arrays [N] (match = System 1's choice equals the emitted token)."""

    run_id: int
    sample_id: npt.NDArray[np.int32]
    start: npt.NDArray[np.int64]
    n_tokens: npt.NDArray[np.int64]
    match: npt.NDArray[np.bool_]
    s1_prob: npt.NDArray[np.float32]
    s1_entropy: npt.NDArray[np.float32]
    accept_prob: npt.NDArray[np.float32] | None


def oracle_trace(source: Source, run_id: int) -> OracleTrace:
    """Read one greedy oracle run (method oracle, router always, temperature 0) for replay."""
    with connect(source) as con:
        run = query(con, "SELECT method, router, temperature FROM runs WHERE run_id = ?", [run_id])
        if run.height == 0:
            raise AnalyticsError(f"no run {run_id} in this warehouse; list runs with GET /v1/runs")
        method, router, temperature = run.row(0)
        if (method, router, temperature) != ("oracle", "always", 0.0):
            raise AnalyticsError(
                f"run {run_id} is {method}/{router} at temperature {temperature}; replay needs a greedy "
                "oracle run (--method oracle --router always --temperature 0) of the pair"
            )
        has_accept = "accept_prob" in table_columns(con, "token_events")
        events = query(
            con,
            f"""SELECT sample_id, NOT mismatch AS match, s1_prob, s1_entropy,
                       {"accept_prob" if has_accept else "CAST(NULL AS FLOAT) AS accept_prob"}
                FROM token_events WHERE run_id = ? ORDER BY sample_id, step""",
            [run_id],
        )
    ids, counts = np.unique(events["sample_id"].to_numpy(), return_counts=True)
    accept = events["accept_prob"]
    return OracleTrace(
        run_id=run_id,
        sample_id=ids.astype(np.int32),
        start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        n_tokens=counts.astype(np.int64),
        match=events["match"].to_numpy().astype(bool),
        s1_prob=events["s1_prob"].to_numpy().astype(np.float32),
        s1_entropy=events["s1_entropy"].to_numpy().astype(np.float32),
        accept_prob=None if accept.null_count() == len(accept) else accept.to_numpy().astype(np.float32),
    )


def _next_index(flag: npt.NDArray[np.bool_], end: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each token t: the first index ≥ t of its sample where `flag` holds, else the sample's end.
    One extra slot at the end (index N) maps to N."""
    idx = np.arange(len(flag), dtype=np.int64)
    cand = np.append(np.where(flag, idx, end), len(flag))
    return np.minimum.accumulate(cand[::-1])[::-1]


def replay_cycles(
    trace: OracleTrace, draft_k: int, draft_stop: str | None = None, draft_threshold: float | None = None
) -> pl.DataFrame:
    """The cycles a greedy speculative run with these settings would record on the oracle run's samples.

    Per cycle at position p: drafted D = K, or under a stop rule the first i ≥ 1 where System 1 is not
    confident at p + i (max_prob < τ, entropy > τ; τ in float32 as on the device); accepted a = the run
    of matches from p, capped at D; the cycle keeps min(a + 1, tokens left), and one cut short records
    m − 1 of m − 1, as the collector does. `drafted_exact` is False where D lies past a rejection, where
    System 1 drafted from its own rejected token and the trace cannot see its confidence (there D is
    read from the trace's next positions, an estimate).
    """
    if draft_k < 1:
        raise AnalyticsError(f"draft_k {draft_k} must be at least 1")
    stops = vocabulary.draft_stops()
    if (draft_stop is None) != (draft_threshold is None) or draft_stop not in (None, *stops):
        named = " or ".join(stops)
        raise AnalyticsError(f"give draft_stop ({named}) and draft_threshold together, or neither")
    N = len(trace.match)
    end = np.repeat(trace.start + trace.n_tokens, trace.n_tokens)
    next_miss = _next_index(~trace.match, end)
    if draft_stop is None:
        next_stop = np.full(N + 1, np.iinfo(np.int64).max // 2, dtype=np.int64)
    else:
        tau = np.float32(draft_threshold)
        rule = vocabulary.THRESHOLD_RULES[draft_stop]
        stop = rule.holds(getattr(trace, rule.feature), tau)
        next_stop = _next_index(stop, end + draft_k)  # none seen in the sample: never stops early
    pos, last = trace.start.copy(), trace.start + trace.n_tokens
    rows: list[tuple[npt.NDArray[Any], ...]] = []
    cycle = 0
    while True:
        live = np.nonzero(pos < last)[0]
        if len(live) == 0:
            break
        p, e = pos[live], last[live]
        inside = p + 1 < e  # a next position in the sample to read System 1's confidence at
        drafted = np.minimum(draft_k, np.where(inside, next_stop[np.minimum(p + 1, N)], e + draft_k) - p)
        accepted = np.minimum(next_miss[p] - p, drafted)
        kept = np.minimum(accepted + 1, e - p)
        cut = kept < accepted + 1
        exact = (draft_stop is None) | cut | (accepted == drafted) | (accepted + 1 == draft_k)
        rows.append(
            (
                live,
                np.full(len(live), cycle),
                np.where(cut, kept - 1, drafted),
                np.where(cut, kept - 1, accepted),
                exact,
            )
        )
        pos[live] = p + kept
        cycle += 1
    if not rows:
        return pl.DataFrame(schema=REPLAY_SCHEMA)
    s, c, d, a, x = (np.concatenate(col) for col in zip(*rows, strict=True))
    frame = pl.DataFrame(
        {"sample_id": trace.sample_id[s], "cycle": c, "drafted": d, "accepted": a, "drafted_exact": x}
    )
    return frame.cast(REPLAY_SCHEMA).sort("sample_id", "cycle")  # type: ignore[arg-type]


def replay_from_oracle(
    source: Source,
    run_id: int,
    draft_k: int,
    draft_stop: str | None = None,
    draft_threshold: float | None = None,
) -> pl.DataFrame:
    """Cycles (sample_id, cycle, drafted, accepted, drafted_exact) that a greedy speculative run with these
    settings would produce on the oracle run's pair and prompts, the last one cut as the collector cuts it."""
    return replay_cycles(oracle_trace(source, run_id), draft_k, draft_stop, draft_threshold)
