"""The figure `cof_vs_ratio`: CoF against the LLM's size (one line per System 1 model) and against R.

Each (method, dataset) gets two panels side by side: on the left, as in the paper's figure, CoF against
N_LLM with one line per System 1 model; on the right, CoF against R = N_LLM / N_SLM. The chosen law (see
`analytics.law_choice`) is drawn only over the range the pairs cover; on the right with the 90% interval
of the fitted curve (bootstrap over pairs; a new pair's prediction interval is wider, see the report's
coverage column), clipped to [0, 1]. Log axes carry labelled ticks at the sizes and ratios present,
thinned so no labels collide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from analytics.scaling import CofFit, GroupFit

CURVE_POINTS = 60
BAND_CONFIDENCE = 0.9
# Labelled log ticks closer than this many decades (for a panel about 3 inches wide) would collide.
TICK_GAP_DECADES = 0.3


def human_count(n: float) -> str:
    """1234 -> '1.2k', 7.1e9 -> '7.1B' (parameter counts on an axis)."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2g}{unit}" if n / scale < 100 else f"{n / scale:.0f}{unit}"
    return f"{n:.0f}"


def _ratio_label(r: float) -> str:
    return f"{r:.2g}" if r < 100 else f"{r:.0f}"


def thinned(values: Sequence[float], gap_decades: float = TICK_GAP_DECADES) -> list[float]:
    """The values to label on a log axis: smallest first, each at least `gap_decades` from the last kept."""
    kept: list[float] = []
    for v in sorted(set(values)):
        if not kept or np.log10(v) - np.log10(kept[-1]) >= gap_decades:
            kept.append(v)
    return kept


def _log_ticks(ax: Axes, values: Sequence[float], label: object) -> None:
    """Labelled major ticks at a thinned set of the values present, unlabelled minor ticks at the rest."""
    major = thinned(values)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(major))
    ax.xaxis.set_ticklabels([label(v) for v in major])  # type: ignore[operator]
    minor = sorted(set(values) - set(major))
    ax.xaxis.set_minor_locator(FixedLocator(minor) if minor else NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = min(values), max(values)
    pad = max((hi / lo) ** 0.08, 1.15)
    ax.set_xlim(lo / pad, hi * pad)


def _draw_law(
    ax: Axes, laws: CofFit, nl: np.ndarray, ns: np.ndarray, x: np.ndarray, color: str, *, band: bool = True
) -> None:
    """The chosen law along one path of (N_LLM, N_SLM), plotted against x, with its curve's interval."""
    value, lo, hi = laws.band(nl, ns, BAND_CONFIDENCE, noise=False)
    if band and np.all(np.isfinite(lo)):
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
    ax.plot(x, value, color=color, linestyle="--", linewidth=1.2)


def _size_panel(ax: Axes, grp: pl.DataFrame, laws: CofFit | None, colors: dict[str, str]) -> None:
    """CoF against N_LLM, one line per System 1 model, with the law along each model's range."""
    for (slm,), part in grp.sort("llm_params").group_by(["slm"], maintain_order=True):
        color = colors[str(slm)]
        nl = part["llm_params"].to_numpy().astype(float)
        ns = float(part["slm_params"][0])
        _points(ax, part, nl, color)
        if laws is not None and nl.min() < nl.max():
            path = np.geomspace(nl.min(), nl.max(), CURVE_POINTS)
            _draw_law(ax, laws, path, np.full(path.shape, ns), path, color, band=False)
    _log_ticks(ax, grp["llm_params"].cast(pl.Float64).to_list(), human_count)
    ax.set(xlabel="LLM parameters N_LLM", ylabel="CoF")


def _ratio_panel(ax: Axes, grp: pl.DataFrame, laws: CofFit | None, colors: dict[str, str]) -> None:
    """CoF against R; a ratio law is one curve over the pairs' range, the size law one per System 1."""
    for (slm,), part in grp.sort("param_ratio").group_by(["slm"], maintain_order=True):
        _points(ax, part, part["param_ratio"].to_numpy(), colors[str(slm)], line=False)
    if laws is not None and laws.form == "log_sizes":
        for (slm,), part in grp.group_by(["slm"], maintain_order=True):
            r = part["param_ratio"].to_numpy()
            if r.min() < r.max():
                path = np.geomspace(r.min(), r.max(), CURVE_POINTS)
                ns = float(part["slm_params"][0])
                _draw_law(ax, laws, path * ns, np.full(path.shape, ns), path, colors[str(slm)])
    elif laws is not None:
        r = grp["param_ratio"].to_numpy()
        path = np.geomspace(r.min(), r.max(), CURVE_POINTS)
        _draw_law(ax, laws, path, np.ones(path.shape), path, "0.25")
    _log_ticks(ax, grp["param_ratio"].to_list(), _ratio_label)
    ax.set(xlabel="parameter ratio R = N_LLM / N_SLM")


def _points(ax: Axes, part: pl.DataFrame, x: np.ndarray, color: str, *, line: bool = True) -> None:
    """The pairs' pooled CoF with its own 95% interval (ratio estimator over samples) where known."""
    y = part["cof"].to_numpy()
    if {"cof_lo", "cof_hi"} <= set(part.columns) and part["cof_lo"].null_count() == 0:
        err = np.stack([y - part["cof_lo"].to_numpy(), part["cof_hi"].to_numpy() - y]).clip(0)
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor=color, elinewidth=0.8, capsize=2, zorder=2)
    ax.plot(x, y, marker="o", linestyle="-" if line else "none", color=color, linewidth=1, zorder=3)


def _title(g: GroupFit | None) -> str:
    if g is None or g.laws is None:
        return "no law fitted: too few pairs"
    nested = g.laws.nested_loo_rmse
    error = "–" if nested is None else f"{nested:.2g}"
    return f"law {g.laws.form}, nested LOO RMSE {error}"


def _group_name(grp: pl.DataFrame, method: str, dataset: str) -> str:
    """`method · dataset`, with the settings that tell its setup from the others' (a `settings` column)."""
    settings = grp["settings"][0] if "settings" in grp.columns and grp.height else None
    return f"{method} {settings} · {dataset}" if settings else f"{method} · {dataset}"


def figure_cof_vs_ratio(points: pl.DataFrame, fits: Sequence[GroupFit]) -> Figure:
    """Two panels per (method, dataset, setup): CoF by LLM size per System 1 model, and CoF by ratio (a
    `settings` column of `points`, where given, names what tells setups apart in the panels' titles)."""
    groups = points.drop_nulls("cof").sort("method", "dataset")
    if "setup" not in groups.columns:
        groups = groups.with_columns(pl.lit(None, dtype=pl.Utf8).alias("setup"))
    keys = groups.select("method", "dataset", "setup").unique(maintain_order=True).rows()
    by_key = {(g.method, g.dataset, g.setup): g for g in fits}
    slms = groups.sort("slm_params").select("slm", "slm_params").unique(maintain_order=True)
    colors = {str(s): f"C{i % 10}" for i, s in enumerate(slms["slm"].to_list())}
    cols = 2 if len(keys) < 3 else 4
    rows = max(1, -(-2 * len(keys) // cols))
    fig = Figure(figsize=(3.4 * cols, 3.1 * rows + 0.6), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(2 * max(len(keys), 1))]
    for i, (method, dataset, setup) in enumerate(keys):
        g = by_key.get((method, dataset, setup))
        grp = groups.filter((pl.col("method") == method) & (pl.col("dataset") == dataset))
        grp = grp.filter(pl.col("setup").eq_missing(setup))
        laws = None if g is None else g.laws
        size_ax, ratio_ax = axes[2 * i], axes[2 * i + 1]
        _size_panel(size_ax, grp, laws, colors)
        _ratio_panel(ratio_ax, grp, laws, colors)
        name = _group_name(grp, method, dataset)
        size_ax.set_title(f"{name}\nby LLM size", fontsize=9)
        ratio_ax.set_title(f"{name}\n{_title(g)}", fontsize=8)
        for ax in (size_ax, ratio_ax):
            ax.set_ylim(bottom=0)
            ax.tick_params(labelsize=7)
            ax.xaxis.label.set_fontsize(8)
            ax.yaxis.label.set_fontsize(8)
    if not keys:
        axes[0].text(0.5, 0.5, "no pairs", ha="center", va="center", transform=axes[0].transAxes)
    handles: list[Line2D | Patch] = [
        Line2D([], [], color=colors[s], marker="o", label=f"System 1 {s} ({human_count(p)})")
        for s, p in slms.rows()
    ]
    handles += [
        Line2D([], [], color="0.25", linestyle="--", label="chosen law (over the pairs' range)"),
        Patch(color="0.25", alpha=0.15, label=f"{BAND_CONFIDENCE:.0%} interval of the law (right panels)"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), cols), fontsize=8)
    return fig
