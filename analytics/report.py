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
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analytics.cof_figure import figure_cof_vs_ratio
from analytics.frequency import collaboration_frequency
from analytics.positions import position_profile
from analytics.routers import ROUTERS, best_threshold, pareto_front, replay_all
from analytics.scaling import (
    GroupFit,
    LawFit,
    TooFewPoints,
    fit_groups,
    leave_one_out_error,
    loo_coverage,
    pair_points,
)
from analytics.served import KEYS as SERVED_KEYS
from analytics.served import served_by_position, served_summary
from analytics.source import Filters, open_warehouse, query, runs_where, scoped, setting_labels
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
from warehouse.settings import add_warehouse_argument, resolve_warehouse

EXAMPLES = """examples:
  python -m analytics.report                          # ./fsgen.duckdb (or $FSGEN_WAREHOUSE) -> ./report
  python -m analytics.report --warehouse runs.duckdb --out out/report
  python -m analytics.report --bootstrap 0 --formats png   # quicker: no intervals, PNG only
  python -m analytics.report --experiment tau-grid         # one experiment (default: the most recent)
"""
BUDGETS = (0.05, 0.1, 0.2)
LINE_STYLES = ("-", "--", ":", "-.")  # a router's line style: by its place among the routers, cycled
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


def _grid(n: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(3, n))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    return fig, axes


def _short(name: str) -> str:
    """A model's name without its `zoo:` style prefix or folders, for axis labels."""
    return name.rsplit("/", 1)[-1].split(":", 1)[-1]


def figure_position_heatmap(profile: pl.DataFrame) -> Figure:
    """Share of each pair's mismatches per relative-position decile, one panel per method, one colour
    scale for all panels (so a colour means the same share everywhere)."""
    methods = sorted(profile["method"].unique().to_list())
    rows = profile.select(pl.struct("llm", "slm").n_unique().over("method").max()).item() or 1
    cols = min(2, len(methods))
    grid_rows = -(-len(methods) // cols)
    fig = Figure(figsize=(5.2 * cols + 0.8, grid_rows * (1.0 + 0.32 * rows)), layout="constrained")
    axes = [fig.add_subplot(grid_rows, cols, i + 1) for i in range(len(methods))]
    top = float(profile["mismatch_share"].max() or 1.0)  # type: ignore[arg-type]
    image = None
    for ax, method in zip(axes, methods, strict=False):
        part = profile.filter(pl.col("method") == method).with_columns(
            pl.format("{} / {}", pl.col("llm").map_elements(_short, return_dtype=pl.Utf8),
                      pl.col("slm").map_elements(_short, return_dtype=pl.Utf8)).alias("pair"),
            (pl.col("llm_params") / pl.col("slm_params")).alias("r"),
        )  # fmt: skip
        pivot = part.pivot(on="bin", index=["pair", "r"], values="mismatch_share", sort_columns=True).sort(
            "r"
        )
        bins = [c for c in pivot.columns if c not in ("pair", "r")]
        values = pivot.select(bins).fill_null(0).to_numpy()
        image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=top)
        ax.set_yticks(range(pivot.height), pivot["pair"].to_list(), fontsize=9)
        ax.set_xticks(range(len(bins)), [f"{10 * int(c)}%" for c in bins], fontsize=8)
        ax.set_xlabel("relative position (decile start)", fontsize=9)
        ax.set_title(method, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.9, label="share of the pair's mismatches")
    fig.suptitle("Where mismatches fall: share per relative-position decile (uniform = 10%)", fontsize=11)
    return fig


def figure_entropy(hist: pl.DataFrame) -> Figure:
    """System 1 entropy densities of matched vs mismatched tokens, one panel per method."""
    methods = sorted(hist["method"].unique().to_list())
    width = float(hist["hi"][0] - hist["lo"][0])
    edges = width * np.arange(int(hist["bin"].max()) + 2)  # type: ignore[arg-type]
    fig, axes = _grid(len(methods))
    for ax, method in zip(axes, methods, strict=False):
        for flag, name, color in ((False, "matched", "C0"), (True, "mismatched", "C3")):
            part = hist.filter((pl.col("method") == method) & (pl.col("mismatch") == flag))
            density = np.zeros(len(edges) - 1)  # empty bins are absent from the frame
            density[part["bin"].to_numpy()] = part["density"].to_numpy()
            if part.height:
                ax.stairs(density, edges, label=name, color=color)
        ax.set(xlabel="System 1 entropy (nats)", ylabel="density", title=method)
        ax.legend(fontsize=7)
    return fig


def figure_routers(curves: dict[str, pl.DataFrame]) -> Figure:
    """Offline router replay: mismatches caught against consult rate, with the Pareto front and, at a few
    consult rates, each router's threshold τ there."""
    fig, axes = _grid(len(curves))
    for ax, (title, frame) in zip(axes, curves.items(), strict=False):
        colors = {}
        for router in frame["router"].unique(maintain_order=True):
            part = frame.filter(pl.col("router") == router).sort("consult_rate")
            (line,) = ax.plot(part["consult_rate"], part["caught"], router_style(router), label=router)
            colors[router] = to_hex(line.get_color())
        front = pareto_front(frame)
        ax.plot(front["consult_rate"], front["caught"], "k.", markersize=4, label="Pareto front")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, label="random")
        ax.set(
            xlabel="consult rate",
            ylabel="share of mismatches caught",
            title=title,
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        _label_thresholds(fig, ax, frame, colors)
        ax.legend(fontsize=7, loc="lower right")
    return fig


LABELLED_RATES = (0.05, 0.15, 0.3)  # consult rates at which each router curve names its threshold
LABEL_PT = 6.5  # font size of the threshold labels; a line is LABEL_PT + 1.5 points high


def router_style(router: str) -> str:
    """A router's line style: every router gets one, by its place among the replayable routers."""
    names = list(ROUTERS)
    return LINE_STYLES[(names.index(router) if router in names else len(names)) % len(LINE_STYLES)]


def _label_thresholds(fig: Figure, ax: Axes, frame: pl.DataFrame, colors: dict[str, str]) -> None:
    """At each labelled consult rate, mark where every router's curve passes it and name the thresholds in
    one block (a line per router, in its colour) right of the highest mark, moved down past any block it
    would overlap, so no two labels collide. Call after the axes' limits are set."""
    box = ax.get_position()
    width_pt, height_pt = box.width * fig.get_figwidth() * 72, box.height * fig.get_figheight() * 72
    placed: list[tuple[float, float, float, float]] = []  # x0, x1, y0, y1 in axes fraction
    for target in LABELLED_RATES:
        marks = []
        for router, color in colors.items():
            part = frame.filter(pl.col("router") == router)
            if part.height == 0:
                continue
            row = part.row(int(np.argmin(np.abs(part["consult_rate"].to_numpy() - target))), named=True)
            ax.plot([row["consult_rate"]], [row["caught"]], "o", color=color, markersize=3)
            marks.append((row["consult_rate"], row["caught"], f"τ={row['threshold']:.3g}", color))
        if not marks:
            continue
        corner = ax.transLimits.transform((max(m[0] for m in marks), max(m[1] for m in marks)))
        x0 = corner[0] + 4 / width_pt
        x1 = x0 + max(len(m[2]) for m in marks) * LABEL_PT * 0.6 / width_pt
        height = (len(marks) * (LABEL_PT + 1.5) + 2) / height_pt
        top = corner[1] - 2 / height_pt
        while clash := [p for p in placed if x0 < p[1] and p[0] < x1 and top - height < p[3] and p[2] < top]:
            top = min(p[2] for p in clash) - 1 / height_pt
        placed.append((x0, x1, top - height, top))
        for i, (_, _, text, color) in enumerate(marks):
            y = top - i * (LABEL_PT + 1.5) / height_pt
            ax.text(x0, y, text, transform=ax.transAxes, fontsize=LABEL_PT, color=color, va="top")


def figure_acceptance(
    acceptance: pl.DataFrame, runs: pl.DataFrame, served: pl.DataFrame | None = None
) -> Figure:
    """Speculative decoding: acceptance rate by position in the draft, one panel per draft length K (rows)
    and dataset (columns), one colour per pair (each panel's lines: one per pair); requests imported from
    serving engines in a panel of their own."""
    labelled = acceptance.join(runs.select("run_id", "llm", "slm", "dataset", "draft_k"), on="run_id")
    datasets = sorted(labelled["dataset"].unique().to_list())
    ks = sorted(labelled["draft_k"].unique().to_list())
    pairs = labelled.select("llm", "slm").unique().sort("llm", "slm").rows()
    colors = dict(zip(pairs, distinct_colors(len(pairs)), strict=True))
    served = served if served is not None else pl.DataFrame()
    cells = [(k, d) for k in ks for d in datasets]
    cols = max(1, len(datasets))
    rows = len(ks) + (served.height > 0)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows + 0.5), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(cells))]
    for ax, (k, dataset) in zip(axes, cells, strict=False):
        part = labelled.filter((pl.col("dataset") == dataset) & (pl.col("draft_k") == k))
        for _, line in part.sort("llm", "slm", "run_id").group_by(["run_id"], maintain_order=True):
            r = line.row(0, named=True)
            line = line.sort("position")
            ax.plot(line["position"], line["acceptance_rate"], marker="o", markersize=3,
                    color=colors[(r["llm"], r["slm"])])  # fmt: skip
        ax.set_xticks(range(int(k)))
        ax.set(xlabel="position in draft", ylabel="P(accepted | reached)", ylim=(0, 1.02),
               title=f"{dataset} · K = {k}")  # fmt: skip
    handles = [Line2D([], [], color=c, marker="o", markersize=3, label=f"{_short(p[0])} / {_short(p[1])}")
               for p, c in colors.items()]  # fmt: skip
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6), fontsize=8)
    if served.height:
        ax = fig.add_subplot(rows, cols, (rows - 1) * cols + 1)
        for (engine, model, draft, k), part in served.partition_by(list(SERVED_KEYS), as_dict=True).items():
            label = f"imported {engine}: {model}/{draft}, K={k}"
            ax.plot(part["position"], part["acceptance_rate"], marker="s", linestyle="--", label=label)
        ax.set_xticks(sorted(set(served["position"].to_list())))
        ax.set(xlabel="position in draft", ylabel="P(accepted | reached)", ylim=(0, 1.02),
               title="imported from serving engines")  # fmt: skip
        ax.legend(fontsize=7)
    return fig


def distinct_colors(n: int) -> list[str]:
    """`n` colours, no two alike: tab10 while it suffices, then tab20, then evenly spaced hues."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return [to_hex(c) for c in colormaps["tab20"].colors[:n]]  # type: ignore[attr-defined]
    return [to_hex(colormaps["hsv"](i / n)) for i in range(n)]


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
        try:
            loo: float | None = leave_one_out_error(grp["param_ratio"], grp["cof"]).rmse
        except TooFewPoints:
            loo = None
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
    parser = argparse.ArgumentParser(
        prog="python -m analytics.report",
        description="Write the paper's figures (PNG/SVG) and report.md from an fsgen warehouse.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_warehouse_argument(parser)
    parser.add_argument("--out", type=Path, default=DEFAULTS.out, help="output folder (default: ./report)")
    # The defaults are ReportOptions' own (written once, there).
    parser.add_argument("--formats", nargs="+", default=list(DEFAULTS.formats), choices=["png", "svg", "pdf"])
    parser.add_argument(
        "--bootstrap",
        type=int,
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
        files = write_report(con, str(resolve_warehouse(args.warehouse)), opts)
    finally:
        con.close()
    if not opts.quiet:
        print(f"{len(files)} file(s) in {opts.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
