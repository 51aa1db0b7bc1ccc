"""`python -m analytics.advise --emit vllm|hf|llama.cpp`: the advice as settings an engine takes.

Each engine drafts by its own rule, so each setting is chosen by replaying that rule on the oracle trace
(greedy: exact) and pricing it with the run's measured costs (`analytics.advise`):

- vLLM (docs v0.25, `--speculative-config`; dynamic speculative decoding from PR #32374): a fixed K per
  step, no confidence stop. `{"method": "draft_model", "model", "num_speculative_tokens"}`; where costs were
  measured at more than one batch size, `num_speculative_tokens_per_batch_size` maps inclusive batch-size
  ranges ("1-3") to the K with the best predicted speed-up at that size (0 where none beats the LLM
  alone); `num_speculative_tokens` is the largest of them (vLLM's startup maximum).
- HF transformers (5.x `generate`): `num_assistant_tokens` K with `num_assistant_tokens_schedule=
  "constant"`; `assistant_confidence_threshold` τ stops a draft *after* a token whose probability is below
  τ (`ConfidenceCriteria`: the low token is kept), one token later than the collector's `max_prob` rule
  at the same τ, so it is replayed with that rule; 0 turns it off. With scikit-learn installed HF
  re-tunes a non-zero τ from its own ROC as it goes: the emitted τ is then its starting value.
- llama.cpp (`llama-server`, common/arg.cpp and docs/speculative.md): `--draft-max` K, `--draft-min`,
  `--draft-p-min` τ: a draft token is kept only while the draft model's top probability is ≥ τ. That is
  the collector's `max_prob` rule, replayed as it is, except that llama.cpp checks the first token too
  (where it is below τ it drafts nothing and decodes one token, `--draft-min 1`); the collector always
  drafts it, so the prediction is optimistic there.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from analytics.advise import K_GRID, THRESHOLDS, RunCosts, predict, run_costs
from analytics.batch_advice import costs_by_batch_size
from analytics.source import AnalyticsError, Source, connect, query
from analytics.speculative import OracleTrace, oracle_trace

ENGINES = ("vllm", "hf", "llama.cpp")


@dataclass(frozen=True)
class EngineSettings:
    """Settings for one engine, what they are predicted to do, and how they were chosen."""

    engine: str
    llm: str
    draft: str
    dataset: str
    oracle_run_id: int
    settings: dict[str, Any]  # the engine's own keys and values
    text: str  # ready to paste: JSON, generate kwargs or command-line flags
    draft_k: int
    threshold: float | None
    predicted_speedup: float  # at batch 1
    predicted_acceptance: float
    basis: str  # which costs the prediction used


def trace_for(trace: OracleTrace, engine: str) -> OracleTrace:
    """The trace whose `max_prob` replay drafts as the engine does (see the module docstring).

    HF keeps the first token below τ: its draft from p stops after q' = the first low token ≥ p, which
    is the collector's rule (stop before the first low token ≥ p + 1) on probabilities shifted one place
    (a token is "low" when the one before it was). llama.cpp checks the first token too, which the
    collector's rule never does (see the module docstring)."""
    if engine != "hf":
        return trace
    shifted = np.concatenate([trace.s1_prob[:1], trace.s1_prob[:-1]]).astype(np.float32)
    return replace(trace, s1_prob=shifted)  # within a sample: a draft at p never reads position p


def candidates(trace: OracleTrace, costs: RunCosts, engine: str) -> pl.DataFrame:
    """Every K (and, where the engine has one, max-prob threshold) replayed by the engine's rule."""
    rows = []
    for k in K_GRID:
        rows.append(predict(trace, costs, k))
    if engine != "vllm":
        t = trace_for(trace, engine)
        rows += [
            predict(t, costs, k, "max_prob", tau) for k in K_GRID if k > 1 for tau in THRESHOLDS["max_prob"]
        ]
    frame = pl.DataFrame([r.__dict__ for r in rows])
    return frame.sort("predicted_speedup", descending=True)


def k_per_batch_size(trace: OracleTrace, source: Source, run_id: int) -> dict[int, tuple[int, float]]:
    """Per batch size with costs (`analytics.batch_advice`): (the K with the best predicted speed-up, 0
    where none is above 1; that speed-up)."""
    out: dict[int, tuple[int, float]] = {}
    for b, costs in costs_by_batch_size(source, run_id).items():
        best = max((predict(trace, costs, k) for k in K_GRID), key=lambda p: p.predicted_speedup)
        out[b] = (best.draft_k if best.predicted_speedup > 1 else 0, best.predicted_speedup)
    return out


def batch_ranges(per_b: dict[int, tuple[int, float]]) -> dict[str, int]:
    """vLLM's inclusive "lo-hi" ranges: each measured size up to the next one less one; the largest
    measured size is its own range (vLLM carries the last K on over gaps)."""
    sizes = sorted(per_b)
    ends = [nxt - 1 for nxt in sizes[1:]] + [sizes[-1]]
    return {f"{lo}-{hi}": per_b[lo][0] for lo, hi in zip(sizes, ends, strict=True)}


def model_path(source: Source, name: str) -> str:
    """Where the warehouse says a model was loaded from (what an engine needs), else its name."""
    with connect(source) as con:
        rows = query(con, "SELECT path FROM models WHERE name = ?", [name])
    return str(rows[0, 0]) if rows.height else name


def emit(source: Source, engine: str, run_id: int, llm: str, draft: str, dataset: str) -> EngineSettings:
    """The engine's settings for one oracle run's pair (see the module docstring)."""
    if engine not in ENGINES:
        raise AnalyticsError(f"--emit {engine}: give one of {', '.join(ENGINES)}")
    costs = run_costs(source, run_id)
    if costs is None:
        raise AnalyticsError(f"run {run_id} recorded no batch-1 costs; collect it with calibration on")
    trace = oracle_trace(source, run_id)
    best = candidates(trace, costs, engine).row(0, named=True)
    k, tau = int(best["draft_k"]), best["draft_threshold"]
    draft_path = model_path(source, draft)
    basis = "batch-1 costs (measured at the start of the oracle run)"
    if engine == "vllm":
        settings: dict[str, Any] = {"method": "draft_model", "model": draft_path, "num_speculative_tokens": k}
        per_b = k_per_batch_size(trace, source, run_id)
        if len(per_b) > 1:
            ranges = batch_ranges(per_b)
            settings["num_speculative_tokens"] = max([k, *ranges.values()])
            settings["num_speculative_tokens_per_batch_size"] = ranges
            basis = f"costs measured at batch sizes {', '.join(map(str, sorted(per_b)))}"
        else:
            basis += "; no other batch size measured, so no per-batch-size schedule"
        text = f"--speculative-config '{json.dumps(settings)}'"
    elif engine == "hf":
        settings = {"assistant_model": draft_path, "num_assistant_tokens": k,
                    "num_assistant_tokens_schedule": "constant",
                    "assistant_confidence_threshold": float(tau) if tau is not None else 0.0}  # fmt: skip
        text = "model.generate(**inputs, do_sample=False, assistant_model=AutoModelForCausalLM." + (
            f"from_pretrained({draft_path!r}), "
            + ", ".join(f"{n}={v!r}" for n, v in list(settings.items())[1:])
            + ")"
        )
    else:
        settings = {"--model-draft": draft_path, "--draft-max": k, "--draft-min": 1,
                    "--draft-p-min": float(tau) if tau is not None else 0.0}  # fmt: skip
        text = " ".join(f"{n} {shlex.quote(str(v))}" for n, v in settings.items())
    return EngineSettings(engine, llm, draft, dataset, run_id, settings, text, k, tau,
                          float(best["predicted_speedup"]), float(best["acceptance"]), basis)  # fmt: skip


def pick_pair(best: pl.DataFrame, llm: str | None, dataset: str | None) -> dict[str, Any]:
    """The advised (LLM, dataset) row to emit for: the only one, or the one --llm / --dataset name."""
    rows = best
    if llm is not None:
        rows = rows.filter(pl.col("llm") == llm)
    if dataset is not None:
        rows = rows.filter(pl.col("dataset") == dataset)
    if rows.height == 1:
        return rows.row(0, named=True)
    have = "; ".join(f"--llm {r['llm']} --dataset {r['dataset']}" for r in best.iter_rows(named=True))
    what = "matches none" if rows.height == 0 else f"leaves {rows.height}"
    raise AnalyticsError(f"--emit needs one LLM and dataset; this choice {what}. Pick one of: {have}")


def settings_file_text(s: EngineSettings) -> str:
    """What --emit writes: the vLLM speculative config or the HF generate kwargs as JSON, or the
    llama.cpp flags as one line."""
    if s.engine == "llama.cpp":
        return s.text + "\n"
    return json.dumps(s.settings, indent=1) + "\n"


def describe(s: EngineSettings) -> str:
    """One line on where the settings come from and what they are predicted to do."""
    rule = f", max-prob τ {s.threshold:g}" if s.threshold is not None else ""
    return (
        f"# {s.engine}: {s.llm} with draft {s.draft} on {s.dataset} (oracle run {s.oracle_run_id}): "
        f"K={s.draft_k}{rule}; predicted {s.predicted_speedup:.2f}x at batch 1, "
        f"acceptance {s.predicted_acceptance:.3f}; {s.basis}"
    )
