"""The scaling-law fit: exact recovery from noiseless data (either sign of gamma), intervals, pairs."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.laws import power_fit, quantiles
from analytics.scaling import (
    TooFewPoints,
    fit_cof,
    fit_groups,
    fit_pairs,
    fit_scaling_law,
    fits_frame,
    leave_one_out_error,
    pair_points,
)
from tests.analytics.conftest import build_sweep

RATIOS = np.array([1.5, 2.0, 4.0, 8.0, 16.0, 40.0, 100.0, 250.0, 1000.0])


def _close(got: float, want: float, rel: float = 0.01) -> bool:
    return abs(got - want) <= rel * abs(want)


@pytest.mark.parametrize(
    ("gamma", "alpha", "beta"),
    [(0.3, 0.5, 0.05), (-0.15, 0.3, 0.25), (-0.4, 1.2, 0.3), (0.8, 2.5, 0.02), (-0.05, 0.08, 0.2)],
)
def test_recovers_known_parameters(gamma: float, alpha: float, beta: float) -> None:
    fit = fit_scaling_law(RATIOS, gamma * RATIOS**-alpha + beta)
    assert _close(fit.gamma, gamma) and _close(fit.alpha, alpha) and _close(fit.beta, beta)
    assert fit.r2 == pytest.approx(1.0) and fit.n_points == RATIOS.size


@settings(max_examples=60, deadline=None)
@given(
    gamma=st.floats(0.05, 1.0) | st.floats(-1.0, -0.05),
    alpha=st.floats(0.1, 2.0),
    beta=st.floats(0.0, 0.5),
)
def test_recovery_property(gamma: float, alpha: float, beta: float) -> None:
    fit = fit_scaling_law(RATIOS, gamma * RATIOS**-alpha + beta)
    assert _close(fit.gamma, gamma) and _close(fit.alpha, alpha)
    assert abs(fit.beta - beta) <= 0.01 * max(abs(beta), 0.01)


def test_rising_saturating_cof_gives_negative_gamma() -> None:
    # rising, saturating CoF: the paper's own data
    cof = -0.2 * RATIOS**-0.2 + 0.22
    fit = fit_scaling_law(RATIOS, cof)
    assert fit.gamma < 0 and _close(fit.alpha, 0.2) and fit.sse < 1e-20


def test_bootstrap_intervals_and_prediction() -> None:
    rng = np.random.default_rng(1)
    ratio = np.geomspace(1.5, 800, 30)
    cof = -0.15 * ratio**-0.3 + 0.25 + rng.normal(0, 0.003, ratio.size)
    fit = fit_scaling_law(ratio, cof, bootstrap=400, seed=3)
    assert fit.ci is not None and fit.ci.resamples == 400
    assert fit.ci.gamma[0] < -0.15 < fit.ci.gamma[1]
    assert fit.ci.alpha[0] < 0.3 < fit.ci.alpha[1]
    pred = fit.predict(2000.0)
    assert pred.lo < pred.value < pred.hi and _close(pred.value, -0.15 * 2000**-0.3 + 0.25, 0.05)
    again = fit_scaling_law(ratio, cof, bootstrap=400, seed=3)
    assert again == fit  # seeded
    plain = fit_scaling_law(ratio, cof).predict(10.0)
    assert np.isnan(plain.lo) and np.isfinite(plain.value)


def test_too_few_ratios_is_a_clear_error() -> None:
    with pytest.raises(TooFewPoints, match="at least 3 distinct ratios; got 2"):
        fit_scaling_law([2.0, 2.0, 4.0], [0.1, 0.11, 0.2])
    with pytest.raises(ValueError, match="positive"):
        fit_scaling_law([0.0, 2.0, 4.0], [0.1, 0.11, 0.2])


def test_leave_one_out_on_noiseless_data() -> None:
    cof = 0.3 * RATIOS**-0.5 + 0.05
    loo = leave_one_out_error(RATIOS, cof)
    assert loo.frame.height == RATIOS.size and loo.rmse < 1e-6 and loo.mae <= loo.rmse + 1e-12


def test_fit_pairs_from_the_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    build_sweep(con)
    points = pair_points(con, method="oracle", dataset="gsm8k")
    assert points.height == 5 and points["param_ratio"].to_list() == [4.0, 4.0, 16.0, 16.0, 64.0]
    fit = fit_pairs(con, method="oracle", dataset="gsm8k")
    assert fit.n_points == 5 and np.isfinite(fit.r2)
    assert fit.laws is not None and fit.laws.n_points == 5
    assert {c.form for c in fit.laws.candidates} == {"constant", "log_ratio", "log_sizes"}
    frame = fits_frame(fit_groups(points))
    # 3 distinct ratios: the 3-parameter law interpolates and cannot be checked leaving a pair out
    assert frame["note"][0].startswith("not checked out of sample: needs 4 distinct ratios")
    assert frame["pairs"].to_list() == [5] and frame["law"][0] in ("constant", "log_ratio", "log_sizes")
    assert frame["law_loo_rmse"][0] > 0 and frame["runner_up"][0] != frame["law"][0]
    assert "power_ratio skipped" in frame["laws_note"][0] and frame["power_identified"].to_list() == [None]


def _pair_points(sizes: list[float], cof: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> pl.DataFrame:
    """Every (larger, smaller) pair of `sizes` as oracle points of one dataset, CoF = cof(N_LLM, N_SLM)."""
    pairs = [(hi, lo) for i, hi in enumerate(sizes) for lo in sizes[:i]]
    nl, ns = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    return pl.DataFrame(
        {"method": "oracle", "dataset": "d", "llm_params": nl, "slm_params": ns, "param_ratio": nl / ns,
         "cof": cof(nl, ns)}
    )  # fmt: skip


def test_fit_groups_flags_an_unidentified_power_law() -> None:
    sizes = [0.5e9, 1.8e9, 4e9, 7e9, 14e9]
    points = _pair_points(sizes, lambda nl, ns: 0.13 + 0.075 * np.log(nl / ns))
    (group,) = fit_groups(points, bootstrap=100)
    assert group.fit is not None and group.note.startswith(
        "unidentified, read as log_ratio: alpha at its lower"
    )
    assert group.laws is not None and group.laws.form == "log_ratio"
    frame = fits_frame([group])
    assert frame["power_identified"].to_list() == [False] and frame["law_fit"][0] == "0.13 + 0.075*ln(R)"


def test_fit_groups_notes_too_few_pairs(con: duckdb.DuckDBPyConnection) -> None:
    build_sweep(con)
    few = pair_points(con).head(2)
    fits = fit_groups(few)
    assert fits[0].fit is None and "too few pairs" in fits[0].note
    frame = fits_frame(fits)
    assert frame["gamma"].to_list() == [None] and frame["law"].to_list() == ["constant"]
    assert "log_ratio skipped: needs 3 distinct ratios" in frame["laws_note"][0]


def test_a_pairs_bootstrap_spanning_alpha_marks_the_paper_law_unidentified() -> None:
    rng = np.random.default_rng(4)
    sizes = [0.5e9, 1.8e9, 4e9, 7e9, 14e9, 32e9]
    points = _pair_points(sizes, lambda nl, ns: 0.1 + rng.normal(0, 0.02, nl.size))  # no trend at all
    (group,) = fit_groups(points, bootstrap=200)
    assert group.fit is not None and group.fit.ci is not None
    assert group.note.startswith("unidentified"), group.note
    assert "spans the search range" in group.note


def _resamples(n: int, count: int, seed: int) -> list[np.ndarray]:
    """The bootstrap's draws for a seed, rebuilt here: resamples with at least 3 distinct points."""
    idx = np.random.default_rng(seed).integers(0, n, size=(count, n))
    return [row for row in idx if np.unique(row).size >= 3]


def test_the_batched_bootstrap_equals_each_resample_fitted_alone() -> None:
    # One weighted batch (counts as weights) against every resample fitted on its own, duplicates as points.
    rng = np.random.default_rng(8)
    ratio = np.array([1.5, 3.0, 6.0, 12.0, 30.0, 80.0, 200.0])
    cof = -0.12 * ratio**-0.4 + 0.2 + rng.normal(0, 0.004, ratio.size)
    fit = fit_scaling_law(ratio, cof, bootstrap=60, seed=5)
    rows = _resamples(ratio.size, 60, 5)
    assert fit.draws is not None and len(fit.draws) == len(rows) > 40
    for draw, row in zip(fit.draws, rows, strict=True):
        alone = fit_scaling_law(ratio[row], cof[row])
        assert draw == pytest.approx([alone.gamma, alone.alpha, alone.beta], rel=1e-5, abs=1e-9)
        gamma, alpha, beta = draw
        sse = float(np.sum((cof[row] - gamma * ratio[row] ** -alpha - beta) ** 2))
        assert sse == pytest.approx(alone.sse, rel=1e-6, abs=1e-15)
    assert fit.ci is not None and fit.ci.alpha == pytest.approx(
        tuple(np.quantile(fit.draws[:, 1], [0.025, 0.975])), rel=1e-12
    )


def test_unit_weights_fit_as_weights_of_one() -> None:
    # Without weights (a residual bootstrap's rows) the grid's sums of w are made once for every row; each
    # row's fit must equal, bit for bit, the one weighted by 1s (the grid summed row by row).
    rng = np.random.default_rng(13)
    for n in (3, 7, 25):
        log_r = np.log(np.geomspace(1.5, 900, n))
        y = 0.2 * np.exp(-0.4 * log_r) + 0.05 + rng.normal(0, 0.01, (40, n))
        y[0] = 0.1  # flat: every grid point ties
        y[1] = 0.3 - 0.02 * log_r  # the log law: α at its lower bound
        assert np.array_equal(power_fit(log_r, y), power_fit(log_r, y, np.ones_like(y)), equal_nan=True)


def test_quantiles_equal_numpys_number_for_number() -> None:
    # The intervals' quantiles against np.quantile(axis=0): draws of 1-250 rows, 1-D and 2-D, ties, NaN and
    # ±inf, the interval ends and the extremes.
    rng = np.random.default_rng(14)
    with np.errstate(invalid="ignore"):
        for trial in range(200):
            shape = (int(rng.integers(1, 250)), *((int(rng.integers(1, 4)),) if trial % 2 else ()))
            a = rng.normal(0, 1, shape) * 10.0 ** rng.uniform(-12, 12)
            a = np.round(a, 1) if trial % 5 == 0 else a
            for bad in (np.nan, np.inf, -np.inf)[: trial % 4]:
                a.flat[rng.integers(0, a.size)] = bad
            c = rng.uniform(0.01, 0.999)
            for qs in ([0.5 - c / 2, 0.5 + c / 2], [0.025, 0.975], [0.0, 1.0], list(rng.uniform(0, 1, 3))):
                want = np.quantile(a, qs, axis=0)
                assert np.array_equal(quantiles(a, qs), want, equal_nan=True), (shape, qs)


def test_batched_leave_one_out_equals_each_subset_fitted_alone() -> None:
    rng = np.random.default_rng(9)
    ratio = np.geomspace(1.5, 400, 9)
    cof = 0.2 * ratio**-0.6 + 0.05 + rng.normal(0, 0.003, ratio.size)
    loo = leave_one_out_error(ratio, cof)
    for i, got in enumerate(loo.frame["predicted"]):
        keep = np.arange(ratio.size) != i
        want = float(fit_scaling_law(ratio[keep], cof[keep]).value(ratio[i]))
        assert got == pytest.approx(want, rel=1e-7)


def test_a_groups_one_batch_equals_the_fits_made_alone() -> None:
    # fit_groups fits the law comparison, the paper's law, its pairs bootstrap and leave-one-out together.
    rng = np.random.default_rng(10)
    sizes = [0.5e9, 1.8e9, 4e9, 7e9, 14e9]
    points = _pair_points(
        sizes, lambda nl, ns: -0.1 * (nl / ns) ** -0.5 + 0.2 + rng.normal(0, 0.003, nl.size)
    )
    nl, ns, cof = (points[c].to_numpy() for c in ("llm_params", "slm_params", "cof"))
    (group,) = fit_groups(points, bootstrap=50, seed=2)
    alone = fit_scaling_law(nl / ns, cof, bootstrap=50, seed=2)
    assert group.fit is not None and group.fit.draws is not None and alone.draws is not None
    assert [group.fit.gamma, group.fit.alpha, group.fit.beta] == pytest.approx(
        [alone.gamma, alone.alpha, alone.beta], rel=1e-6
    )
    assert group.fit.draws == pytest.approx(alone.draws, rel=1e-5, abs=1e-9)
    loo = leave_one_out_error(nl / ns, cof)
    assert group.loo is not None and group.loo.frame["predicted"].to_list() == pytest.approx(
        loo.frame["predicted"].to_list(), rel=1e-7
    )
    laws = fit_cof(nl, ns, cof, bootstrap=50, seed=2, nested=True)
    assert group.laws is not None and group.laws.nested_loo_rmse == pytest.approx(laws.nested_loo_rmse)
