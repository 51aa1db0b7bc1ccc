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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.costs import RunCosts, costs_from_rows, cycles_seconds, paired_from_rows
from analytics.frames import Col, FrameSchema
from analytics.source import Source, connect, query_arrays, query_rows, table_columns

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


# A run's drafted lengths (ascending) and the cycles of each.
Drafted = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
# The runs columns a speed-up reads, as SQL over `runs r` (`analytics.speculative` reads them in its own
# scan of the runs), and the runs' prompts and tokens from `samples` for the runs IN ({marks}).
RUN_INPUTS = """r.llm, r.slm, r.device, r.dtype,
    CAST(coalesce(json_extract(r.settings, '$.draft_k'), 0) AS BIGINT) AS k,
    json_extract_string(r.settings, '$.draft_stop') AS stop"""
INPUT_NAMES = ("llm", "slm", "device", "dtype", "k", "stop")  # RUN_INPUTS' columns, in order
SAMPLE_SUMS = """SELECT run_id, count(*) AS prompts, CAST(sum(n_tokens) AS DOUBLE) AS tokens
                 FROM samples WHERE run_id IN ({marks}) GROUP BY run_id"""
_PAIR = ("llm", "slm", "device", "dtype")
# A complete greedy oracle run: whose costs a pair's prediction prefers (the advisor's).
_ORACLE = "(method = 'oracle' AND router = 'always' AND temperature = 0 AND status = 'complete') AS oracle"


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


def _runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each run's `RUN_INPUTS`, prompts and tokens, in one query."""
    marks = _marks(run_ids)
    rows = query_rows(
        con,
        f"""WITH s AS ({SAMPLE_SUMS.format(marks=marks)})
            SELECT r.run_id, {RUN_INPUTS}, coalesce(s.prompts, 0) AS prompts, s.tokens
            FROM runs r LEFT JOIN s ON s.run_id = r.run_id WHERE r.run_id IN ({marks})""",
        [*run_ids, *run_ids],
    )
    names = ["run_id", *INPUT_NAMES, "prompts", "tokens"]
    return {int(row[0]): dict(zip(names, row, strict=True)) for row in rows}


@dataclass(frozen=True)
class _Costs:
    """The `run_costs` a prediction may read: runs with batch-1 cycle costs (`sources`: pair, device,
    dtype and whether a complete greedy oracle run; `rows`: their batch-1 rows in table order), and the
    paired throughputs of the runs asked about."""

    sources: dict[int, tuple[tuple[Any, ...], bool | None]]
    rows: dict[int, list[tuple[str, int, float]]]
    paired: dict[int, tuple[float, float]]


def _costs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[int]) -> _Costs:
    """Every run's batch-1 costs and the runs' decode and baseline rows in one query, then the runs with
    cycle costs (the candidates a pair's prediction picks from) in a second one, when there are any."""
    kinds = "('cycle', 'stop_cycle', 'prefill', 'llm_generate')"  # what `costs_from_rows` reads
    costs = query_rows(
        con,
        f"""SELECT run_id, kind, tokens, batch_size, seconds FROM run_costs
            WHERE (batch_size = 1 AND kind IN {kinds}) OR run_id IN ({_marks(run_ids)})""",
        list(run_ids),
    )
    rows: dict[int, list[tuple[str, int, float]]] = {}
    for run_id, kind, tokens, batch, seconds in costs:
        if batch == 1:
            rows.setdefault(int(run_id), []).append((kind, tokens, seconds))
    asked = set(run_ids)
    paired = paired_from_rows((r, k, n, s) for r, k, n, _, s in costs if r in asked)
    candidates = [r for r, found in rows.items() if any(k == "cycle" for k, _, _ in found)]
    sources: dict[int, tuple[tuple[Any, ...], bool | None]] = {}
    if candidates:
        found = query_rows(
            con,
            f"""SELECT run_id, llm, slm, device, dtype, {_ORACLE}
                FROM runs WHERE run_id IN ({_marks(candidates)})""",
            candidates,
        )
        sources = {
            int(r): ((llm, slm, device, dtype), oracle) for r, llm, slm, device, dtype, oracle in found
        }
    return _Costs(sources, rows, paired)


def _pick_costs(run: Mapping[str, Any], costs: _Costs) -> tuple[RunCosts, int] | None:
    """Batch-1 costs of the pair: its latest greedy oracle run's, else the run's own, else another run's."""
    pair = tuple(run[c] for c in _PAIR)
    # Same pair, device and dtype (a null matches nothing); best first: oracle (unknown first, as a
    # descending sort puts nulls), then the run's own, then the latest.
    same = [
        (oracle is None, bool(oracle), cid == run["run_id"], cid)
        for cid, (of, oracle) in costs.sources.items()
        if all(a is not None and a == b for a, b in zip(of, pair, strict=True))
    ]
    for *_, cid in sorted(same, reverse=True):
        found = costs_from_rows(costs.rows[cid])
        if found is not None:
            return found, cid
    return None


def _predicted(run: Mapping[str, Any], drafted: Drafted, costs: _Costs) -> tuple[float | None, str]:
    found = _pick_costs(run, costs)
    values, counts = drafted
    if found is None or not run["tokens"] or values.size == 0:
        return None, NO_COSTS
    run_costs, from_run = found
    k = int(run["k"] or 0) or int(values.max())
    seconds = cycles_seconds(values, k, run["stop"], run_costs, int(run["prompts"]), counts)
    if seconds <= 0:
        return None, NO_COSTS
    where = "its own costs" if from_run == run["run_id"] else f"the costs run {from_run} of the pair measured"
    rate = run_costs.rows * float(run["tokens"]) / seconds
    return rate / run_costs.baseline_tokens_per_s, f"{PREDICTED}; {where}"


def drafted_counts(
    run: npt.NDArray[np.int64], drafted: npt.NDArray[np.int64], n: npt.NDArray[np.int64]
) -> dict[int, Drafted]:
    """Per run: its drafted lengths (ascending) and the cycles of each, from (run, drafted, cycles) rows."""
    out: dict[int, Drafted] = {}
    for rid in np.unique(run).tolist():
        mine = run == rid
        values, where = np.unique(drafted[mine], return_inverse=True)
        counts = np.zeros(len(values), np.int64)
        np.add.at(counts, where.ravel(), n[mine])
        out[int(rid)] = (values.astype(np.int64), counts)
    return out


def speedup_rows(
    con: duckdb.DuckDBPyConnection,
    runs: Mapping[int, Mapping[str, Any]],
    drafted: Mapping[int, Drafted],
) -> dict[int, tuple[float | None, str, float | None, str]]:
    """Per run: predicted speed-up, whose costs, measured speed-up, what it is; `runs`: each run's
    `RUN_INPUTS`, prompts and tokens (`run_id` too); `drafted`: its cycles by drafted length."""
    if not runs:
        return {}
    if not table_columns(con, "run_costs"):
        return {rid: (None, NO_COSTS, None, NO_BASELINE) for rid in runs}
    costs = _costs(con, list(runs))
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = {}
    for rid, run in runs.items():
        predicted, note = _predicted(run, drafted.get(rid, none), costs)
        pair = costs.paired.get(rid)
        measured = None if pair is None else pair[0] / pair[1]
        out[rid] = (predicted, note, measured, MEASURED if pair else NO_BASELINE)
    return out


def run_speedups(
    source: Source, run_ids: Sequence[int], drafted: Mapping[int, Drafted] | None = None
) -> pl.DataFrame:
    """Predicted and measured speed-up of each speculative run (see the module docstring); `drafted`: the
    runs' cycles by drafted length (`drafted_counts`) where the caller has them, else counted here."""
    if not run_ids:
        return pl.DataFrame(schema=SPEEDUP_SCHEMA)
    with connect(source) as con:
        runs = _runs(con, run_ids)
        if drafted is None:
            counted = query_arrays(
                con,
                f"""SELECT run_id, CAST(drafted AS BIGINT) AS drafted, count(*) AS n FROM spec_cycles
                    WHERE run_id IN ({_marks(run_ids)}) GROUP BY ALL""",
                list(run_ids),
            )
            drafted = drafted_counts(counted["run_id"], counted["drafted"], counted["n"])
        found = speedup_rows(con, runs, drafted)
    rows = [(rid, *found[rid]) for rid in sorted(found)]
    return pl.DataFrame(rows, schema=SPEEDUP_SCHEMA, orient="row")
