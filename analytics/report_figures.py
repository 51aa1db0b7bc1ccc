"""The report's figures besides `cof_vs_ratio` (`analytics.cof_figure`): where mismatches fall, System 1's
entropy, router replay and speculative acceptance, each a matplotlib `Figure` from analytics frames."""

from __future__ import annotations

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analytics.routers import ROUTERS, pareto_front
from analytics.served import KEYS as SERVED_KEYS

LINE_STYLES = ("-", "--", ":", "-.")  # a router's line style: by its place among the routers, cycled


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
