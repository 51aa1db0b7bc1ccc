"""The project's vocabulary, each term written once: methods (the settings each reads, what each needs),
routers and draft-stop rules (feature column and direction), uncertainty predictors, run statuses, cost
kinds and the advisor's K grid.

Every package may import it (it imports nothing of the project): the collector's flags and checks, the
offline replay, the API's Literals, the report and the tests derive their lists from these tables. A new
threshold router is one row of `THRESHOLD_RULES`; a new method is one row of `METHOD_TERMS` and its spec in
`collector.methods`. Lookups at call time read the tables (`method_term`, `threshold_rule`), so a term
added at run time (a test's) is seen everywhere that runs after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["below", "above"]  # consult (or stop drafting) where the feature is < τ, or > τ


@dataclass(frozen=True)
class MethodTerm:
    """A decoding method: its name, the run settings (`RunConfig` fields) only it reads, what it needs."""

    name: str
    params: tuple[str, ...] = ()
    needs_tuned_slm: bool = False  # System 1 is a tuned SLM (`--slm-tuned`)
    needs_always: bool = False  # the LLM decides every token: only the `always` router applies
    default_job: bool = True  # a sweep that names no methods runs it


@dataclass(frozen=True)
class ThresholdRule:
    """A rule on one of System 1's figures: a router consults System 2, a draft stops, where it holds."""

    name: str
    feature: str  # the token_events column (System 1's figure) compared with τ
    direction: Direction
    # replay's grid (`router_sums`, warehouse.summaries): cells per unit of the feature, a power of two so
    # that every edge c/cells is exact in floating point
    cells: int
    draft_stop: bool = False  # also a speculative draft-stop rule (`--draft-stop NAME`)

    @property
    def symbol(self) -> str:
        return "<" if self.direction == "below" else ">"

    def holds(self, value: Any, threshold: Any) -> Any:
        """Where the rule holds (value < τ or value > τ), elementwise on tensors, arrays or expressions (τ a
        number of the value's precision where it matters: a float, or a numpy float32 for a float32 array)."""
        return value < threshold if self.direction == "below" else value > threshold

    def describe(self, threshold: str = "τ") -> str:
        return f"{self.name} {self.symbol} {threshold}"


@dataclass(frozen=True)
class Predictor:
    """An uncertainty predictor of a mismatch: a SQL expression over token_events, larger = less certain,
    ranked on a grid of `cells` per unit."""

    name: str
    expression: str
    cells: int


METHOD_TERMS: dict[str, MethodTerm] = {
    m.name: m
    for m in (
        MethodTerm("oracle"),
        MethodTerm("contrastive", ("alpha", "lam")),
        MethodTerm("proxy", ("weight",), needs_tuned_slm=True),
        MethodTerm("speculative", ("draft_k", "draft_stop", "draft_threshold"), needs_always=True),
    )
}
THRESHOLD_RULES: dict[str, ThresholdRule] = {
    r.name: r
    for r in (
        ThresholdRule("max_prob", "s1_prob", "below", 4096, draft_stop=True),  # grid: 1/4096
        ThresholdRule("margin", "s1_margin", "below", 4096),  # top-1 − top-2 probability
        ThresholdRule("entropy", "s1_entropy", "above", 512, draft_stop=True),  # nats; grid: 1/512 nat
    )
}
FIXED_ROUTERS = ("always", "never")  # System 2 decides every token; System 1 writes alone
LEARNED_ROUTER = "learned"  # a classifier trained on a finished run (`python -m collector.router train`)
PREDICTORS: dict[str, Predictor] = {
    p.name: p
    for p in (
        Predictor("entropy", "s1_entropy", 100),
        Predictor("one_minus_max_prob", "1 - s1_prob", 1000),
        Predictor("one_minus_margin", "1 - s1_margin", 1000),
    )
}
# Run settings (`RunConfig` fields, recorded in runs.settings) that do not define what a run is: how many
# samples, how it was batched, placed or timed, where it is filed. Runs that differ only in these pool; every
# other setting changes the tokens or their meaning, so it is part of the run's identity (and of its labels).
NOT_DEFINING_SETTINGS = (
    "samples", "batch_size", "calibrate", "recalibrate", "calibration_prompts", "device_map", "experiment",
    "allow_inverted",
)  # fmt: skip
RUN_STATUSES = ("running", "complete", "failed")  # as stored in runs.status
STALE = "stale"  # a derived status: running, but its collector is gone
STATUSES = (*RUN_STATUSES, STALE)
# What a pair's calibration measures (once per pair, device, dtype, batch size; reused by later runs) and what
# each run measures of its own (its decode; a speculative run's paired baseline; the seconds it spent on
# calibration). s1_forward, s2_forward: single forwards that runs before 2026-12-03 timed (unread; no longer
# timed).
CALIBRATION_KINDS = ("s1_forward", "s2_forward", "cycle", "stop_cycle", "prefill", "llm_generate")
RUN_KINDS = ("decode", "baseline", "calibration")
COST_KINDS = (*CALIBRATION_KINDS, *RUN_KINDS)
ADVISE_K = tuple(range(1, 9))  # draft lengths the advisor ranks and a pair's calibration times


def methods() -> tuple[str, ...]:
    """Every method's name."""
    return tuple(METHOD_TERMS)


def default_methods() -> tuple[str, ...]:
    """The methods a sweep runs when it names none."""
    return tuple(m.name for m in METHOD_TERMS.values() if m.default_job)


def method_params() -> tuple[str, ...]:
    """Every setting some method reads (a setting of another method is meaningless for a run)."""
    return tuple(dict.fromkeys(p for m in METHOD_TERMS.values() for p in m.params))


def method_term(name: str) -> MethodTerm | None:
    return METHOD_TERMS.get(name)


def routers() -> tuple[str, ...]:
    """Every router's name: the fixed ones, the threshold rules, the learned one."""
    return (*FIXED_ROUTERS, *THRESHOLD_RULES, LEARNED_ROUTER)


def threshold_rule(name: str | None) -> ThresholdRule | None:
    return THRESHOLD_RULES.get(name) if name is not None else None


def draft_stops() -> tuple[str, ...]:
    """The rules a speculative draft can stop on."""
    return tuple(r.name for r in THRESHOLD_RULES.values() if r.draft_stop)


def rules_help(draft_stop: bool = False) -> str:
    """The rules (with `draft_stop`, the draft-stop rules only) in words: `max_prob < τ, entropy > τ`."""
    return ", ".join(r.describe() for r in THRESHOLD_RULES.values() if r.draft_stop or not draft_stop)
