"""`python -m analytics.report`: the paper's figures (PNG and SVG) and report.md from one warehouse."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from analytics.cof_figure import figure_cof_vs_ratio
from analytics.frequency import collaboration_frequency
from analytics.positions import position_profile
from analytics.report_figures import (
    figure_acceptance,
    figure_entropy,
    figure_position_heatmap,
    figure_routers,
)
from analytics.routers import best_threshold, replay_all
from analytics.scaling import (
    GroupFit,
    LawFit,
    fit_groups,
    loo_coverage,
    pair_points,
)
from analytics.served import served_by_position, served_summary
from analytics.source import (
    Filters,
    open_warehouse,
    query,
    require_experiment,
    runs_where,
    scoped,
    setting_labels,
)
from analytics.speculative import acceptance_by_position, speculative_runs
from analytics.summary import (
    PAPER_FILTERS,
    Headline,
    headline,
    headline_sections,
    speedup_section,
    table_or_note,
)
from analytics.uncertainty import entropy_histogram
from warehouse.db import WarehouseError
from warehouse.errors import UserError
from warehouse.settings import add_warehouse_argument, command_parser, non_negative_int, resolve_warehouse

EXAMPLES = """examples:
  python -m analytics.report                          # ./fsgen.duckdb (or $FSGEN_WAREHOUSE) -> ./report
  python -m analytics.report --warehouse runs.duckdb --out out/report
  python -m analytics.report --bootstrap 0 --formats png   # quicker: no intervals, PNG only
  python -m analytics.report --experiment tau-grid         # one experiment (default: the most recent)
"""
BUDGETS = (0.05, 0.1, 0.2)
PAIR_KEYS = ["llm", "slm", "method", "dataset"]
COVERAGE_BOOTSTRAP = 200


@dataclass(frozen=True)
class ReportOptions:
    """What to write and where."""

    out: Path
    formats: tuple[str, ...] = ("png", "svg")
    bootstrap: int = 1000
    seed: int = 0
    quiet: bool = False
    experiment: str | None = None  # None: the most recent

    @property
    def scope(self) -> dict[str, Any]:
        """The runs every section reads: one experiment, no excluded runs, no baselines."""
        return scoped(None, self.experiment)

    @property
    def paper(self) -> dict[str, Any]:
        """The scope's complete runs with router `always` (the paper's findings)."""
        return {**self.scope, **PAPER_FILTERS}


DEFAULTS = ReportOptions(Path("report"))


def _save(fig: Figure, opts: ReportOptions, name: str) -> list[Path]:
    paths = []
    for fmt in opts.formats:
        path = opts.out / f"{name}.{fmt}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    return paths


def router_curves(
    con: duckdb.DuckDBPyConnection, limit: int = 6, filters: Filters | None = None
) -> dict[str, pl.DataFrame]:
    """Replay every router kind on the largest complete `always` run of each method (of the runs in scope)."""
    where, params = runs_where({**(filters or {}), "router": "always", "status": "complete"})
    runs = query(
        con,
        f"""SELECT r.run_id, r.method, r.llm, r.slm, c.tokens
           FROM runs r JOIN run_cof c ON c.run_id = r.run_id {where} AND c.tokens > 0
           QUALIFY row_number() OVER (PARTITION BY r.method ORDER BY c.tokens DESC, r.run_id) = 1
           ORDER BY r.method LIMIT ?""",
        [*params, limit],
    )
    return {
        f"{row['method']} {row['llm']}/{row['slm']} (run {row['run_id']})": replay_all(con, row["run_id"])
        for row in runs.iter_rows(named=True)
    }


def fit_details(points: pl.DataFrame, fits: Sequence[GroupFit]) -> pl.DataFrame:
    """Per group with the paper's law fitted: its coefficients with intervals, or why it is no finding."""
    rows = []
    for g in fits:
        if g.fit is None:
            continue
        grp = g.of(points).drop_nulls("cof")
        loo = None if g.loo is None else g.loo.rmse
        ci, ok = g.fit.ci, g.note == "ok"
        rows.append(
            {
                "method": g.method,
                "settings": _settings(grp),
                "dataset": g.dataset,
                "pairs": g.pairs,
                "gamma": _with_ci(g.fit.gamma, ci.gamma if ci else None) if ok else None,
                "alpha": _with_ci(g.fit.alpha, ci.alpha if ci else None) if ok else None,
                "beta": _with_ci(g.fit.beta, ci.beta if ci else None) if ok else None,
                "r2": round(g.fit.r2, 4),
                "loo_rmse": None if loo is None else round(loo, 5),
                "note": g.note,
            }
        )
    return pl.DataFrame(rows)


def law_table(points: pl.DataFrame, fits: Sequence[GroupFit], bootstrap: int, seed: int) -> pl.DataFrame:
    """Every candidate law of every group: fit, LOO RMSE, AICc, identifiability; LOO coverage per group."""
    rows = []
    for g in fits:
        if g.laws is None:
            continue
        grp = g.of(points).drop_nulls("cof")
        cov = loo_coverage(grp["llm_params"], grp["slm_params"], grp["cof"], bootstrap=bootstrap, seed=seed)
        for i, c in enumerate(g.laws.candidates):
            rows.append(
                {
                    "method": g.method,
                    "settings": _settings(grp),
                    "dataset": g.dataset,
                    "law": f"**{c.form}**" if i == 0 else c.form,
                    "fit": _law_text(c, g.laws.candidate(c.limit_form) if c.limit_form else None),
                    "loo_rmse": c.loo_rmse,
                    "nested_loo_rmse": g.laws.nested_loo_rmse if i == 0 else None,
                    "aicc": c.aicc if np.isfinite(c.aicc) else None,
                    "identified": "yes" if c.identified else f"no: {c.reason}",
                    "loo_coverage_90": f"{cov.covered}/{cov.total}" if i == 0 else "",
                }
            )
    return pl.DataFrame(rows)


def _settings(grp: pl.DataFrame) -> str:
    """The settings that tell a group's setup from the others' (its points' `settings`), or ""."""
    return str(grp["settings"][0] or "") if "settings" in grp.columns and grp.height else ""


def _law_text(law: LawFit, limit: LawFit | None) -> str:
    """A candidate's fitted formula; an unidentified one only as its limit form, never its coefficients."""
    if law.identified:
        return law.describe()
    if law.limit_form is not None:
        return f"→ its limit {law.limit_form}" + (f": {limit.describe()}" if limit else "")
    return "(unidentified)"


def _with_ci(value: float, ci: tuple[float, float] | None) -> str:
    return f"{value:.4g}" if ci is None else f"{value:.4g} [{ci[0]:.3g}, {ci[1]:.3g}]"


def _say(opts: ReportOptions, step: int, total: int, text: str) -> None:
    if not opts.quiet:
        print(f"[{step}/{total}] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Section:
    """A titled part of report.md and the figure files it links."""

    title: str
    body: str
    files: tuple[Path, ...] = ()


def section_scaling(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> Section:
    """CoF by LLM size and by ratio with the chosen law, every candidate law, and the paper's law."""
    points = pair_points(con, router="always", filters=opts.scope)
    if points.height == 0:
        return Section("Scaling law", "(no complete `always` runs with pairs yet)")
    spread = collaboration_frequency(con, PAIR_KEYS, filters=opts.paper).select(
        *PAIR_KEYS, "cof_lo", "cof_hi"
    )
    points = points.join(spread, on=PAIR_KEYS, how="left")
    # What tells one setup from another (K, λ, τ ...): in the figure's titles and the tables' rows.
    points = points.join(setting_labels(con, "setup", opts.paper), on="setup", how="left")
    fits = fit_groups(points, bootstrap=opts.bootstrap, seed=opts.seed)
    files = _save(figure_cof_vs_ratio(points, fits), opts, "cof_vs_ratio")
    resamples = min(opts.bootstrap, COVERAGE_BOOTSTRAP) or COVERAGE_BOOTSTRAP
    laws = law_table(points, fits, resamples, opts.seed)
    details = fit_details(points, fits)
    notes = [f"- {g.method} / {g.dataset}: {g.laws_note}" for g in fits if g.laws_note]
    ci = (
        f"{opts.bootstrap} bootstrap resamples, 95% percentile intervals"
        if opts.bootstrap
        else "no bootstrap"
    )
    body = (
        "Candidate laws per method and dataset, the chosen one in bold (lowest leave-one-pair-out RMSE "
        "among identified laws, ties within 5% by AICc); an unidentified law is shown as its limit form. "
        "nested_loo_rmse: the chosen law's error on an unseen pair, the choice itself re-run without each "
        "pair (loo_rmse of the chosen law is optimistic: the pairs also chose it). "
        "loo_coverage_90: pairs inside the 90% prediction interval of the law chosen without them "
        f"({resamples} residual-bootstrap resamples each).\n\n"
    )
    body += table_or_note(laws, "no group has enough pairs for any law") + "\n" + "\n".join(notes)
    body += f"\n\nThe paper's CoF = γ·R^(−α) + β ({ci}; loo_rmse = leave-one-pair-out error; "
    body += "coefficients only where the law is identified).\n\n"
    body += table_or_note(details, "no group has enough pairs to fit")
    return Section("Scaling law", body.strip(), tuple(files))


def section_positions(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> Section:
    """Position heatmap per pair."""
    profile = position_profile(con, ["llm", "slm", "method"], filters=opts.paper)
    if profile.height == 0:
        return Section("Where mismatches fall", "(no events)")
    params = query(con, "SELECT name, CAST(params AS DOUBLE) AS params FROM models")
    for role in ("llm", "slm"):
        named = params.rename({"name": role, "params": f"{role}_params"})
        profile = profile.join(named, on=role, how="left")
    files = _save(figure_position_heatmap(profile), opts, "position_heatmap")
    return Section(
        "Where mismatches fall",
        "Share of each pair's mismatches by relative-position decile (datasets pooled; pairs by ratio).",
        tuple(files),
    )


def section_entropy(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> Section:
    """Entropy distributions of matched vs mismatched tokens."""
    hist = entropy_histogram(con, ["method"], filters=opts.paper)
    if hist.height == 0:
        return Section("System 1 entropy", "(no events)")
    files = _save(figure_entropy(hist), opts, "entropy_distributions")
    return Section("System 1 entropy", "Entropy densities of matched vs mismatched tokens.", tuple(files))


def section_routers(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> Section:
    """Router Pareto curves and the best threshold for a few consult budgets."""
    curves = router_curves(con, filters=opts.scope)
    if not curves:
        return Section("Router replay", "(no complete `always` run to replay)")
    files = _save(figure_routers(curves), opts, "router_pareto")
    rows = []
    for title, frame in curves.items():
        for budget in BUDGETS:
            choice = best_threshold(frame, budget)
            if choice is not None:
                rows.append(
                    {
                        "run": title,
                        "budget": budget,
                        "router": choice.router,
                        "threshold": choice.threshold,
                        "consult_rate": choice.consult_rate,
                        "caught": choice.caught,
                        "precision": choice.precision,
                    }
                )
    body = "Best threshold within each consult budget (offline replay of the recorded run).\n\n"
    return Section(
        "Router replay", body + table_or_note(pl.DataFrame(rows), "no threshold fits"), tuple(files)
    )


def section_speculative(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> Section:
    """Acceptance by draft position and expected vs measured speed-up, when speculative data exist."""
    acceptance = acceptance_by_position(con, ["run_id"], filters={**opts.scope, "status": "complete"})
    served = served_by_position(con)
    if acceptance.height == 0 and served.height == 0:
        return Section("Speculative decoding", "(no speculative cycles in this warehouse)")
    runs = speculative_runs(con, filters={**opts.scope, "status": "complete"})
    files = _save(figure_acceptance(acceptance, runs, served), opts, "speculative_acceptance")
    title, table = speedup_section(runs)
    body = f"Acceptance by draft position per pair and dataset (figure). {title}:\n\n{table}"
    imported = served_summary(con)
    if imported.height:
        body += (
            "\n\nImported serving requests (dashed in the figure; `python -m warehouse import`): "
            + "; ".join(
                f"{r['engine']} {r['model']}/{r['draft']} K={r['k']}: {r['requests']} requests, acceptance "
                f"{r['acceptance']:.3f}"
                for r in imported.iter_rows(named=True)
            )
        )
    return Section("Speculative decoding", body, tuple(files))


def render_markdown(warehouse: str, h: Headline, sections: Sequence[Section], out: Path) -> str:
    """report.md: the headline tables, then each section with its figures."""
    lines = [
        "# fsgen report",
        "",
        f"Warehouse `{warehouse}`, experiment `{h.experiment or '-'}`: {h.runs} complete run(s), "
        f"{h.tokens:,} token events.",
        "",
    ]
    for title, body in headline_sections(h):
        lines += [f"## {title}", "", body, ""]
    for sec in sections:
        lines += [f"## {sec.title}", "", sec.body, ""]
        lines += [f"![{p.stem}]({p.relative_to(out)})" for p in sec.files if p.suffix == ".png"]
        lines += [""]
    return "\n".join(lines)


SECTIONS: tuple[tuple[str, Callable[[duckdb.DuckDBPyConnection, ReportOptions], Section]], ...] = (
    ("scaling law and CoF vs ratio", section_scaling),
    ("position heatmap", section_positions),
    ("entropy distributions", section_entropy),
    ("router replay", section_routers),
    ("speculative acceptance", section_speculative),
)


def write_report(con: duckdb.DuckDBPyConnection, warehouse: str, opts: ReportOptions) -> list[Path]:
    """Write every figure and report.md into opts.out; returns the files written."""
    opts.out.mkdir(parents=True, exist_ok=True)
    total = len(SECTIONS) + 2
    _say(opts, 1, total, "headline tables")
    h = headline(con, opts.experiment)
    sections = []
    for i, (label, build) in enumerate(SECTIONS, start=2):
        started = time.perf_counter()
        sections.append(build(con, opts))
        _say(opts, i, total, f"{label} ({time.perf_counter() - started:.1f} s)")
    report = opts.out / "report.md"
    report.write_text(render_markdown(warehouse, h, sections, opts.out))
    _say(opts, total, total, f"wrote {report}")
    return [report, *(p for s in sections for p in s.files)]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = command_parser(
        "python -m analytics.report",
        "Write the paper's figures (PNG/SVG) and report.md from an fsgen warehouse.",
        EXAMPLES,
    )
    add_warehouse_argument(parser)
    parser.add_argument("--out", type=Path, default=DEFAULTS.out, help="output folder (default: ./report)")
    # The defaults are ReportOptions' own (written once, there).
    parser.add_argument("--formats", nargs="+", default=list(DEFAULTS.formats), choices=["png", "svg", "pdf"])
    parser.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=DEFAULTS.bootstrap,
        help=f"resamples for fit intervals (0: none; default {DEFAULTS.bootstrap})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="bootstrap seed")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--experiment", help="the experiment to report (default: the most recent)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for a warehouse problem the user can fix)."""
    args = build_parser().parse_args(argv)
    opts = ReportOptions(
        args.out, tuple(args.formats), args.bootstrap, args.seed, args.quiet, args.experiment
    )
    try:
        con = open_warehouse(args.warehouse)
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        require_experiment(con, args.experiment)
        files = write_report(con, str(resolve_warehouse(args.warehouse)), opts)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    if not opts.quiet:
        print(f"{len(files)} file(s) in {opts.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
