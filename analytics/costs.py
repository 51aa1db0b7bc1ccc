"""What a run measured about its own speed, read once for every door that quotes a speed-up.

`run_costs` rows (collector/costs.py): at the start of a run, the costs of a draft/verify cycle of each
draft length at batch 1 (`cycle`, `stop_cycle`), the prefill per prompt and the LLM's own greedy generate
(`llm_generate`); during a speculative run, its `decode` time and its `baseline`: the LLM's own generate
over each of the run's batches, timed right after that batch's decode (same prompts, batch size, moment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analytics.source import Source, connect, query, table_columns


@dataclass(frozen=True)
class RunCosts:
    """What one run measured: seconds of a cycle drafting d tokens (without and with a stop rule's checks),
    prefill per prompt, the baseline; `rows`: the batch size they were timed at (a cycle advances each)."""

    cycle_s: dict[int, float]
    prefill_s: float
    baseline_tokens_per_s: float
    stop_cycle_s: dict[int, float] = field(default_factory=dict)
    rows: int = 1

    def cycle(self, d: int) -> float:
        """Seconds of a cycle drafting d tokens (linear between measured lengths, nearest outside them)."""
        return _interp(self.cycle_s, d)

    def stop_cycle(self, d: int, k: int) -> float:
        """Seconds of a cycle under a stop rule that drafted d of at most k: one that stopped early (d < k)
        also ran System 1 and the rule on the token it stopped at, the work of drafting d + 1 (no stop
        timings recorded: the plain cycle)."""
        if not self.stop_cycle_s:
            return self.cycle(d)
        return _interp(self.stop_cycle_s, min(d + 1, k))


def _interp(seconds: dict[int, float], d: int) -> float:
    ds = sorted(seconds)
    return float(np.interp(d, ds, [seconds[x] for x in ds]))


def run_costs(source: Source, run_id: int) -> RunCosts | None:
    """The batch-1 costs a run recorded (None where it recorded none: calibration off, older schema)."""
    with connect(source) as con:
        if not table_columns(con, "run_costs"):
            return None
        rows = query(
            con, "SELECT kind, tokens, seconds FROM run_costs WHERE run_id = ? AND batch_size = 1", [run_id]
        )
    return costs_from_rows(rows.iter_rows())


def costs_from_rows(rows: Iterable[tuple[str, int, float]]) -> RunCosts | None:
    """A run's `RunCosts` from its batch-1 `run_costs` rows (kind, tokens, seconds) in table order; None
    without cycle costs or a timed generate."""
    cycles: dict[int, float] = {}
    stop_cycles: dict[int, float] = {}
    generate: list[tuple[int, float]] = []
    prefill: list[float] = []
    for kind, n, s in rows:
        if kind == "cycle":
            cycles[int(n)] = float(s)
        elif kind == "stop_cycle":
            stop_cycles[int(n)] = float(s)
        elif kind == "llm_generate":
            generate.append((n, s))
        elif kind == "prefill":
            prefill.append(s)
    if not cycles or not generate or generate[0][1] <= 0:
        return None
    return RunCosts(cycles, prefill[0] if prefill else 0.0, generate[0][0] / generate[0][1], stop_cycles)


def acceptance(drafted: npt.NDArray[np.int64], accepted: npt.NDArray[np.int64]) -> float:
    """Accepted drafts / verified positions (a rejection ends a cycle; 1.0 with no trial)."""
    trials = int((accepted + (accepted < drafted)).sum())
    return float(accepted.sum()) / trials if trials else 1.0


def cycles_seconds(
    drafted: npt.NDArray[np.int64],
    k: int,
    stop: str | None,
    costs: RunCosts,
    prompts: int,
    counts: npt.NDArray[np.int64] | None = None,
) -> float:
    """Predicted seconds of these cycles with these costs: a prefill per prompt plus each cycle's cost (a
    cycle without a stop rule really drafted K, a cut last cycle only records fewer). `counts`: cycles of
    each `drafted` value (None: one each). Summed per drafted length, so any order of the same cycles
    gives the same float."""
    if counts is None:
        drafted, counts = np.unique(drafted, return_counts=True)
    work = np.full_like(drafted, k) if stop is None else np.clip(drafted, 1, k)
    cost = costs.cycle if stop is None else lambda d: costs.stop_cycle(d, k)
    lengths, where = np.unique(work, return_inverse=True)
    per_length = np.bincount(where.ravel(), weights=counts, minlength=len(lengths))
    return prompts * costs.prefill_s + float(
        sum(n * cost(int(d)) for d, n in zip(lengths, per_length, strict=True))
    )


def paired_from_rows(rows: Iterable[tuple[int, str, int, float]]) -> dict[int, tuple[float, float]]:
    """(decode tokens/s, paired baseline tokens/s) per run from its `run_costs` rows (run_id, kind, tokens,
    seconds; other kinds ignored), each summed in table order; a run without both is absent."""
    sums: dict[int, dict[str, tuple[int, float]]] = {}
    for run_id, kind, tokens, seconds in rows:
        if kind in ("decode", "baseline"):
            n, s = sums.setdefault(int(run_id), {}).get(kind, (0, 0.0))
            sums[int(run_id)][kind] = (n + tokens, s + seconds)
    return {r: (float(d[0]) / d[1], float(b[0]) / b[1])
            for r, kinds in sums.items() if (d := kinds.get("decode")) and (b := kinds.get("baseline"))
            and d[1] > 0 and b[1] > 0}  # fmt: skip


def paired_throughputs(con: Source, run_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(decode tokens/s, paired baseline tokens/s) per run that recorded both, in one query: the measured
    speed-up is their ratio (a run without a recorded paired baseline is absent)."""
    if not run_ids or not table_columns(con, "run_costs"):
        return {}
    marks = ", ".join("?" for _ in run_ids)
    rows = query(
        con,
        f"""SELECT run_id, kind, tokens, seconds FROM run_costs
            WHERE run_id IN ({marks}) AND kind IN ('decode', 'baseline')""",
        list(run_ids),
    )
    return paired_from_rows(rows.iter_rows())
