"""The scaling law CoF = γ·R^(−α) + β in the parameter ratio R = N_LLM / N_SLM, and the law comparison.

`fit_scaling_law` is the paper's form alone; `fit_cof` (from `analytics.law_choice`) fits it beside
a + b·ln R, a + b·ln N_LLM + c·ln N_SLM and a constant, and says which the pairs support. `fit_pairs` and
`fit_groups` return both.

For a fixed α the model is linear in (γ, β), so the fit profiles α: a grid over α solves γ and β in closed
form at every grid point, then a golden-section search refines α inside the best grid cell. That finds the
global least-squares optimum whatever the sign of γ (in the paper's own data CoF rises with R: γ < 0), and
vectorises over bootstrap resamples, so 1,000 resamples cost a few array operations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.law_choice import (
    SPAN_SHARE,
    CofFit,
    CofPrediction,
    LawFit,
    TooFewPairs,
    fit_cof,
    pairs_table,
    subset_fits,
)
from analytics.law_coverage import Coverage, loo_coverage
from analytics.laws import ALPHA_BOUNDS, DropFits, FloatArray, power_fit, quantiles
from analytics.pairs import pair_points
from analytics.source import AnalyticsError, Filters, Source

MIN_RATIOS = 3


class TooFewPoints(AnalyticsError):
    """The fit needs at least three distinct ratios (three parameters)."""


@dataclass(frozen=True)
class Prediction:
    """The fitted CoF at one ratio, with a bootstrap interval (NaN when the fit had no bootstrap);
    `extrapolated` outside the ratios the law was fitted to."""

    ratio: float
    value: float
    lo: float
    hi: float
    extrapolated: bool = False


@dataclass(frozen=True)
class ParamIntervals:
    """Bootstrap percentile intervals of the three parameters."""

    gamma: tuple[float, float]
    alpha: tuple[float, float]
    beta: tuple[float, float]
    resamples: int
    confidence: float


@dataclass(frozen=True)
class ScalingFit:
    """A least-squares fit of CoF = γ·R^(−α) + β."""

    gamma: float
    alpha: float
    beta: float
    r2: float
    sse: float
    n_points: int
    ci: ParamIntervals | None = None
    ratio_range: tuple[float, float] | None = None  # the smallest and largest R fitted
    # Bootstrap parameter draws [B, 3] (γ, α, β), kept for prediction intervals.
    draws: FloatArray | None = field(default=None, repr=False, compare=False)
    # The law comparison on the same pairs (set by `fit_pairs`; None where the sizes were not at hand).
    laws: CofFit | None = field(default=None, repr=False, compare=False)

    def value(self, ratio: npt.ArrayLike) -> FloatArray:
        """The fitted CoF at each ratio."""
        r = np.asarray(ratio, dtype=float)
        return np.asarray(self.gamma * r ** (-self.alpha) + self.beta, dtype=float)

    def predict(self, ratio: float, confidence: float | None = None) -> Prediction:
        """The fitted CoF at an (unseen) ratio with a bootstrap percentile interval."""
        value = float(self.value(ratio))
        rng = self.ratio_range
        out = rng is not None and not (rng[0] * (1 - 1e-9) <= ratio <= rng[1] * (1 + 1e-9))
        if self.draws is None or len(self.draws) == 0:
            return Prediction(float(ratio), value, float("nan"), float("nan"), out)
        conf = confidence if confidence is not None else (self.ci.confidence if self.ci else 0.95)
        g, a, b = self.draws.T
        curve = g * float(ratio) ** (-a) + b
        lo, hi = quantiles(curve, [0.5 - conf / 2, 0.5 + conf / 2])
        return Prediction(float(ratio), value, float(lo), float(hi), out)


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-point-out prediction errors of the scaling fit: per point its ratio, CoF, prediction by the
    fit without it and the error (NaN where it cannot be left out), as arrays (`frame`: as a table)."""

    columns: Mapping[str, FloatArray]
    rmse: float
    mae: float

    @property
    def frame(self) -> pl.DataFrame:
        """ratio, cof, predicted and error, one row per point."""
        return pl.DataFrame(dict(self.columns))


def _validated(ratio: npt.ArrayLike, cof: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r = np.asarray(ratio, dtype=float).ravel()
    y = np.asarray(cof, dtype=float).ravel()
    if r.shape != y.shape:
        raise ValueError(f"ratio and cof differ in length: {r.size} vs {y.size}")
    keep = np.isfinite(r) & np.isfinite(y)
    r, y = r[keep], y[keep]
    if np.any(r <= 0):
        raise AnalyticsError("parameter ratios must be positive")
    if np.unique(r).size < MIN_RATIOS:
        raise TooFewPoints(
            f"the scaling law has three parameters and needs at least {MIN_RATIOS} distinct ratios; "
            f"got {np.unique(r).size} ({r.size} points)"
        )
    return r, y


def _fit_weights(log_r: FloatArray, bootstrap: int, seed: int) -> FloatArray:
    """The fit and each bootstrap resample as weight rows of one batch [1 + B', n]: the fit (all 1) first,
    then how often each resample draws each point (resamples with under three distinct ratios dropped)."""
    n = log_r.size
    idx = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
    flat = (np.arange(bootstrap)[:, None] * n + idx).ravel()  # each draw's cell of [B, n]
    counts = np.bincount(flat, minlength=bootstrap * n).reshape(bootstrap, n).astype(float)
    drawn = np.sort(np.where(counts > 0, log_r[None, :], np.nan), axis=1)
    distinct = 1 + (np.diff(drawn, axis=1) > 0).sum(axis=1)  # NaN (not drawn) never differs
    return np.concatenate([np.ones((1, n)), counts[distinct >= MIN_RATIOS]])


def _intervals(draws: FloatArray, confidence: float, resamples: int) -> ParamIntervals:
    q = quantiles(draws, [0.5 - confidence / 2, 0.5 + confidence / 2])  # [2, 3]
    g, a, b = ((float(q[0, i]), float(q[1, i])) for i in range(3))
    return ParamIntervals(g, a, b, resamples, confidence)


def fit_scaling_law(
    ratio: npt.ArrayLike,
    cof: npt.ArrayLike,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    alpha_bounds: tuple[float, float] = ALPHA_BOUNDS,
) -> ScalingFit:
    """Least-squares fit of CoF = γ·R^(−α) + β (γ's sign free), with bootstrap intervals when asked."""
    r, y = _validated(ratio, cof)
    log_r = np.log(r)
    weights = _fit_weights(log_r, bootstrap, seed)
    fits = power_fit(log_r, np.broadcast_to(y, weights.shape), weights, alpha_bounds)
    return _scaling_fit(r, y, fits, bootstrap, confidence)


def _scaling_fit(
    r: FloatArray, y: FloatArray, fits: FloatArray, bootstrap: int, confidence: float
) -> ScalingFit:
    """The fit from a batch's rows [1 + B', 4] of `_fit_weights`: the fit, then the bootstrap draws."""
    gamma, alpha, beta, sse = fits[0]
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    draws, ci = None, None
    if bootstrap > 0:
        draws = fits[1:, :3]
        ci = _intervals(draws, confidence, bootstrap) if len(draws) else None
    return ScalingFit(
        float(gamma), float(alpha), float(beta), float(r2), float(sse), int(y.size), ci,
        (float(r.min()), float(r.max())), draws,
    )  # fmt: skip


def leave_one_out_error(
    ratio: npt.ArrayLike, cof: npt.ArrayLike, *, alpha_bounds: tuple[float, float] = ALPHA_BOUNDS
) -> LeaveOneOut:
    """Fit without each point in turn and predict it: the error on an unseen pair (the n fits in one batch,
    the point left out weighing 0)."""
    r, y = _validated(ratio, cof)
    x = np.stack([np.log(r), np.zeros_like(r)], axis=1)  # (ln R, ln 1): the law reads R alone
    return _leave_one_out(r, y, DropFits(x, y, 1, alpha_bounds, ["power_ratio"]))


def _leave_one_out(r: FloatArray, y: FloatArray, fits: DropFits) -> LeaveOneOut:
    """Each point predicted by the paper's law fitted without it, read from a batch holding those fits."""
    preds = np.full(y.size, np.nan)
    for i in range(y.size):
        if np.unique(np.delete(r, i)).size >= MIN_RATIOS:
            g, a, b = fits.fit("power_ratio", (i,))[0]
            preds[i] = g * r[i] ** (-a) + b
    err = preds - y
    ok = np.isfinite(err)
    if not ok.any():
        raise TooFewPoints("no point can be left out and still leave three distinct ratios")
    columns = {"ratio": r, "cof": y, "predicted": preds, "error": err}
    return LeaveOneOut(columns, float(np.sqrt(np.mean(err[ok] ** 2))), float(np.mean(np.abs(err[ok]))))


def one_setup(points: pl.DataFrame) -> pl.DataFrame:
    """The pairs with a CoF, refusing pairs of several setups (runs that differ beyond the pair never share
    a fit)."""
    if points["cof"].null_count():  # (a frame operation costs a third of a millisecond; the count is kept)
        points = points.drop_nulls("cof")
    if points["setup"].n_unique() > 1:
        raise TooFewPoints(
            f"the pairs come from {points['setup'].n_unique()} setups (settings beyond the pair differ); "
            "name one experiment, or filter by the setting that differs (setup= at /v1/scaling/predict)"
        )
    return points


def fit_pairs(
    source: Source,
    *,
    method: str,
    dataset: str,
    router: str | None = "always",
    bootstrap: int = 0,
    seed: int = 0,
    filters: Filters | None = None,
) -> ScalingFit:
    """The paper's law fitted to one method and dataset (raises TooFewPoints), with `.laws` compared."""
    points = one_setup(pair_points(source, method=method, dataset=dataset, router=router, filters=filters))
    fit = fit_scaling_law(points["param_ratio"], points["cof"], bootstrap=bootstrap, seed=seed)
    laws = fit_cof(
        points["llm_params"], points["slm_params"], points["cof"], bootstrap=bootstrap, seed=seed, nested=True
    )
    return replace(fit, laws=laws)


@dataclass(frozen=True)
class GroupFit:
    """The fits of one (method, dataset): the paper's law (or why there is none) and the law comparison.

    `note` is "ok" only where the paper's law is fitted and identified; otherwise it says why not.
    """

    method: str
    dataset: str
    pairs: int
    fit: ScalingFit | None
    note: str
    laws: CofFit | None = None
    laws_note: str = ""
    setup: str | None = None  # the settings beyond the pair the runs share (run identity without the pair)
    # The paper's law's leave-one-pair-out errors (None: no fit, or no pair can be left out).
    loo: LeaveOneOut | None = field(default=None, repr=False, compare=False)

    def of(self, points: pl.DataFrame) -> pl.DataFrame:
        """The rows of a `pair_points` frame (or one with its columns) that this fit is of."""
        keep = (pl.col("method") == self.method) & (pl.col("dataset") == self.dataset)
        if "setup" in points.columns:
            keep = keep & pl.col("setup").eq_missing(self.setup)
        return points.filter(keep)


def power_note(fit: ScalingFit | None, laws: CofFit | None) -> str:
    """The note on the paper's law: "ok", or why it is no finding here (unidentified: read as its limit)."""
    if fit is None:
        return "no fit"
    power = None if laws is None else laws.candidate("power_ratio")
    if power is None:
        why = "" if laws is None else dict(laws.skipped).get("power_ratio", "")
        return f"not checked out of sample: {why}" if why else "ok"
    if not power.identified:
        return f"unidentified, read as {power.limit_form}: {power.reason}"
    if fit.ci is not None:
        lo, hi = fit.ci.alpha
        if np.log(hi / lo) >= SPAN_SHARE * np.log(ALPHA_BOUNDS[1] / ALPHA_BOUNDS[0]):
            span = f"alpha's pairs-bootstrap interval [{lo:.3g}, {hi:.3g}] spans the search range"
            return f"unidentified, read as log_ratio: {span}"
    return "ok"


def _fit_group(
    key: tuple[str, str, str | None], cols: Mapping[str, npt.NDArray[Any]], bootstrap: int, seed: int
) -> GroupFit:
    """Both fits of one group (its pairs' columns) from one batch (the law comparison's subsets, the paper's
    law, its pairs bootstrap and leave-one-out); too few pairs for either becomes a note."""
    method, dataset, setup = key
    sizes = (cols["llm_params"], cols["slm_params"])
    x, cof = pairs_table(*sizes, cols["cof"])
    r = cols["param_ratio"].astype(float)
    power = r.size == cof.size and np.unique(r).size >= MIN_RATIOS
    weights = _fit_weights(np.log(r), bootstrap, seed) if power else None
    batch = subset_fits(x, cof, nested=True, extra=weights)
    laws, laws_note = None, ""
    try:
        laws = fit_cof(*sizes, cof, bootstrap=bootstrap, seed=seed, nested=True, batch=batch)
        laws_note = "; ".join(f"{form} skipped: {why}" for form, why in laws.skipped)
    except TooFewPairs as exc:
        laws_note = str(exc)
    height = len(cols["cof"])
    if not power:
        note = f"too few pairs to fit ({np.unique(r).size} distinct ratio(s), need {MIN_RATIOS})"
        return GroupFit(method, dataset, height, None, note, laws, laws_note, setup)
    fit = _scaling_fit(r, cof, batch.extra_fits(), bootstrap, 0.95)
    try:
        loo: LeaveOneOut | None = _leave_one_out(r, cof, batch)
    except TooFewPoints:
        loo = None
    return GroupFit(method, dataset, height, fit, power_note(fit, laws), laws, laws_note, setup, loo)


FIT_COLUMNS = ("llm_params", "slm_params", "param_ratio", "cof")


def fit_groups(points: pl.DataFrame, *, bootstrap: int = 0, seed: int = 0) -> tuple[GroupFit, ...]:
    """Fit every (method, dataset, setup) in a `pair_points` frame: runs that differ in a setting beyond the
    pair never share a fit; too few pairs becomes a note, not an error. (The groups are split in NumPy:
    a few dozen pairs, where each polars operation costs more than the split.)"""
    setup = points["setup"].to_list() if "setup" in points.columns else [None] * points.height
    cof = points["cof"].to_list()
    groups: dict[tuple[str, str, str | None], list[int]] = {}
    for i, key in enumerate(zip(points["method"].to_list(), points["dataset"].to_list(), setup, strict=True)):
        if cof[i] is not None:  # pairs without a CoF join no fit
            groups.setdefault((str(key[0]), str(key[1]), key[2]), []).append(i)
    arrays = {c: points[c].to_numpy() for c in FIT_COLUMNS}
    out = [
        _fit_group(key, {c: arrays[c][rows] for c in FIT_COLUMNS}, bootstrap, seed)
        for key, rows in groups.items()
    ]
    return tuple(sorted(out, key=lambda g: (g.method, g.dataset, g.setup or "")))


def _law_columns(fits: Sequence[GroupFit]) -> dict[str, list[object]]:
    """The law comparison's columns: chosen law, its formula and LOO error, and the runner-up's."""

    def pick(g: GroupFit, which: str) -> LawFit | None:
        if g.laws is None:
            return None
        return g.laws.chosen if which == "law" else g.laws.runner_up

    cols: dict[str, list[object]] = {}
    for which in ("law", "runner_up"):
        chosen = [pick(g, which) for g in fits]
        cols[which] = [None if c is None else c.form for c in chosen]
        cols[f"{which}_fit"] = [None if c is None else c.describe() for c in chosen]
        cols[f"{which}_loo_rmse"] = [None if c is None else c.loo_rmse for c in chosen]
        if which == "law":  # the chosen law's own error: the choice re-run without each pair
            cols["law_nested_loo_rmse"] = [None if g.laws is None else g.laws.nested_loo_rmse for g in fits]
        cols[f"{which}_aicc"] = [None if c is None else c.aicc for c in chosen]
    power = [None if g.laws is None else g.laws.candidate("power_ratio") for g in fits]
    cols["power_identified"] = [None if p is None else p.identified for p in power]
    cols["power_loo_rmse"] = [None if p is None else p.loo_rmse for p in power]
    cols["laws_note"] = [g.laws_note for g in fits]
    return cols


def fits_frame(fits: Sequence[GroupFit]) -> pl.DataFrame:
    """One row per (method, dataset): γ, α, β, R², intervals, and the chosen law with its runner-up."""

    def num(g: GroupFit, attr: str) -> float | None:
        return None if g.fit is None else float(getattr(g.fit, attr))

    def bound(g: GroupFit, attr: str, i: int) -> float | None:
        return None if g.fit is None or g.fit.ci is None else float(getattr(g.fit.ci, attr)[i])

    rows = {
        "method": [g.method for g in fits],
        "dataset": [g.dataset for g in fits],
        "setup": [g.setup for g in fits],
        "pairs": [g.pairs for g in fits],
        **{k: [num(g, k) for g in fits] for k in ("gamma", "alpha", "beta", "r2")},
        **{
            f"{k}_{s}": [bound(g, k, i) for g in fits]
            for k in ("gamma", "alpha", "beta")
            for i, s in ((0, "lo"), (1, "hi"))
        },
        "note": [g.note for g in fits],
        **_law_columns(fits),
    }
    text = ("method", "dataset", "setup", "note", "law", "law_fit", "runner_up", "runner_up_fit", "laws_note")
    schema = {k: (pl.Utf8 if k in text else pl.Float64) for k in rows} | {
        "pairs": pl.Int64,
        "power_identified": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema)


@dataclass(frozen=True)
class LawPrediction:
    """CoF of an (unseen) pair from one law, saying which law, whether it is identified and whether the pair
    lies outside the measured sizes or ratios."""

    law: str  # the form used: the chosen law's, or power_ratio for law="paper"
    formula: str
    identified: bool
    note: str  # why the law may not be read as a finding ("ok" when it may)
    value: float
    lo: float
    hi: float
    confidence: float
    extrapolated: bool
    measured: str  # the measured range of N_LLM, N_SLM and R
    nested_loo_rmse: float | None  # the chosen law's error on an unseen pair (choice re-run)


LAW_CHOICES = ("chosen", "paper")


def _check_prediction(
    ratio: float, sizes: tuple[float, float] | None, law: str, bootstrap: int, confidence: float
) -> None:
    """AnalyticsError naming the first argument of a prediction that cannot be asked (NaN included)."""
    if not 0 < ratio < math.inf:
        raise AnalyticsError(f"ratio must be a positive number (N_LLM / N_SLM), got {ratio}")
    if sizes is not None and not all(0 < s < math.inf for s in sizes):
        raise AnalyticsError(f"llm_params and slm_params must be positive counts, got {sizes}")
    if law not in LAW_CHOICES:
        raise AnalyticsError(f"unknown law {law!r}; choose from: {', '.join(LAW_CHOICES)}")
    if bootstrap < 0:
        raise AnalyticsError(f"bootstrap must be 0 or more resamples, got {bootstrap}")
    if not 0 < confidence < 1:
        raise AnalyticsError(f"confidence must lie in (0, 1), got {confidence}")


def predict_cof(
    source: Source,
    *,
    method: str,
    dataset: str,
    router: str | None = "always",
    ratio: float,
    sizes: tuple[float, float] | None = None,
    law: str = "chosen",
    bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
    filters: Filters | None = None,
) -> LawPrediction:
    """CoF at a ratio (or at two sizes) from the law the pairs support, or from the paper's law when asked;
    an unidentified law is named as such, never quoted silently. Raises TooFewPoints without enough pairs."""
    _check_prediction(ratio, sizes, law, bootstrap, confidence)
    points = one_setup(pair_points(source, method=method, dataset=dataset, router=router, filters=filters))
    try:
        laws = fit_cof(
            points["llm_params"], points["slm_params"], points["cof"], bootstrap=bootstrap, seed=seed,
            nested=True, every_interval=False,
        )  # fmt: skip
    except TooFewPairs as exc:
        raise TooFewPoints(str(exc)) from exc
    assert laws.measured is not None
    where = laws.measured.describe()
    if law == "paper":
        fit = fit_scaling_law(points["param_ratio"], points["cof"], bootstrap=bootstrap, seed=seed)
        p = fit.predict(ratio, confidence)
        out = p.extrapolated or (sizes is not None and laws.measured.outside(*sizes))
        note = power_note(fit, laws)
        formula = f"{fit.gamma:.4g}*R^(-{fit.alpha:.3g}) + {fit.beta:.4g}"
        return LawPrediction("power_ratio", formula, note == "ok", note, p.value, p.lo, p.hi, confidence,
                             out, where, laws.nested_loo_rmse)  # fmt: skip
    chosen = laws.chosen
    if sizes is None and chosen.form == "log_sizes":
        raise TooFewPoints(
            f"the law the pairs support for {method} / {dataset} is log_sizes, which needs both sizes: "
            "give llm_params and slm_params instead of ratio (or ask for law=paper)"
        )
    nl, ns = sizes if sizes is not None else (ratio, 1.0)
    value, lo, hi, _ = laws.predict(nl, ns, confidence)
    lo_r, hi_r = laws.measured.ratio
    out = laws.measured.outside(nl, ns) if sizes else not lo_r * (1 - 1e-9) <= ratio <= hi_r * (1 + 1e-9)
    note = "ok" if chosen.identified else f"no candidate law is identified; the least bad: {chosen.reason}"
    return LawPrediction(chosen.form, chosen.describe(), chosen.identified, note, value, lo, hi, confidence,
                         out, where, laws.nested_loo_rmse)  # fmt: skip


__all__ = [
    "CofFit",
    "CofPrediction",
    "Coverage",
    "GroupFit",
    "LawFit",
    "LawPrediction",
    "ScalingFit",
    "TooFewPairs",
    "TooFewPoints",
    "fit_cof",
    "fit_groups",
    "fit_pairs",
    "fit_scaling_law",
    "fits_frame",
    "loo_coverage",
    "pair_points",
    "predict_cof",
]
