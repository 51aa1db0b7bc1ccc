"""`python -m analytics.report` writes its figures and report.md, and refuses bad warehouses clearly."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from analytics.__main__ import main as headline_main
from analytics.cof_figure import human_count, thinned
from analytics.report import figure_cof_vs_ratio, main
from analytics.report_figures import LABELLED_RATES, figure_acceptance, figure_routers
from analytics.scaling import fit_groups
from tests.analytics.conftest import add_speculative_schema, build_sweep
from warehouse.migrate import downgrade


@pytest.fixture
def sweep(empty_warehouse: Path) -> Path:
    with duckdb.connect(str(empty_warehouse)) as con:
        ids = build_sweep(con)
        add_speculative_schema(con)
        for i, accepted in enumerate([5, 2, 0, 3]):
            con.execute("INSERT INTO spec_cycles VALUES (?, 0, ?, 5, ?)", [ids["L/S"], i, accepted])
    return empty_warehouse


def test_report_writes_figures_and_markdown(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["--warehouse", str(sweep), "--out", str(out), "--bootstrap", "50"]) == 0
    names = {p.name for p in out.iterdir()}
    for stem in (
        "cof_vs_ratio",
        "position_heatmap",
        "entropy_distributions",
        "router_pareto",
        "speculative_acceptance",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    text = (out / "report.md").read_text()
    for part in (
        "# fsgen report",
        "Scaling law",
        "loo_rmse",
        "loo_coverage_90",
        "Candidate laws per method and dataset",
        "The paper's CoF",
        "Router replay",
        "Speculative decoding",
        "![cof_vs_ratio](cof_vs_ratio.png)",
        "50 bootstrap resamples",
    ):
        assert part in text
    assert "[7/7] wrote" in capsys.readouterr().err


def test_missing_and_behind_warehouses_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], empty_warehouse: Path
) -> None:
    assert main(["--warehouse", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "o")]) == 2
    assert "no warehouse at" in capsys.readouterr().err
    downgrade(empty_warehouse, "base")
    assert main(["--warehouse", str(empty_warehouse), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "python -m warehouse upgrade --warehouse" in capsys.readouterr().err
    assert headline_main(["--warehouse", str(empty_warehouse)]) == 2


def test_headline_cli_prints_the_table(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert headline_main(["--warehouse", str(sweep)]) == 0
    assert "fsgen headline, experiment default: 6 complete run(s)" in capsys.readouterr().out


def test_an_unknown_experiment_is_named_not_reported_empty(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert headline_main(["--warehouse", str(sweep), "--experiment", "defualt"]) == 2
    assert "no experiment 'defualt' in this warehouse; it has: 'default'" in capsys.readouterr().err
    assert main(["--warehouse", str(sweep), "--out", str(out), "--experiment", "defualt", "--quiet"]) == 2
    assert "no experiment 'defualt'" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["--warehouse", str(sweep), "--out", str(out), "--bootstrap", "-1"])
    assert "--bootstrap: -1 must be at least 0" in capsys.readouterr().err


def test_help_has_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analytics.report", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples:" in done.stdout and "--warehouse" in done.stdout


def test_default_warehouse_comes_from_the_environment(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSGEN_WAREHOUSE", str(sweep))
    out = tmp_path / "env-report"
    assert main(["--out", str(out), "--bootstrap", "0", "--formats", "svg", "--quiet"]) == 0
    assert (out / "cof_vs_ratio.svg").exists() and not (out / "cof_vs_ratio.png").exists()
    assert f"Warehouse `{sweep}`" in (out / "report.md").read_text()


def _figure_points() -> pl.DataFrame:
    """Three System 1 models under three LLMs on a + b·ln N_LLM + c·ln N_SLM, near zero at one end."""
    sizes = [23e3, 71e3, 266e3, 723e3]
    rows = [
        {"llm_params": hi, "slm_params": lo, "llm": f"L{hi:.0f}", "slm": f"S{lo:.0f}"}
        for i, hi in enumerate(sizes)
        for lo in sizes[:i]
    ]
    noise = np.random.default_rng(0).normal(0, 0.01, len(rows))
    frame = pl.DataFrame(rows).with_columns(
        pl.lit("oracle").alias("method"),
        pl.lit("d").alias("dataset"),
        (pl.col("llm_params") / pl.col("slm_params")).alias("param_ratio"),
    )
    cof = 0.9 + 0.05 * np.log(frame["llm_params"]) - 0.11 * np.log(frame["slm_params"]) + noise
    return frame.with_columns(pl.Series("cof", np.asarray(cof)))


def test_cof_vs_ratio_draws_both_views_within_the_data(tmp_path: Path) -> None:
    points = _figure_points()
    fits = fit_groups(points, bootstrap=100)
    fig = figure_cof_vs_ratio(points, fits)
    fig.savefig(tmp_path / "f.png")  # lays out the ticks
    size_ax, ratio_ax = fig.axes[:2]
    assert len(fig.axes) == 2 and size_ax.get_xscale() == ratio_ax.get_xscale() == "log"
    # one data line per System 1 model (with more than one LLM) plus its law curve on the size panel
    data_lines = [ln for ln in size_ax.lines if ln.get_marker() == "o"]
    assert len(data_lines) == 3
    ratios = points["param_ratio"].to_numpy()
    for ax, lo, hi in ((size_ax, 71e3, 723e3), (ratio_ax, ratios.min(), ratios.max())):
        for line in ax.lines:
            x, y = (np.asarray(v, dtype=float) for v in line.get_data())
            assert x.min() >= lo * (1 - 1e-9) and x.max() <= hi * (1 + 1e-9)
            assert np.all(y >= 0)
        for band in ax.collections:
            verts = np.concatenate([p.vertices for p in band.get_paths()])
            assert verts[:, 1].min() >= 0 and verts[:, 0].max() <= hi * (1 + 1e-9)
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        boxes = [t.get_window_extent() for t in labels]
        assert len(labels) >= 2 and all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    ticks = set(ratio_ax.get_xticks()) | set(ratio_ax.xaxis.get_minorticklocs())
    assert ticks == set(ratios.tolist())
    assert "law log_sizes" in ratio_ax.get_title()


def test_thinned_ticks_keep_labels_apart() -> None:
    assert thinned([2.7, 3.1, 3.7, 10.2, 11.6, 31.5]) == [2.7, 10.2, 31.5]
    assert human_count(22976) == "23k" and human_count(7.1e9) == "7.1B" and human_count(722848) == "723k"


def _text_boxes(fig: Figure, ax: Axes) -> list[Bbox]:
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    return [t.get_window_extent() for t in ax.texts]


def test_router_threshold_labels_never_overlap() -> None:
    """Three routers whose curves lie on top of each other and catch everything early (the worst case for
    labels): every threshold is named once per labelled consult rate, and no two labels touch."""
    rates = np.linspace(0, 1, 21)
    curve = pl.DataFrame({"consult_rate": rates, "caught": np.minimum(1.0, rates * 20)})
    frame = pl.concat(
        curve.with_columns(pl.lit(r).alias("router"), pl.Series("threshold", rates * (i + 1)))
        for i, r in enumerate(("max_prob", "margin", "entropy"))
    )
    fig = figure_routers({"run 1": frame})
    ax = fig.axes[0]
    boxes = _text_boxes(fig, ax)
    assert len(boxes) == 3 * len(LABELLED_RATES)
    assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def test_acceptance_panels_per_k_and_dataset_one_colour_per_pair() -> None:
    """Each panel is one (K, dataset); its lines are pairs, each in a colour of its own."""
    pairs = [(f"L{i}", f"S{i}") for i in range(12)]  # more pairs than ten colours
    runs = pl.DataFrame(
        [
            {"run_id": 10 * i + k, "llm": llm, "slm": slm, "dataset": "a", "draft_k": k}
            for i, (llm, slm) in enumerate(pairs)
            for k in (2, 4)
        ]
    )
    acceptance = pl.DataFrame(
        [
            {"run_id": r, "position": p, "acceptance_rate": 0.5}
            for r, k in runs.select("run_id", "draft_k").rows()
            for p in range(k)
        ]
    )
    fig = figure_acceptance(acceptance, runs)
    assert [ax.get_title() for ax in fig.axes] == ["a · K = 2", "a · K = 4"]
    for ax in fig.axes:
        colours = [to_hex(line.get_color()) for line in ax.lines]
        assert len(colours) == len(pairs) == len(set(colours))


def test_router_figure_draws_every_router_it_is_given() -> None:
    """A router no style was written for (one just added to the vocabulary) gets a line style of its own."""
    rows = [("max_prob", 0.2, 0.5), ("max_prob", 0.6, 0.8), ("confident", 0.3, 0.4), ("confident", 0.9, 0.95)]
    frame = pl.DataFrame(rows, schema=["router", "consult_rate", "caught"], orient="row").with_columns(
        pl.col("consult_rate").alias("threshold")
    )
    fig = figure_routers({"run 1": frame})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert {"max_prob", "confident"} <= set(lines)
    assert lines["max_prob"].get_linestyle() != lines["confident"].get_linestyle()
