"""The four findings of a warehouse beside the paper's and the zoo's, and the advisor's pick.

The warehouse's column is computed from its headline (`analytics.summary.headline`); the other columns
are quoted, each with where it comes from: the paper ("Fast and Slow Generating", Zhang et al., 2024,
arXiv 2406.12295, as fsgen's design quotes it) and the zoo's default job (README, zoo v4). The paper
reports its four findings for both Qwen1.5 (0.5B–72B) and Pythia (70M–12B); fsgen quotes CoF values for
Qwen only, so the Pythia column states the finding without a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analytics.source import Source
from analytics.summary import Headline, markdown_table

FINDINGS = ("CoF", "law", "positions", "entropy")


@dataclass(frozen=True)
class Quoted:
    """A finding as a source states it."""

    paper_qwen: str
    paper_pythia: str
    zoo: str


QUOTED: dict[str, Quoted] = {
    "CoF": Quoted(
        "under ~20% of tokens in most settings; 32B/14B (R 2.3) 0.066, 1.8B/0.5B (R 3.6) 0.101",
        "under ~20% of tokens in most settings",
        "oracle 0.01–0.31 over the six pairs",
    ),
    "law": Quoted(
        "CoF = γ·R^(−α) + β; rises with R for a fixed SLM and saturates; depends on both sizes",
        "CoF = γ·R^(−α) + β",
        "fitted over 6 pairs (R 3.2–36.9); see the zoo headline for the chosen law per task",
    ),
    "positions": Quoted(
        "interventions cluster at the start of a generation",
        "interventions cluster at the start of a generation",
        "first 10% of tokens: arith 0.25–0.39×, choice 1.31–1.37× uniform; mostly steps the prompt fixes",
    ),
    "entropy": Quoted(
        "interventions where System 1 is uncertain (high entropy, small margin)",
        "interventions where System 1 is uncertain",
        "entropy AUROC 0.87–0.98 (default job)",
    ),
}


def _span(values: pl.Series, fmt: str = "{:.3f}") -> str:
    clean = values.drop_nulls()
    if clean.len() == 0:
        return "–"
    lo, hi = float(clean.min()), float(clean.max())  # type: ignore[arg-type]
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def measured(h: Headline) -> dict[str, str]:
    """Each finding as this warehouse's headline has it, in one line."""
    cof = h.cof.filter(pl.col("router") == "always")
    by_method = cof.group_by("method", maintain_order=True).agg(pl.col("cof"), pl.col("param_ratio"))
    cof_text = "; ".join(
        f"{r['method']} {_span(pl.Series(r['cof']))}" for r in by_method.sort("method").iter_rows(named=True)
    )
    ratios = _span(cof["param_ratio"], "{:.2f}")
    laws = h.fits.select("method", "dataset", "pairs", "law", "note")
    chosen = laws.group_by("law").len().sort("len", descending=True)
    law_text = ", ".join(f"{r['law'] or 'none'} ×{r['len']}" for r in chosen.iter_rows(named=True))
    paper_ok = laws.filter(pl.col("note") == "ok").height
    early = "; ".join(
        f"{r['method']} {r['enrichment']:.2f}× ({_p_text(r['p_value'])})"
        for r in h.early.sort("method").iter_rows(named=True)
        if r["enrichment"] is not None
    )
    auroc = "; ".join(
        f"{r['method']} {r['auroc']:.2f}"
        for r in h.entropy_auroc.sort("method").iter_rows(named=True)
        if r["auroc"] is not None
    )
    return {
        "CoF": f"{cof_text} (R {ratios})" if cof.height else "–",
        "law": (
            f"chosen law per method/task: {law_text}; the paper's law identified in {paper_ok} of "
            f"{laws.height}"
            if laws.height
            else "no law: fewer than 3 pairs with distinct sizes"
        ),
        "positions": f"first 10% of tokens vs uniform: {early}" if early else "–",
        "entropy": f"entropy AUROC: {auroc}" if auroc else "–",
    }


def beside_frame(h: Headline) -> pl.DataFrame:
    """One row per finding: this warehouse, the paper (Qwen, Pythia), the zoo."""
    here = measured(h)
    return pl.DataFrame(
        {
            "finding": list(FINDINGS),
            "this warehouse": [here[f] for f in FINDINGS],
            "paper: Qwen1.5": [QUOTED[f].paper_qwen for f in FINDINGS],
            "paper: Pythia": [QUOTED[f].paper_pythia for f in FINDINGS],
            "zoo (README, v4)": [QUOTED[f].zoo for f in FINDINGS],
        }
    )


def advice_lines(source: Source) -> list[str]:
    """The speculative advisor's best setting per LLM and task, one line each (none without oracle costs)."""
    from analytics.advise import advise

    best = advise(source).best
    lines = []
    for r in best.iter_rows(named=True):
        stop = f", stop {r['draft_stop']} {r['draft_threshold']}" if r["draft_stop"] else ""
        lines.append(
            f"- {r['llm']} · {r['dataset']}: draft {r['slm']}, K {r['draft_k']}{stop}: acceptance "
            f"{r['acceptance']:.2f}, predicted speed-up {r['predicted_speedup']:.2f}× (batch 1, this machine)"
        )
    return lines or ["- (no greedy oracle run with recorded costs: nothing to advise)"]


def format_beside(h: Headline, source: Source) -> str:
    """The comparison table and the advisor's recommendation (with the batch sizes its costs cover), as
    printable markdown."""
    from analytics.batch_advice import COVERAGE_NOTE, cost_coverage, coverage_lines

    return "\n".join(
        [
            "The four findings beside the paper and the zoo",
            markdown_table(beside_frame(h)),
            "",
            "The speculative advisor's recommendation (python -m analytics.advise)",
            *advice_lines(source),
            "",
            f"{COVERAGE_NOTE}:",
            *coverage_lines(cost_coverage(source)),
        ]
    )


def _p_text(p: float | None) -> str:
    """A two-sided p-value, or why there is none (too few samples to test)."""
    return "p n/a" if p is None else f"p {p:.1e}"
