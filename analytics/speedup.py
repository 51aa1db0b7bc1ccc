"""The one definition of a speculative run's speed-up, quoted by the headline, the report, `/v1/speculative`,
the dashboard and the advisor.

- **predicted**: the run's cycles (under greedy decoding exactly the replay of its pair's oracle trace)
  timed with the costs its pair measured at batch 1 (a cycle of each draft length, the prefill per prompt,
  the LLM's own generate): the advisor's model (`analytics.advise`). The costs are those the advisor reads,
  the latest greedy oracle run of the same pair, device and dtype that recorded them; else the run's own;
  else the latest other run of the pair that did. So a greedy run of an advised setting is predicted here
  exactly as the advisor predicted it.
- **measured**: the run's own decode tokens/s over its own paired baseline, the LLM's generate on the same
  prompts timed right after each batch (`run_costs` kinds `decode` and `baseline`). Never another run's: a
  run without a recorded baseline has no measured speed-up, and says so.
- **FLOP model** (labelled as such wherever shown): (1 − a^(K+1)) / ((1 − a)(K·c + 1)) with c = N_SLM /
  N_LLM, which prices a forward by its parameter count; on small models it is far from either of the above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from analytics.costs import RunCosts, cycles_seconds, paired_throughputs, run_costs
from analytics.frames import Col, FrameSchema
from analytics.source import Source, connect, query, table_columns

PREDICTED = "predicted: the run's cycles × its pair's measured costs (the advisor's model, batch 1)"
MEASURED = "measured: the run's decode over its own paired baseline (the LLM alone on the same prompts)"
FLOP_MODEL = "FLOP model: (1 − a^(K+1)) / ((1 − a)(K·c + 1)), c = N_SLM / N_LLM"
NO_BASELINE = "no measured speed-up: this run recorded no paired baseline (calibration off, or an older run)"
NO_COSTS = "no predicted speed-up: no run of this pair on this device recorded cycle costs"
# The columns `run_speedups` returns.
SPEEDUP = FrameSchema.of(
    run_id=Col(int),
    predicted_speedup=Col(float, PREDICTED),
    predicted_from=Col(str, "whose costs, or why there is no prediction", nullable=True),
    measured_speedup=Col(float, f"{MEASURED}; null without one"),
    measured_note=Col(str, "what the measured speed-up is, or why there is none", nullable=True),
)
SPEEDUP_SCHEMA = SPEEDUP.polars()


def _runs(con: Source, run_ids: Sequence[int]) -> pl.DataFrame:
    """Each run's K, stop rule, prompts, tokens, pair and setting, in one query."""
    marks = ", ".join("?" for _ in run_ids)
    return query(
        con,
        f"""WITH s AS (
                SELECT run_id, count(*) AS prompts, CAST(sum(n_tokens) AS DOUBLE) AS tokens
                FROM samples WHERE run_id IN ({marks}) GROUP BY run_id
            )
            SELECT r.run_id, r.llm, r.slm, r.device, r.dtype,
                   CAST(coalesce(json_extract(r.settings, '$.draft_k'), 0) AS BIGINT) AS k,
                   json_extract_string(r.settings, '$.draft_stop') AS stop,
                   coalesce(s.prompts, 0) AS prompts, s.tokens
            FROM runs r LEFT JOIN s ON s.run_id = r.run_id WHERE r.run_id IN ({marks})""",
        [*run_ids, *run_ids],
    )


def _cost_sources(con: Source) -> pl.DataFrame:
    """Runs with batch-1 cycle costs, best first per pair: greedy complete oracle runs, then the latest."""
    return query(
        con,
        """SELECT r.run_id, r.llm, r.slm, r.device, r.dtype,
                  (r.method = 'oracle' AND r.router = 'always' AND r.temperature = 0
                   AND r.status = 'complete') AS oracle
           FROM runs r WHERE EXISTS (SELECT 1 FROM run_costs k WHERE k.run_id = r.run_id
                                     AND k.kind = 'cycle' AND k.batch_size = 1)
           ORDER BY oracle DESC, r.run_id DESC""",
    )


def _pick_costs(con: Source, run: dict[str, object], sources: pl.DataFrame) -> tuple[RunCosts, int] | None:
    """Batch-1 costs of the pair: its latest greedy oracle run's, else the run's own, else another run's."""
    same = sources.filter(
        (pl.col("llm") == run["llm"]) & (pl.col("slm") == run["slm"])
        & (pl.col("device") == run["device"]) & (pl.col("dtype") == run["dtype"])
    ).with_columns(pl.col("run_id").eq(run["run_id"]).alias("own"))  # fmt: skip
    for cid in same.sort(["oracle", "own", "run_id"], descending=True)["run_id"].to_list():
        costs = run_costs(con, int(cid))
        if costs is not None:
            return costs, int(cid)
    return None


def _predicted(
    con: Source, run: dict[str, object], drafted: tuple[np.ndarray, np.ndarray], sources: pl.DataFrame
) -> tuple[float | None, str]:
    found = _pick_costs(con, run, sources)
    values, counts = drafted
    if found is None or not run["tokens"] or values.size == 0:
        return None, NO_COSTS
    costs, from_run = found
    k = int(run["k"] or 0) or int(values.max())  # type: ignore[call-overload]
    seconds = cycles_seconds(values, k, run["stop"], costs, int(run["prompts"]), counts)  # type: ignore[arg-type, call-overload]
    if seconds <= 0:
        return None, NO_COSTS
    where = "its own costs" if from_run == run["run_id"] else f"the costs run {from_run} of the pair measured"
    tokens = float(run["tokens"])  # type: ignore[arg-type]
    return costs.rows * tokens / seconds / costs.baseline_tokens_per_s, f"{PREDICTED}; {where}"


def run_speedups(source: Source, run_ids: Sequence[int], drafted: pl.DataFrame | None = None) -> pl.DataFrame:
    """Predicted and measured speed-up of each speculative run (see the module docstring); `drafted`: the
    runs' cycles as (run_id, drafted, n) counts when the caller has them (else they are counted here)."""
    if not run_ids:
        return pl.DataFrame(schema=SPEEDUP_SCHEMA)
    rows = []
    marks = ", ".join("?" for _ in run_ids)
    with connect(source) as con:
        has_costs = bool(table_columns(con, "run_costs"))
        runs = _runs(con, run_ids)
        if drafted is None:
            drafted = query(
                con,
                f"""SELECT run_id, drafted, count(*) AS n FROM spec_cycles
                    WHERE run_id IN ({marks}) GROUP BY ALL""",
                list(run_ids),
            )
        sources = _cost_sources(con) if has_costs else pl.DataFrame()
        paired = paired_throughputs(con, run_ids) if has_costs else {}
        hist = drafted.group_by("run_id", "drafted").agg(pl.col("n").sum()).sort("run_id", "drafted")
        drafted_by = {
            int(k[0]): (g["drafted"].to_numpy().astype(np.int64), g["n"].to_numpy().astype(np.int64))
            for k, g in hist.group_by(["run_id"])
        }
        none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        for run in runs.iter_rows(named=True):
            rid = int(run["run_id"])
            found = drafted_by.get(rid, none)
            predicted, note = _predicted(con, run, found, sources) if has_costs else (None, NO_COSTS)
            pair = paired.get(rid)
            measured = None if pair is None else pair[0] / pair[1]
            rows.append((rid, predicted, note, measured, MEASURED if pair else NO_BASELINE))
    return pl.DataFrame(rows, schema=SPEEDUP_SCHEMA, orient="row")
