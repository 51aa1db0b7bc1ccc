"""`python -m analytics.compare A B`: two runs side by side, with the interval of each difference.

CoF, accuracy and acceptance are compared per sample: where the two runs share prompts, the samples pair
by prompt and the interval is the paired t interval of the mean per-sample difference (B − A), each run's
mean taken over the paired samples; otherwise the two sets of samples are independent (Welch's t
interval). Speed is the one speed-up definition (`analytics.speedup`: predicted from the run's cycles and
its pair's measured costs, measured over the run's own paired baseline), for speculative runs; one figure
per run, so no interval. The samples whose tokens first differ are listed with the step where they part.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from analytics.source import AnalyticsError, Source, connect, open_warehouse, own_settings, query
from analytics.speedup import run_speedups
from warehouse.db import WarehouseError
from warehouse.settings import add_warehouse_argument, command_parser

EXAMPLES = """examples:
  python -m analytics.compare 3 7                     # runs 3 and 7 of ./fsgen.duckdb
  python -m analytics.compare 3 7 --json --warehouse runs.duckdb
"""
RUN_FIELDS = ("run_id", "experiment", "llm", "slm", "method", "router", "threshold", "dataset", "status",
              "tokens_per_s")  # fmt: skip
DIFFERENCE_SCHEMA = {"sample_a": pl.Int32, "sample_b": pl.Int32, "step": pl.Int64, "token_a": pl.Int64,
                     "token_b": pl.Int64}  # fmt: skip
METRIC_SCHEMA = {
    "metric": pl.Utf8, "a": pl.Float64, "b": pl.Float64, "difference": pl.Float64, "ci_lo": pl.Float64,
    "ci_hi": pl.Float64, "samples": pl.Int64, "interval": pl.Utf8,
}  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """Two runs: what they are, their figures with the difference's interval, where their tokens part."""

    runs: pl.DataFrame  # RUN_FIELDS of A then B
    settings: dict[str, tuple[Any, Any]]  # the recorded settings that differ: name -> (A's, B's)
    metrics: pl.DataFrame  # METRIC_SCHEMA
    paired: int  # samples paired by prompt (0: independent samples)
    first_differences: pl.DataFrame  # sample_a, sample_b, step, token_a, token_b (paired samples only)
    confidence: float


def _run(con: Source, run_id: int) -> dict[str, Any]:
    found = query(con, f"SELECT {', '.join(RUN_FIELDS)}, settings FROM runs WHERE run_id = ?", [run_id])
    if found.height == 0:
        raise AnalyticsError(
            f"no run {run_id} in this warehouse; list runs with: python -m warehouse runs list"
        )
    return found.row(0, named=True)


def per_sample(con: Source, run_id: int) -> pl.DataFrame:
    """One row per sample: prompt, tokens (as a list), CoF, correctness and acceptance (speculative)."""
    return query(
        con,
        """SELECT s.sample_id, s.prompt, CAST(s.correct AS DOUBLE) AS correct,
                  CAST(m.mismatches AS DOUBLE) / nullif(m.tokens, 0) AS cof,
                  CAST(c.accepted AS DOUBLE) / nullif(c.drafted, 0) AS acceptance,
                  (SELECT list(e.token_id ORDER BY e.step) FROM token_events e
                   WHERE e.run_id = s.run_id AND e.sample_id = s.sample_id) AS tokens
           FROM samples s
           LEFT JOIN sample_sums m ON m.run_id = s.run_id AND m.sample_id = s.sample_id
           LEFT JOIN (SELECT sample_id, sum(drafted) AS drafted, sum(accepted) AS accepted
                      FROM spec_cycles WHERE run_id = ? GROUP BY sample_id) c ON c.sample_id = s.sample_id
           WHERE s.run_id = ? ORDER BY s.sample_id""",
        [run_id, run_id],
    )


def difference_interval(
    a: np.ndarray, b: np.ndarray, paired: bool, confidence: float
) -> tuple[float | None, float | None, float | None]:
    """(B − A, lo, hi): the paired t interval of the mean difference, or Welch's for independent samples."""
    a, b = a[~np.isnan(a)] if not paired else a, b[~np.isnan(b)] if not paired else b
    if paired:
        d = b - a
        d = d[~np.isnan(d)]
        if len(d) == 0:
            return None, None, None
        mean = float(d.mean())
        if len(d) < 2:
            return mean, None, None
        half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
        return mean, mean - half, mean + half
    if len(a) == 0 or len(b) == 0:
        return None, None, None
    mean = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return mean, None, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return mean, mean, mean
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * se)
    return mean, mean - half, mean + half


def _metric_rows(sa: pl.DataFrame, sb: pl.DataFrame, pairs: pl.DataFrame, confidence: float) -> list[dict]:
    rows = []
    paired = pairs.height > 0
    for metric in ("cof", "correct", "acceptance"):
        if sa[metric].null_count() == sa.height and sb[metric].null_count() == sb.height:
            continue
        if paired:
            x = pairs[f"{metric}_a"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            y = pairs[f"{metric}_b"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        else:
            x = sa[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
            y = sb[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
        diff, lo, hi = difference_interval(x, y, paired, confidence)
        name = "accuracy" if metric == "correct" else metric
        n = int(np.sum(~np.isnan(y - x))) if paired else int(min(np.sum(~np.isnan(x)), np.sum(~np.isnan(y))))
        kind = "paired by prompt, t" if paired else "independent samples, Welch t"
        means = {"a": _nanmean(x), "b": _nanmean(y)}  # of the samples behind the interval
        rows.append({"metric": f"{name} (mean per sample)", **means, "difference": diff, "ci_lo": lo,
                     "ci_hi": hi, "samples": n, "interval": kind})  # fmt: skip
    return rows


SPEEDUPS = (("predicted", "predicted_from"), ("measured", "measured_note"))


def speedup_rows(speedups: pl.DataFrame, a: int, b: int) -> list[dict[str, Any]]:
    """Predicted and measured speed-up of A and B (`analytics.speedup.run_speedups`; a run that is not
    speculative has none), with B − A; a missing figure's reason is in `interval`."""
    if speedups.height == 0:
        return []
    found = {int(r["run_id"]): r for r in speedups.iter_rows(named=True)}
    rows = []
    for kind, why in SPEEDUPS:
        va, vb = (found.get(r, {}).get(f"{kind}_speedup") for r in (a, b))
        reasons = [f"run {r}: {found[r][why] if r in found else 'not speculative'}"
                   for r, v in ((a, va), (b, vb)) if v is None]  # fmt: skip
        difference = vb - va if va is not None and vb is not None else None
        rows.append({"metric": f"speed-up, {kind} (analytics.speedup)", "a": va, "b": vb,
                     "difference": difference, "ci_lo": None, "ci_hi": None, "samples": None,
                     "interval": "; ".join(["one figure per run: none", *reasons])})  # fmt: skip
    return rows


def _nanmean(x: np.ndarray) -> float | None:
    kept = x[~np.isnan(x)]
    return float(kept.mean()) if len(kept) else None


def first_differences(pairs: pl.DataFrame) -> pl.DataFrame:
    """Paired samples whose tokens differ: the first step where they part and each run's token there."""
    rows = []
    for r in pairs.iter_rows(named=True):
        ta, tb = list(r["tokens_a"] or []), list(r["tokens_b"] or [])
        step = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), None)
        if step is None and len(ta) == len(tb):
            continue
        step = min(len(ta), len(tb)) if step is None else step
        token_a, token_b = (ta[step] if step < len(ta) else None), (tb[step] if step < len(tb) else None)
        rows.append({"sample_a": r["sample_id_a"], "sample_b": r["sample_id_b"], "step": step,
                     "token_a": token_a, "token_b": token_b})  # fmt: skip
    return pl.DataFrame(rows, schema=DIFFERENCE_SCHEMA)


def compare_runs(source: Source, a: int, b: int, confidence: float = 0.95) -> Comparison:
    """Runs `a` and `b` side by side (any experiments, excluded or not: they are named)."""
    if not 0 < confidence < 1:
        raise AnalyticsError(f"confidence must lie in (0, 1), got {confidence}")
    with connect(source) as con:
        ra, rb = _run(con, a), _run(con, b)
        sa, sb = per_sample(con, a), per_sample(con, b)
        speculative = [r["run_id"] for r in (ra, rb) if r["method"] == "speculative"]
        speedups = run_speedups(con, speculative)
    prompts_a, prompts_b = sa.unique("prompt", keep="none"), sb.unique("prompt", keep="none")
    pairs = prompts_a.join(prompts_b, on="prompt", suffix="_b").rename(
        {c: f"{c}_a" for c in ("sample_id", "cof", "correct", "acceptance", "tokens")}
    )
    metrics = _metric_rows(sa, sb, pairs, confidence)
    metrics += speedup_rows(speedups, a, b)
    # Each run's settings of its own method only: an oracle run has no K to differ in.
    set_a, set_b = (own_settings(json.loads(r.pop("settings") or "{}")) for r in (ra, rb))
    differ = {k: (set_a.get(k), set_b.get(k)) for k in sorted(set_a | set_b) if set_a.get(k) != set_b.get(k)}
    return Comparison(
        runs=pl.DataFrame([ra, rb]),
        settings=differ,
        metrics=pl.DataFrame(metrics, schema=METRIC_SCHEMA),
        paired=pairs.height,
        first_differences=first_differences(pairs),
        confidence=confidence,
    )


def format_comparison(c: Comparison, limit: int = 20) -> str:
    """The comparison as text: runs, differing settings, metrics, the first samples whose tokens differ."""
    from analytics.summary import markdown_table

    a, b = c.runs["run_id"].to_list()
    pairing = f"{c.paired} samples paired by prompt" if c.paired else "no shared prompts: independent samples"
    lines = [f"run {a} (A) vs run {b} (B); {pairing}; {c.confidence:.0%} intervals of B − A", "",
             markdown_table(c.runs), ""]  # fmt: skip
    lines += ["settings that differ:"] + [f"  {k}: {x!r} vs {y!r}" for k, x, y in _flat(c.settings)] + [""]
    lines += [markdown_table(c.metrics), ""]
    diff = c.first_differences
    lines.append(f"{diff.height} paired sample(s) whose tokens differ" + (":" if diff.height else ""))
    for r in diff.head(limit).iter_rows(named=True):
        views = f"/runs/{a}/samples/{r['sample_a']} and /runs/{b}/samples/{r['sample_b']}"
        lines.append(f"  sample {r['sample_a']} / {r['sample_b']}: from step {r['step']} ({views})")
    return "\n".join(lines)


def _flat(settings: dict[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(k, x, y) for k, (x, y) in settings.items()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for a problem the user can fix)."""
    p = command_parser(
        "python -m analytics.compare",
        "Two runs side by side: CoF, accuracy, acceptance, speed, the difference's interval.",
        EXAMPLES,
    )
    p.add_argument("a", type=int, help="run id of A")
    p.add_argument("b", type=int, help="run id of B")
    add_warehouse_argument(p)
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = p.parse_args(argv)
    try:
        con = open_warehouse(args.warehouse)
        try:
            c = compare_runs(con, args.a, args.b, args.confidence)
        finally:
            con.close()
    except (WarehouseError, AnalyticsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(as_json(c), default=str))
    else:
        print(format_comparison(c))
    return 0


def as_json(c: Comparison) -> dict[str, Any]:
    """The comparison as JSON-able data (the API's response shape)."""
    return {
        "runs": c.runs.to_dicts(),
        "settings": {k: {"a": x, "b": y} for k, (x, y) in c.settings.items()},
        "metrics": c.metrics.to_dicts(),
        "paired": c.paired,
        "confidence": c.confidence,
        "first_differences": c.first_differences.to_dicts(),
    }


__all__ = ["Comparison", "compare_runs", "format_comparison", "main"]

if __name__ == "__main__":
    sys.exit(main())
