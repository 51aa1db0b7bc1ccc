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

from analytics.costs import RunCosts, cycles_seconds, paired_throughput, run_costs
from analytics.source import Source, connect, query, table_columns

PREDICTED = "predicted: the run's cycles × its pair's measured costs (the advisor's model, batch 1)"
MEASURED = "measured: the run's decode over its own paired baseline (the LLM alone on the same prompts)"
FLOP_MODEL = "FLOP model: (1 − a^(K+1)) / ((1 − a)(K·c + 1)), c = N_SLM / N_LLM"
NO_BASELINE = "no measured speed-up: this run recorded no paired baseline (calibration off, or an older run)"
NO_COSTS = "no predicted speed-up: no run of this pair on this device recorded cycle costs"
SPEEDUP_SCHEMA = {
    "run_id": pl.Int64,
    "predicted_speedup": pl.Float64,
    "predicted_from": pl.Utf8,
    "measured_speedup": pl.Float64,
    "measured_note": pl.Utf8,
}


def _pair_costs(con: Source, run_id: int) -> tuple[RunCosts, int] | None:
    """Batch-1 costs of the pair: its latest greedy oracle run's, else the run's own, else another run's."""
    candidates = query(
        con,
        """SELECT c.run_id FROM runs r JOIN runs c ON c.llm = r.llm AND c.slm = r.slm
               AND c.device = r.device AND c.dtype = r.dtype
           WHERE r.run_id = ? AND EXISTS (SELECT 1 FROM run_costs k WHERE k.run_id = c.run_id
                                          AND k.kind = 'cycle' AND k.batch_size = 1)
           ORDER BY (c.method = 'oracle' AND c.router = 'always' AND c.temperature = 0
                     AND c.status = 'complete') DESC, c.run_id = r.run_id DESC, c.run_id DESC""",
        [run_id],
    )
    for (cid,) in candidates.iter_rows():
        costs = run_costs(con, int(cid))
        if costs is not None:
            return costs, int(cid)
    return None


def _predicted(con: Source, run_id: int) -> tuple[float | None, str]:
    found = _pair_costs(con, run_id)
    if found is None:
        return None, NO_COSTS
    costs, from_run = found
    run = query(
        con,
        """SELECT CAST(coalesce(json_extract(settings, '$.draft_k'), 0) AS BIGINT) AS k,
                  json_extract_string(settings, '$.draft_stop') AS stop,
                  (SELECT count(*) FROM samples s WHERE s.run_id = r.run_id) AS prompts,
                  (SELECT sum(n_tokens) FROM samples s WHERE s.run_id = r.run_id) AS tokens
           FROM runs r WHERE run_id = ?""",
        [run_id],
    ).row(0)
    cycles = query(con, "SELECT drafted FROM spec_cycles WHERE run_id = ?", [run_id])
    drafted = cycles["drafted"].to_numpy().astype(np.int64)
    k = int(run[0]) or int(drafted.max(initial=1))
    seconds = cycles_seconds(drafted, k, run[1], costs, int(run[2]))
    if seconds <= 0 or not run[3]:
        return None, NO_COSTS
    where = "its own costs" if from_run == run_id else f"the costs run {from_run} of the pair measured"
    return costs.rows * float(run[3]) / seconds / costs.baseline_tokens_per_s, f"{PREDICTED}; {where}"


def run_speedups(source: Source, run_ids: Sequence[int]) -> pl.DataFrame:
    """Predicted and measured speed-up of each speculative run (see the module docstring)."""
    rows = []
    with connect(source) as con:
        has_costs = bool(table_columns(con, "run_costs"))
        for run_id in run_ids:
            predicted, source_note = _predicted(con, run_id) if has_costs else (None, NO_COSTS)
            paired = paired_throughput(con, run_id)
            measured = None if paired is None else paired[0] / paired[1]
            rows.append((run_id, predicted, source_note, measured, MEASURED if paired else NO_BASELINE))
    return pl.DataFrame(rows, schema=SPEEDUP_SCHEMA, orient="row")
