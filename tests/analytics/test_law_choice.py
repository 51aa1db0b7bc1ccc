"""The law comparison: each law recovered and chosen, honest intervals, unidentified fits flagged."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from analytics.scaling import TooFewPairs, fit_cof, loo_coverage

FloatArray = npt.NDArray[np.float64]
# Qwen1.5-like sizes (the paper's family): 0.5B ... 72B, every pair with N_LLM > N_SLM (21 pairs).
SIZES = np.array([0.5e9, 1.8e9, 4e9, 7e9, 14e9, 32e9, 72e9])
PAIRS = np.array([(hi, lo) for i, hi in enumerate(SIZES) for lo in SIZES[:i]])
NL, NS = PAIRS[:, 0], PAIRS[:, 1]
# log_sizes through the paper's own numbers: 32B/14B (R = 2.3) CoF 0.066 and 1.8B/0.5B (R = 3.6) 0.101.
B = 0.02
C = (0.066 - 0.101 - B * np.log(32 / 1.8)) / np.log(14 / 0.5)
A = 0.101 - B * np.log(1.8e9) - C * np.log(0.5e9)
LAWS = {
    "power_ratio": ((-0.15, 0.6, 0.2), lambda nl, ns, p: p[0] * (nl / ns) ** -p[1] + p[2]),
    "log_ratio": ((0.05, 0.02), lambda nl, ns, p: p[0] + p[1] * np.log(nl / ns)),
    "log_sizes": ((A, B, C), lambda nl, ns, p: p[0] + p[1] * np.log(nl) + p[2] * np.log(ns)),
    "constant": ((0.12,), lambda nl, ns, p: np.full(np.shape(nl), p[0])),
}


def truth(form: str, nl: FloatArray, ns: FloatArray) -> FloatArray:
    params, law = LAWS[form]
    return np.asarray(law(nl, ns, params), dtype=float)


def test_the_paper_pairs_lie_on_the_size_law() -> None:
    got = truth("log_sizes", np.array([32e9, 1.8e9]), np.array([14e9, 0.5e9]))
    assert got == pytest.approx([0.066, 0.101], abs=1e-12) and -0.03 < C < -0.02


@pytest.mark.parametrize("form", list(LAWS))
def test_each_law_is_recovered_from_noiseless_data(form: str) -> None:
    fit = fit_cof(NL, NS, truth(form, NL, NS), nested=True)
    assert fit.form == form and fit.chosen.identified
    assert fit.chosen.params == pytest.approx(LAWS[form][0], rel=1e-6, abs=1e-9)
    assert fit.chosen.loo_rmse < 1e-9
    value, lo, hi, extrapolated = fit.predict(100e9, 3e9)  # no bootstrap: no interval
    assert value == pytest.approx(float(truth(form, np.array(100e9), np.array(3e9))), abs=1e-9)
    assert np.isnan(lo) and np.isnan(hi) and extrapolated  # 100B lies past the largest LLM measured
    assert fit.nested_loo_rmse is not None and fit.nested_loo_rmse < 1e-6  # noiseless: chosen again
    assert {c.form for c in fit.candidates} == set(LAWS) and not fit.skipped


def _noisy_tables(form: str, count: int, rng: np.random.Generator) -> list[tuple[FloatArray, ...]]:
    tables = []
    for _ in range(count):
        n = int(rng.integers(12, 21))
        pick = rng.permutation(len(PAIRS))
        y = truth(form, NL, NS) + rng.normal(0, 0.01, len(PAIRS))
        tables.append((pick[:n], pick[n:], y))
    return tables


@pytest.mark.parametrize("form", list(LAWS))
def test_the_chooser_finds_the_generating_law_on_noisy_tables(form: str) -> None:
    # 12-20 pairs, noise sd 0.01: 9-12 of 12 here; bench/scaling_laws_bench.py: 85-94% over 200 per law.
    rng = np.random.default_rng(7)
    tables = _noisy_tables(form, 12, rng)
    hits = sum(fit_cof(NL[i], NS[i], y[i]).form == form for i, _, y in tables)
    assert hits >= 8, f"{form} chosen {hits}/12 times"


@pytest.mark.parametrize("form", list(LAWS))
def test_a_prediction_bootstraps_the_chosen_law_as_the_full_fit_does(form: str) -> None:
    # Without every_interval only the power law and the chosen law are bootstrapped: both must come out as
    # in the full fit (draws, intervals, every number), so its prediction is the same.
    rng = np.random.default_rng(11)
    for pick, _, y in _noisy_tables(form, 3, rng):
        full = fit_cof(NL[pick], NS[pick], y[pick], bootstrap=60, seed=3, nested=True)
        lean = fit_cof(NL[pick], NS[pick], y[pick], bootstrap=60, seed=3, nested=True, every_interval=False)
        assert lean.chosen == full.chosen and lean.chosen.intervals is not None
        assert lean.candidate("power_ratio") == full.candidate("power_ratio")
        assert set(lean.draws) == {"power_ratio", full.form}
        for law in lean.draws:
            assert np.array_equal(lean.draws[law], full.draws[law])
        assert lean.predict(30e9, 2e9, 0.8) == full.predict(30e9, 2e9, 0.8)
        assert [c.form for c in lean.candidates] == [c.form for c in full.candidates]


def test_prediction_intervals_cover_held_out_pairs() -> None:
    rng = np.random.default_rng(11)
    covered = total = 0
    for fit_i, out_i, y in _noisy_tables("log_sizes", 10, rng) + _noisy_tables("power_ratio", 10, rng):
        fit = fit_cof(NL[fit_i], NS[fit_i], y[fit_i], bootstrap=200, seed=int(rng.integers(1000)))
        _, lo, hi = fit.band(NL[out_i], NS[out_i], 0.9)
        assert np.all(lo <= hi)
        covered += int(((lo <= y[out_i]) & (y[out_i] <= hi)).sum())
        total += out_i.size
    assert 0.85 <= covered / total <= 0.95, f"90% intervals covered {covered}/{total}"  # 99/106 here


def test_leave_one_out_coverage_on_one_table() -> None:
    rng = np.random.default_rng(3)
    y = truth("log_ratio", NL, NS) + rng.normal(0, 0.01, len(PAIRS))
    cov = loo_coverage(NL, NS, y, bootstrap=100, confidence=0.9)
    assert cov.total == len(PAIRS) and 0.7 <= cov.rate <= 1.0


def test_a_degenerate_power_law_is_flagged_and_read_as_its_limit() -> None:
    # The case: data that follow a + b·ln R drive alpha to its bound and gamma/beta to ±75.
    y = truth("log_ratio", NL, NS)
    power = fit_cof(NL, NS, y).candidate("power_ratio")
    assert power is not None and not power.identified
    assert "alpha at its lower bound" in power.reason and "near-singular Jacobian" in power.reason
    assert power.limit_form == "log_ratio"


def test_a_bootstrap_spanning_the_search_range_is_flagged() -> None:
    rng = np.random.default_rng(5)
    y = 0.1 + rng.normal(0, 0.01, len(PAIRS))  # no trend: alpha is anything
    fit = fit_cof(NL, NS, y, bootstrap=200)
    power = fit.candidate("power_ratio")
    assert (
        power is not None
        and not power.identified
        and "bootstrap interval [0.001, 5] spans the search range" in power.reason
    )
    assert power.intervals is not None and fit.form != "power_ratio"


def test_collinear_sizes_flag_the_size_law() -> None:
    # N_SLM = N_LLM^0.5 (nearly): ln N_SLM moves with ln N_LLM, so b and c cannot be told apart.
    nl = np.geomspace(1e9, 64e9, 8)
    ns = nl**0.5 * np.array([1.0, 1.00001, 1.0, 0.99999, 1.0, 1.00001, 1.0, 0.99999])
    size_law = fit_cof(nl, ns, 0.1 + 0.01 * np.log(nl / ns)).candidate("log_sizes")
    assert size_law is not None and not size_law.identified and "near-singular design" in size_law.reason


def test_too_few_pairs_skip_laws_with_a_note() -> None:
    fit = fit_cof([4e9, 7e9, 7e9], [0.5e9, 0.5e9, 4e9], [0.1, 0.12, 0.05])
    assert {c.form for c in fit.candidates} == {"constant", "log_ratio"}
    notes = dict(fit.skipped)
    assert "4 distinct ratios" in notes["power_ratio"] and "4 pairs" in notes["log_sizes"]
    with pytest.raises(TooFewPairs, match="1 pair"):
        fit_cof([4e9], [0.5e9], [0.1])
    with pytest.raises(ValueError, match="positive"):
        fit_cof([4e9, 0.0], [0.5e9, 1e9], [0.1, 0.2])


def test_nested_error_reruns_the_choice_without_each_pair_and_flags_extrapolation() -> None:
    rng = np.random.default_rng(3)
    y = truth("log_ratio", NL, NS) + rng.normal(0, 0.02, NL.size)
    fit = fit_cof(NL, NS, y, nested=True)
    errors = []
    for i in range(y.size):
        keep = np.arange(y.size) != i
        inner = fit_cof(NL[keep], NS[keep], y[keep])  # its own choice, without pair i
        errors.append(inner.chosen.value(NL[i : i + 1], NS[i : i + 1])[0] - y[i])
    assert fit.nested_loo_rmse == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=1e-12)
    assert fit.nested_pairs == y.size and fit.nested_loo_rmse >= fit.chosen.loo_rmse
    assert fit.measured is not None
    assert not fit.predict(float(NL[3]), float(NS[3])).extrapolated  # a measured pair
    assert fit.predict(float(NL.max()) * 3, float(NS.min())).extrapolated
    assert "N_LLM" in fit.measured.describe()


def test_intervals_stay_in_the_unit_range_and_are_seeded() -> None:
    y = np.clip(truth("power_ratio", NL, NS) - 0.075, 0, None)  # values near zero
    y = y + np.random.default_rng(2).normal(0, 0.01, y.size)
    fit = fit_cof(NL, NS, y, bootstrap=200, seed=4)
    value, lo, hi = fit.band(NL, NS)
    assert np.all(lo >= 0) and np.all(hi <= 1) and np.all((lo <= value) & (value <= hi))
    again = fit_cof(NL, NS, y, bootstrap=200, seed=4)
    assert again.predict(3e9, 1e9) == fit.predict(3e9, 1e9)
    with pytest.raises(ValueError, match="confidence"):
        fit.predict(3e9, 1e9, confidence=1.5)


def test_the_power_laws_batched_subset_fits_equal_each_subset_fitted_alone() -> None:
    # fit_cof fits the power law to every pair left out (and every two, nested) in one weighted batch.
    rng = np.random.default_rng(12)
    pick = rng.permutation(len(PAIRS))[:9]
    nl, ns = NL[pick], NS[pick]
    y = truth("power_ratio", nl, ns) + rng.normal(0, 0.004, pick.size)
    fit = fit_cof(nl, ns, y, nested=True)
    power = fit.candidate("power_ratio")
    assert power is not None and fit.nested_pairs == pick.size
    errors, inner_errors = [], []
    for i in range(pick.size):
        keep = np.arange(pick.size) != i
        alone = fit_cof(nl[keep], ns[keep], y[keep])  # its own LOO: the pairs left two at a time
        own = alone.candidate("power_ratio")
        assert own is not None
        errors.append(own.value(nl[i : i + 1], ns[i : i + 1])[0] - y[i])
        inner_errors.append(alone.chosen.value(nl[i : i + 1], ns[i : i + 1])[0] - y[i])
    assert power.loo_rmse == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=1e-6)
    assert fit.nested_loo_rmse == pytest.approx(float(np.sqrt(np.mean(np.square(inner_errors)))), rel=1e-6)
