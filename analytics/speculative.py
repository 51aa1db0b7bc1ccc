"""Speculative decoding: acceptance by draft position, accepted length, predicted and measured speed-up.

Reads `spec_cycles(run_id, sample_id, cycle, drafted, accepted)` (one row per draft/verify round) and the
nullable `token_events.draft_index` / `token_events.accepted`. A warehouse without them (schema before the
speculative migration) gives empty frames, never an error.

The speed-ups are `analytics.speedup`'s (one definition for every door). Beside them, labelled as the FLOP
model, the speed-up of K drafted tokens with per-token acceptance a if a forward cost its parameter count,
c = N_SLM / N_LLM (Leviathan et al., 2023): (1 − a^(K+1)) / ((1 − a)(K·c + 1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    run_column_dtype,
    runs_where,
    table_columns,
)
from analytics.speedup import FLOP_MODEL, SPEEDUP, run_speedups
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


def _cycles(con: Source, filters: Filters | None, cols: Sequence[str] = ()) -> pl.DataFrame:
    """The one scan of `spec_cycles`: cycles of each run in scope by (drafted, accepted), `n`, beside the
    run's group-by `cols`, the columns its table shows and its pair's cost ratio (a few dozen rows a run)."""
    where, params = runs_where(filters)
    shown = ", ".join(f'r."{c}"' for c in dict.fromkeys([*_SHOWN, *check_group_by(cols or ["run_id"])]))
    return query(
        con,
        f"""WITH c AS (
                SELECT run_id, drafted, accepted, count(*) AS n FROM spec_cycles
                WHERE run_id IN (SELECT r.run_id FROM runs r {where}) GROUP BY ALL
            )
            SELECT {shown}, CAST(c.drafted AS BIGINT) AS cycle_drafted,
                   CAST(c.accepted AS BIGINT) AS cycle_accepted, CAST(c.n AS BIGINT) AS cycle_count,
                   CAST(ms.params AS DOUBLE) / ml.params AS pair_cost_ratio
            FROM c JOIN runs r ON r.run_id = c.run_id
            LEFT JOIN models ml ON ml.name = r.llm LEFT JOIN models ms ON ms.name = r.slm""",
        params,
    )


# `_cycles`' own columns (apart from the runs columns a group-by names).
_D, _A, _N = pl.col("cycle_drafted"), pl.col("cycle_accepted"), pl.col("cycle_count")


def acceptance_from_cycles(cycles: pl.DataFrame, cols: Sequence[str]) -> pl.DataFrame:
    """Per group and draft position i < drafted: cycles reaching i (accepted ≥ i), accepted at i (accepted >
    i), all the group's cycles, and the rates, from `_cycles` rows."""
    keys = list(cols)
    position = pl.col("position")
    counts = (
        cycles.filter(_D > 0)
        .with_columns(pl.int_ranges(0, _D, dtype=pl.Int64).alias("position"))
        .explode("position")
        .group_by([*keys, "position"])
        .agg(
            _N.filter(position <= _A).sum().cast(pl.Int64).alias("reached"),
            _N.filter(position < _A).sum().cast(pl.Int64).alias("accepted"),
        )
    )
    totals = cycles.group_by(keys).agg(_N.sum().cast(pl.Int64).alias("cycles"))
    rated = acceptance_rates(counts, totals, keys).sort([*keys, "position"], nulls_last=True)
    return ACCEPTANCE.select(rated, tuple(keys))


def acceptance_by_position(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Per group and draft position i: cycles reaching i, accepted, P(accept | reached), P(accepted > i)."""
    cols = check_group_by(group_by)
    with connect(source) as con:
        if not has_speculative_data(con):
            return pl.DataFrame(schema={**{c: run_column_dtype(c) for c in cols}, **ACCEPTANCE_SCHEMA})
        return acceptance_from_cycles(_cycles(con, filters, cols), cols)


def acceptance_rates(counts: pl.DataFrame, totals: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Conditional acceptance (accepted / reached) and survival (accepted / all cycles) per position."""
    return counts.join(totals, on=list(keys), how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("reached") > 0).then(pl.col("accepted") / pl.col("reached")).alias("acceptance_rate"),
        (pl.col("accepted") / pl.col("cycles")).alias("survival"),
    )


def _run_sums(cycles: pl.DataFrame) -> pl.DataFrame:
    """Per run of `_cycles` rows: cycles, drafted, accepted, trials (accepted + a rejection that ended a
    cycle), the longest draft, and the run's columns the table shows."""
    trials = _A + (_A < _D).cast(pl.Int64)
    return (
        cycles.group_by("run_id")
        .agg(
            pl.col("llm", "slm", "dataset", "settings").first(),
            pl.col("pair_cost_ratio").first().alias("cost_ratio"),
            _N.sum().alias("cycles"),
            (_N * _D).sum().alias("drafted"),
            (_N * _A).sum().alias("accepted"),
            (_N * trials).sum().alias("trials"),
            _D.max().alias("max_drafted"),
        )
        .sort("run_id")
    )


def speedup_table(sums: pl.DataFrame, speedups: pl.DataFrame) -> pl.DataFrame:
    """Acceptance a = accepted / verified positions, the FLOP model's speed-up, and `run_speedups`' own."""
    setting = pl.col("settings").str.json_path_match("$.draft_k").cast(pl.Int64, strict=False)
    frame = sums.with_columns(
        pl.coalesce(setting, pl.col("max_drafted")).alias("draft_k"),
        (pl.col("accepted") / pl.col("trials")).alias("acceptance"),
        (pl.col("accepted") / pl.col("cycles")).alias("mean_accepted"),
    )
    flop = expected_speedup(frame["acceptance"].to_numpy(), frame["draft_k"], frame["cost_ratio"].to_numpy())
    return (
        frame.with_columns(
            (pl.col("mean_accepted") + 1).alias("tokens_per_cycle"),
            pl.Series("flop_model_speedup", flop, dtype=pl.Float64).fill_nan(None),
        )
        .join(speedups, on="run_id", how="left")
        .select(list(RUN_SCHEMA))
    )


def runs_from_cycles(con: Source, cycles: pl.DataFrame) -> pl.DataFrame:
    """`speculative_runs` from `_cycles` rows (the speed-ups read their drafted counts: no second scan)."""
    sums = _run_sums(cycles)
    drafted = cycles.select("run_id", _D.alias("drafted"), _N.alias("n"))
    return speedup_table(sums, run_speedups(con, sums["run_id"].to_list(), drafted))


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
