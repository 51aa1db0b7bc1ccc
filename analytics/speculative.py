"""Speculative decoding: acceptance by draft position, accepted length, expected vs measured speed-up.

Reads `spec_cycles(run_id, sample_id, cycle, drafted, accepted)` (one row per draft/verify round) and the
nullable `token_events.draft_index` / `token_events.accepted`. A warehouse without them (schema before the
speculative migration) gives empty frames, never an error.

Expected speed-up of K drafted tokens with per-token acceptance a and cost ratio c = cost(SLM) / cost(LLM)
per forward pass (Leviathan et al., 2023): (1 − a^(K+1)) / ((1 − a)(K·c + 1)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.source import (
    Filters,
    Source,
    check_group_by,
    connect,
    group_select,
    query,
    run_column_dtype,
    runs_where,
    table_columns,
)

ACCEPTANCE_SCHEMA = {
    "position": pl.Int64,
    "reached": pl.Int64,
    "accepted": pl.Int64,
    "cycles": pl.Int64,
    "acceptance_rate": pl.Float64,
    "survival": pl.Float64,
}
RUN_SCHEMA = {
    "run_id": pl.Int64,
    "llm": pl.Utf8,
    "slm": pl.Utf8,
    "dataset": pl.Utf8,
    "draft_k": pl.Int64,
    "cycles": pl.Int64,
    "drafted": pl.Int64,
    "accepted": pl.Int64,
    "acceptance": pl.Float64,
    "mean_accepted": pl.Float64,
    "tokens_per_cycle": pl.Float64,
    "cost_ratio": pl.Float64,
    "expected_speedup": pl.Float64,
    "measured_speedup": pl.Float64,
    "measured_from": pl.Utf8,
}
EMITTED_SCHEMA = {"draft_index": pl.Int64, "accepted": pl.Boolean, "tokens": pl.Int64}


def expected_speedup(
    acceptance: npt.ArrayLike, k: npt.ArrayLike, cost_ratio: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """(1 − a^(K+1)) / ((1 − a)(K·c + 1)), with its limit (K + 1) / (K·c + 1) at a = 1."""
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


def acceptance_by_position(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Per group and draft position i: cycles reaching i, accepted, P(accept | reached), P(accepted > i)."""
    cols = check_group_by(group_by)
    with connect(source) as con:
        if not has_speculative_data(con):
            return pl.DataFrame(schema={**{c: run_column_dtype(c) for c in cols}, **ACCEPTANCE_SCHEMA})
        out = ", ".join(f'"{c}"' for c in cols)
        where, params = runs_where(filters)
        counts = query(
            con,
            f"""WITH h AS (
                    SELECT run_id, drafted, accepted, count(*) AS n FROM spec_cycles GROUP BY ALL
                ), g AS (
                    SELECT {group_select(cols)}, h.drafted, h.accepted, sum(h.n) AS n
                    FROM h JOIN runs r ON r.run_id = h.run_id {where} GROUP BY ALL
                )
                SELECT {out}, CAST(t.i AS BIGINT) AS position,
                       CAST(coalesce(sum(n) FILTER (WHERE g.accepted >= t.i), 0) AS BIGINT) AS reached,
                       CAST(coalesce(sum(n) FILTER (WHERE g.accepted > t.i), 0) AS BIGINT) AS accepted
                FROM g, range(g.drafted) t(i)
                GROUP BY ALL ORDER BY {out}, position""",
            params,
        )
        totals = query(
            con,
            f"""SELECT {group_select(cols)}, CAST(count(*) AS BIGINT) AS cycles
                FROM spec_cycles s JOIN runs r ON r.run_id = s.run_id {where} GROUP BY ALL""",
            params,
        )
    return acceptance_rates(counts, totals, cols)


def acceptance_rates(counts: pl.DataFrame, totals: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Conditional acceptance (accepted / reached) and survival (accepted / all cycles) per position."""
    return counts.join(totals, on=list(keys), how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("reached") > 0).then(pl.col("accepted") / pl.col("reached")).alias("acceptance_rate"),
        (pl.col("accepted") / pl.col("cycles")).alias("survival"),
    )


def _run_sums(con: Source, filters: Filters | None) -> pl.DataFrame:
    where, params = runs_where(filters)
    return query(
        con,
        f"""WITH c AS (
                SELECT run_id, count(*) AS cycles, sum(drafted) AS drafted, sum(accepted) AS accepted,
                       sum(accepted + CASE WHEN accepted < drafted THEN 1 ELSE 0 END) AS trials,
                       max(drafted) AS max_drafted
                FROM spec_cycles GROUP BY run_id
            )
            SELECT r.run_id, r.llm, r.slm, r.dataset, r.settings, r.tokens_per_s,
                   CAST(c.cycles AS BIGINT) AS cycles, CAST(c.drafted AS BIGINT) AS drafted,
                   CAST(c.accepted AS BIGINT) AS accepted, CAST(c.trials AS BIGINT) AS trials,
                   CAST(c.max_drafted AS BIGINT) AS max_drafted,
                   CAST(ms.params AS DOUBLE) / ml.params AS cost_ratio,
                   (SELECT avg(b.tokens_per_s) FROM runs b
                    WHERE b.llm = r.llm AND b.dataset = r.dataset AND b.device = r.device
                      AND b.method = 'oracle' AND b.router = 'always' AND b.status = 'complete')
                       AS oracle_tokens_per_s
            FROM c JOIN runs r ON r.run_id = c.run_id
            LEFT JOIN models ml ON ml.name = r.llm LEFT JOIN models ms ON ms.name = r.slm
            {where} ORDER BY r.run_id""",
        params,
    )


def speedup_table(sums: pl.DataFrame, measured: Mapping[int, float] | None = None) -> pl.DataFrame:
    """Acceptance a = accepted / verified positions, expected speed-up, and the measured one where known."""
    setting = pl.col("settings").str.json_path_match("$.draft_k").cast(pl.Int64, strict=False)
    base = pl.col("settings").str.json_path_match("$.baseline_tokens_per_s").cast(pl.Float64, strict=False)
    given = pl.col("run_id").replace_strict(dict(measured or {}), default=None, return_dtype=pl.Float64)
    frame = sums.with_columns(
        pl.coalesce(setting, pl.col("max_drafted")).alias("draft_k"),
        (pl.col("accepted") / pl.col("trials")).alias("acceptance"),
        (pl.col("accepted") / pl.col("cycles")).alias("mean_accepted"),
        (pl.col("tokens_per_s") / base).alias("from_baseline"),
        (pl.col("tokens_per_s") / pl.col("oracle_tokens_per_s")).alias("from_oracle"),
        given.alias("given"),
    )
    expected = expected_speedup(
        frame["acceptance"].to_numpy(), frame["draft_k"], frame["cost_ratio"].to_numpy()
    )
    return frame.with_columns(
        (pl.col("mean_accepted") + 1).alias("tokens_per_cycle"),
        pl.Series("expected_speedup", expected, dtype=pl.Float64).fill_nan(None),
        pl.coalesce("given", "from_baseline", "from_oracle").alias("measured_speedup"),
        pl.when(pl.col("given").is_not_null())
        .then(pl.lit("given"))
        .when(pl.col("from_baseline").is_not_null())
        .then(pl.lit("settings.baseline_tokens_per_s"))
        .when(pl.col("from_oracle").is_not_null())
        .then(pl.lit("oracle/always run"))
        .alias("measured_from"),
    ).select(list(RUN_SCHEMA))


def speculative_runs(
    source: Source, *, filters: Filters | None = None, measured: Mapping[int, float] | None = None
) -> pl.DataFrame:
    """Per speculative run: K, acceptance, mean accepted length, expected and measured speed-up.

    The measured speed-up is, in order: `measured[run_id]`; tokens/s over `baseline_tokens_per_s` in the
    run's settings; tokens/s over an oracle/always run of the same LLM, dataset and device.
    """
    with connect(source) as con:
        if not has_speculative_data(con):
            return pl.DataFrame(schema=RUN_SCHEMA)
        sums = _run_sums(con, filters)
    return speedup_table(sums, measured)


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
