"""Which law do the pairs support? Fit every candidate, compare by leave-one-pair-out error, flag the rest.

Choice: the lowest leave-one-pair-out RMSE among identified candidates; candidates within 5% of it are a
tie, settled by AICc (the small-sample Akaike criterion), then by fewer parameters. Identifiability: a
parameter at a bound, a near-singular column-scaled Jacobian (condition > 10⁴) or a bootstrap interval of
α that spans the search range marks a candidate unidentified; an unidentified power law is reported as its
limit form (α → 0: a + b·ln R; α → ∞ or γ → 0: a constant). Intervals come from a residual bootstrap:
the pairs are the design, their scaled residuals are resampled onto the fitted values and every
resample refitted; a prediction adds to each refitted curve a draw of s·t(n − k), s the RMS of the
leave-one-out residuals (errors on unseen pairs) and t Student's with n − k degrees of freedom, so the
interval is as wide as out-of-sample errors are, and wider where few pairs estimate them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from analytics.laws import (
    ALPHA_BOUNDS,
    LAWS,
    DropFits,
    FloatArray,
    Law,
    distinct_count,
    fit_rows,
    pointwise,
    quantiles,
)
from analytics.laws import values as _values
from analytics.source import AnalyticsError

COND_MAX = 1e4
TIE_RTOL = 0.05
BOUND_RTOL = 1.05
SPAN_SHARE = 0.9


class CofPrediction(NamedTuple):
    """A predicted CoF with its prediction interval (NaN bounds when the fit had no bootstrap); `extrapolated`
    when a size or the ratio lies outside those the law was fitted to."""

    value: float
    lo: float
    hi: float
    extrapolated: bool = False


class MeasuredRange(NamedTuple):
    """The smallest and largest N_LLM, N_SLM and R among the pairs a law was fitted to."""

    llm_params: tuple[float, float]
    slm_params: tuple[float, float]
    ratio: tuple[float, float]

    def outside(self, llm_params: float, slm_params: float) -> bool:
        """Whether a pair lies outside the measured sizes or ratios (a relative tolerance of 1e-9)."""
        values = (llm_params, slm_params, llm_params / slm_params)
        return any(
            not (lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9))
            for v, (lo, hi) in zip(values, (self.llm_params, self.slm_params, self.ratio), strict=True)
        )

    def describe(self) -> str:
        """`N_LLM 39k–1.5M, N_SLM 39k–0.4M, R 1.3–38` style text."""
        parts = zip(("N_LLM", "N_SLM", "R"), self, strict=True)
        return ", ".join(f"{name} {lo:.3g}–{hi:.3g}" for name, (lo, hi) in parts)


def measured_range(x: FloatArray) -> MeasuredRange:
    """The range of design rows x = (ln N_LLM, ln N_SLM)."""
    nl, ns, r = np.exp(x[:, 0]), np.exp(x[:, 1]), np.exp(x[:, 0] - x[:, 1])
    return MeasuredRange(*((float(v.min()), float(v.max())) for v in (nl, ns, r)))


@dataclass(frozen=True)
class LawFit:
    """One candidate law fitted to the pairs, with its out-of-sample error and identifiability."""

    form: str
    formula: str
    names: tuple[str, ...]
    params: tuple[float, ...]
    sse: float
    loo_rmse: float
    aicc: float
    condition: float
    identified: bool
    reason: str
    limit_form: str | None
    intervals: tuple[tuple[float, float], ...] | None = None

    def value(self, llm_params: npt.ArrayLike, slm_params: npt.ArrayLike) -> FloatArray:
        """This law's CoF at each (N_LLM, N_SLM), unclipped."""
        return _values(self.form, np.asarray([self.params]), _design(llm_params, slm_params))[0]

    def param(self, name: str) -> float:
        """One parameter by name."""
        return self.params[self.names.index(name)]

    def describe(self) -> str:
        """The fitted formula with its numbers, e.g. `0.13 + 0.075*ln(R)`."""
        p = dict(zip(self.names, self.params, strict=True))
        if self.form == "power_ratio":
            return f"{p['gamma']:.4g}*R^(-{p['alpha']:.3g}) {_signed(p['beta'])}"
        if self.form == "log_ratio":
            return f"{p['a']:.4g} {_signed(p['b'])}*ln(R)"
        if self.form == "log_sizes":
            return f"{p['a']:.4g} {_signed(p['b'])}*ln(N_LLM) {_signed(p['c'])}*ln(N_SLM)"
        return f"{p['a']:.4g}"


def _signed(v: float) -> str:
    return f"- {abs(v):.4g}" if v < 0 else f"+ {v:.4g}"


@dataclass(frozen=True)
class CofFit:
    """Every candidate law fitted to one table of pairs, the chosen one first, and what was skipped."""

    candidates: tuple[LawFit, ...]
    skipped: tuple[tuple[str, str], ...]
    n_points: int
    bootstrap: int
    seed: int
    # Prediction noise of the chosen law: s (RMS of its leave-one-out residuals) times Student's t(df).
    noise_scale: float
    noise_df: int
    # The nested leave-one-pair-out error: each pair predicted by the law chosen (choice included) on the
    # others, RMS over the pairs that could be left out (`nested_pairs`); None when none could.
    nested_loo_rmse: float | None = None
    nested_pairs: int = 0
    measured: MeasuredRange | None = None
    # Residual-bootstrap parameter draws [B, k] per law form, for prediction intervals.
    draws: Mapping[str, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def chosen(self) -> LawFit:
        """The law the data support best."""
        return self.candidates[0]

    @property
    def form(self) -> str:
        """The chosen law's name."""
        return self.chosen.form

    @property
    def runner_up(self) -> LawFit | None:
        """The next-best identified candidate by leave-one-out error, if any."""
        rest = [c for c in self.candidates[1:] if c.identified]
        return rest[0] if rest else None

    def candidate(self, form: str) -> LawFit | None:
        """The fitted candidate of one form, or None when it was skipped."""
        return next((c for c in self.candidates if c.form == form), None)

    def band(
        self,
        llm_params: npt.ArrayLike,
        slm_params: npt.ArrayLike,
        confidence: float = 0.9,
        *,
        noise: bool = True,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The chosen law and its prediction interval at each (N_LLM, N_SLM), all clipped to [0, 1]; without
        `noise`, the interval of the fitted curve alone (where the law lies, not where a new pair falls)."""
        if not 0 < confidence < 1:
            raise AnalyticsError(f"confidence must lie in (0, 1), got {confidence}")
        x = _design(llm_params, slm_params)
        c = self.chosen
        value = _values(c.form, np.asarray([c.params]), x)[0]
        draws = self.draws.get(c.form)
        if draws is None or len(draws) == 0:
            nan = np.full_like(value, np.nan)
            return np.clip(value, 0, 1), nan, nan
        rng = np.random.default_rng(self.seed + 1)
        curves = _values(c.form, draws, x)  # [B, m]
        # One noise draw per curve, shared along it: the same distribution at each point, a smooth band.
        scale = self.noise_scale if noise else 0.0
        noisy = curves + scale * rng.standard_t(self.noise_df, (curves.shape[0], 1))
        lo, hi = quantiles(noisy, [0.5 - confidence / 2, 0.5 + confidence / 2])
        return np.clip(value, 0, 1), np.clip(lo, 0, 1), np.clip(hi, 0, 1)

    def predict(self, llm_params: float, slm_params: float, confidence: float = 0.9) -> CofPrediction:
        """The chosen law's CoF for one (unseen) pair with a prediction interval, flagged `extrapolated`
        outside the measured sizes or ratios."""
        value, lo, hi = self.band([llm_params], [slm_params], confidence)
        out = self.measured is not None and self.measured.outside(llm_params, slm_params)
        return CofPrediction(float(value[0]), float(lo[0]), float(hi[0]), out)


class TooFewPairs(AnalyticsError):
    """No candidate law can be fitted and checked on so few pairs."""


def _design(llm_params: npt.ArrayLike, slm_params: npt.ArrayLike) -> FloatArray:
    """x = (ln N_LLM, ln N_SLM): [n, 2]."""
    nl = np.asarray(llm_params, dtype=float).ravel()
    ns = np.asarray(slm_params, dtype=float).ravel()
    if nl.shape != ns.shape:
        raise ValueError(f"llm_params and slm_params differ in length: {nl.size} vs {ns.size}")
    if np.any(nl <= 0) or np.any(ns <= 0):
        raise AnalyticsError("parameter counts must be positive")
    return np.stack([np.log(nl), np.log(ns)], axis=1)


def pairs_table(
    llm_params: npt.ArrayLike, slm_params: npt.ArrayLike, cof: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """The design x = (ln N_LLM, ln N_SLM) [n, 2] and CoF [n] of the pairs with finite values."""
    x = _design(llm_params, slm_params)
    y = np.asarray(cof, dtype=float).ravel()
    if y.size != x.shape[0]:
        raise ValueError(f"cof has {y.size} values for {x.shape[0]} pairs")
    keep = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    return x[keep], y[keep]


def subset_fits(
    x: FloatArray,
    y: FloatArray,
    *,
    nested: bool,
    alpha_bounds: tuple[float, float] = ALPHA_BOUNDS,
    extra: FloatArray | None = None,
) -> DropFits:
    """The batch `fit_cof` reads: every law these pairs support (no subset supports one they do not) on each
    subset it needs; with `extra` weight rows (see `DropFits`), the power law always."""
    (why,) = _why_skip(x[None])
    forms = [form for form in LAWS if why[form] is None]
    if extra is not None and "power_ratio" not in forms:
        forms.append("power_ratio")
    return DropFits(x, y, 2 if nested else 1, alpha_bounds, forms, extra)


def _why_skip(xs: FloatArray) -> list[dict[str, str | None]]:
    """What each law needs that the pairs lack (None: nothing), by form, for each table xs[i] [m, 2]."""
    m = xs.shape[1]
    ratios = distinct_count(xs[..., 0] - xs[..., 1]) if m else np.zeros(xs.shape[0], dtype=int)
    sizes = zip(distinct_count(xs[..., 0]), distinct_count(xs[..., 1]), strict=True)
    return [
        {
            "constant": f"needs 2 pairs to be checked leaving one out; got {m}" if m < 2 else None,
            "log_ratio": f"needs 3 distinct ratios; got {r}" if r < 3 else None,
            "power_ratio": (
                f"needs 4 distinct ratios (3 parameters, one pair left out); got {r}" if r < 4 else None
            ),
            "log_sizes": (
                f"needs 4 pairs with at least 2 LLM and 2 SLM sizes; got {m} pairs, "
                f"{sl} LLM and {ss} SLM size(s)"
                if m < 4 or min(sl, ss) < 2
                else None
            ),
        }
        for r, (sl, ss) in zip(ratios.tolist(), sizes, strict=True)
    ]


def _aicc(sse: float, n: int, k: int, scale: float) -> float:
    """AICc of a least-squares fit with k parameters plus the noise variance."""
    kk = k + 1
    if n - kk - 1 <= 0:
        return float("inf")
    floor = n * (1e-9 * scale) ** 2  # noiseless data: every exact law ties, the penalty decides
    return float(n * np.log(max(sse, floor) / n) + 2 * kk + 2 * kk * (kk + 1) / (n - kk - 1))


def _resamples(n: int, resamples: int, seed: int) -> npt.NDArray[np.int64] | None:
    """The residual bootstrap's draws of n residuals [B, n] (None: no bootstrap); every law of one table
    resamples the same positions (the same seed), drawn once."""
    if resamples <= 0:
        return None
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _bootstrap(
    law: Law, x: FloatArray, fitted: FloatArray, pool: FloatArray, idx: npt.NDArray[np.int64], bounds: tuple
) -> FloatArray:
    """Residual-bootstrap parameter draws [B', k] (undefined refits dropped) from `_resamples`' draws."""
    params, ok = fit_rows(law.form, x, fitted[None, :] + pool[idx], bounds)
    return np.asarray(params[ok])


def _identify(
    law: Law,
    params: FloatArray,
    x: FloatArray,
    cond: float,
    intervals: tuple[tuple[float, float], ...] | None,
    bounds: tuple[float, float],
) -> tuple[bool, str, str | None]:
    """(identified, reason, limit form) of one fitted candidate."""
    reasons: list[str] = []
    limit: str | None = None
    if law.form == "power_ratio":
        gamma, alpha, _ = params
        log_r = x[:, 0] - x[:, 1]
        spread = abs(gamma) * float(np.ptp(np.exp(-alpha * log_r)))
        to_constant = spread < 1e-12 or alpha >= bounds[1] / BOUND_RTOL
        if alpha <= bounds[0] * BOUND_RTOL:
            reasons.append(f"alpha at its lower bound {bounds[0]:g}")
        elif alpha >= bounds[1] / BOUND_RTOL:
            reasons.append(f"alpha at its upper bound {bounds[1]:g}")
        if intervals is not None:
            lo, hi = intervals[1]
            share = np.log(hi / lo) / np.log(bounds[1] / bounds[0])
            if share >= SPAN_SHARE:
                reasons.append(f"alpha's bootstrap interval [{lo:.3g}, {hi:.3g}] spans the search range")
        if cond > COND_MAX:
            reasons.append(f"near-singular Jacobian (cond {cond:.2g})")
        limit = ("constant" if to_constant else "log_ratio") if reasons else None
    elif cond > COND_MAX:
        reasons.append(f"near-singular design (cond {cond:.2g}): the sizes move together")
    return not reasons, "; ".join(reasons), limit


def _fit_law(
    law: Law,
    x: FloatArray,
    y: FloatArray,
    given: tuple[FloatArray, FloatArray, float],
    idx: npt.NDArray[np.int64] | None,
    bounds: tuple,
    scale: float,
) -> tuple[LawFit, FloatArray | None]:
    """One candidate checked and (with `_resamples`' draws) bootstrapped, from its fit (params [1, k], its
    leave-one-out predictions [n] and its condition number); also its bootstrap draws. `scale`: the table's
    largest |CoF| (+1e-12)."""
    params, loo, cond = given
    fitted = _values(law.form, params, x)[0]
    resid = y - fitted
    n = y.size
    sse = float(resid @ resid)
    draws, intervals = None, None
    if idx is not None:
        pool = (resid - resid.mean()) * np.sqrt(n / max(n - law.k, 1))
        draws = _bootstrap(law, x, fitted, pool, idx, bounds)
        if len(draws):
            q = quantiles(draws, [0.025, 0.975])
            intervals = tuple((float(q[0, i]), float(q[1, i])) for i in range(law.k))
    identified, reason, limit = _identify(law, params[0], x, cond, intervals, bounds)
    fit = LawFit(
        law.form,
        law.formula,
        law.names,
        tuple(float(v) for v in params[0]),
        sse,
        float(np.sqrt(np.mean((loo - y) ** 2))),
        _aicc(sse, n, law.k, scale),
        cond,
        identified,
        reason,
        limit,
        intervals,
    )
    return fit, draws


def _scale(y: FloatArray) -> float:
    """A table's largest |CoF| (+1e-12): the scale of its noiseless floor and ties."""
    return float(np.max(np.abs(y))) + 1e-12


def _ranked(fits: list[LawFit], scale: float) -> list[LawFit]:
    """The chosen law first (lowest LOO RMSE among identified, ties by AICc), then the rest by LOO RMSE."""
    pool = [f for f in fits if f.identified] or fits
    best = min(f.loo_rmse for f in pool)
    tied = [f for f in pool if f.loo_rmse <= best * (1 + TIE_RTOL) + 1e-9 * scale]
    chosen = min(tied, key=lambda f: (f.aicc, len(f.names)))
    rest = sorted((f for f in fits if f is not chosen), key=lambda f: (f.loo_rmse, len(f.names)))
    return [chosen, *rest]


# One law's fit to the table at hand: params [1, k], its leave-one-out predictions [n] (None: some pair
# cannot be left out and the rest still fitted) and its condition number, read from a batch (`_table_fits`).
TableFits = Callable[[Law], tuple[FloatArray, FloatArray | None, float]]


def _table_fits(
    fits: DropFits, x: FloatArray, at: npt.NDArray[np.int64], dropped: tuple[int, ...]
) -> TableFits:
    """The fits of the table x = the full one's rows `at` (the pairs `dropped` left out) and its
    leave-one-out fits, read from a batch of fits to the full table's subsets."""

    def read(law: Law) -> tuple[FloatArray, FloatArray | None, float]:
        own, _, cond = fits.fit(law.form, dropped)
        params, defined, _ = fits.fits(law.form, [(*dropped, int(i)) for i in at])
        if not defined.all():
            return own[None, :], None, cond
        return own[None, :], np.asarray(np.diagonal(_values(law.form, params, x))), cond

    return read


def _candidates(
    x: FloatArray,
    y: FloatArray,
    idx: npt.NDArray[np.int64] | None,
    bounds: tuple,
    table: TableFits,
    every: bool,
) -> tuple[list[LawFit], list[tuple[str, str]], dict[str, FloatArray | None]]:
    """Every law that these pairs allow fitted and checked: (fits, skipped with why, bootstrap draws), the
    residual bootstrap on `_resamples`' draws `idx`; without `every`, of the power law alone (its α interval
    decides whether it is identified; a linear law's interval decides nothing)."""
    fits: list[LawFit] = []
    skipped: list[tuple[str, str]] = []
    draws: dict[str, FloatArray | None] = {}
    (skips,) = _why_skip(x[None])
    scale = _scale(y) if y.size else 0.0  # (no pair: no law to scale)
    for law in LAWS.values():
        why = skips[law.form]
        params, loo, cond = (None, None, 0.0) if why else table(law)
        if params is None or loo is None:
            skipped.append((law.form, why or "some pair cannot be left out and the rest still fitted"))
            continue
        own = idx if every or law.form == "power_ratio" else None
        fit, draws[law.form] = _fit_law(law, x, y, (params, loo, cond), own, bounds, scale)
        fits.append(fit)
    return fits, skipped, draws


def fit_cof(
    llm_params: npt.ArrayLike,
    slm_params: npt.ArrayLike,
    cof: npt.ArrayLike,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    alpha_bounds: tuple[float, float] = ALPHA_BOUNDS,
    nested: bool = False,
    batch: DropFits | None = None,
    every_interval: bool = True,
) -> CofFit:
    """Fit every candidate law to the pairs, choose by leave-one-pair-out error, flag unidentified fits;
    with `nested`, also the chosen law's nested leave-one-pair-out error (the choice re-run without each
    pair: the error of the whole procedure on an unseen pair, not of a law picked after seeing them all).

    Each law's fits to every subset this needs (each pair left out; with `nested`, each two) are solved in
    one batch (`DropFits`, or `batch` when the caller made it with `subset_fits`); each equals the fit to
    that subset alone. Without `every_interval` only the power law and the chosen law are bootstrapped (a
    prediction reads no other law's interval): the others' `intervals` and draws are left out."""
    x, y = pairs_table(llm_params, slm_params, cof)
    if batch is None:
        batch = subset_fits(x, y, nested=nested, alpha_bounds=alpha_bounds)
    elif not (np.array_equal(batch.x, x) and np.array_equal(batch.y, y)):
        raise ValueError("the batch of fits was made for other pairs")
    table = _table_fits(batch, x, np.arange(y.size), ())
    idx = _resamples(y.size, bootstrap, seed)
    fits, skipped, draws = _candidates(x, y, idx, alpha_bounds, table, every_interval)
    if not fits:
        raise TooFewPairs(
            f"no law can be fitted and checked on {y.size} pair(s): "
            + "; ".join(f"{form} {why}" for form, why in skipped)
        )
    ranked = _ranked(fits, _scale(y))
    if not every_interval and draws.get(ranked[0].form) is None and idx is not None:  # the chosen's, now
        law = LAWS[ranked[0].form]
        params, loo, cond = table(law)
        assert loo is not None  # (it was fitted)
        ranked[0], draws[law.form] = _fit_law(law, x, y, (params, loo, cond), idx, alpha_bounds, _scale(y))
    df = max(y.size - len(ranked[0].names), 1)
    kept = {form: d for form, d in draws.items() if d is not None}
    nested_rmse, nested_n = _nested_error(x, y, alpha_bounds, batch) if nested else (None, 0)
    return CofFit(
        tuple(ranked), tuple(skipped), int(y.size), bootstrap, seed, ranked[0].loo_rmse, df,
        nested_rmse, nested_n, measured_range(x), kept,
    )  # fmt: skip


def _nested_error(
    x: FloatArray, y: FloatArray, bounds: tuple[float, float], batch: DropFits
) -> tuple[float | None, int]:
    """RMS error on each pair of the law chosen without it (the whole choice re-run on n − 1 pairs). The
    n tables are checked together, law by law (`_nested_fits`), with `_candidates`' arithmetic."""
    n = y.size
    if n <= 2:  # a table of one pair allows no law
        return None, 0
    at = np.stack([np.flatnonzero(np.arange(n) != i) for i in range(n)])  # table i's pairs [n, n − 1]
    xs, ys = x[at], y[at]
    scales = np.max(np.abs(ys), axis=1) + 1e-12
    tables: list[list[LawFit]] = [[] for _ in range(n)]
    for by_table in _nested_fits(xs, ys, at, bounds, batch, scales):  # in LAWS' order, as `_candidates`
        for i, fit in by_table.items():
            tables[i].append(fit)
    errors = []
    for i, fits in enumerate(tables):
        if not fits:
            continue
        c = _ranked(fits, float(scales[i]))[0]
        errors.append(float(_values(c.form, np.asarray([c.params]), x[i : i + 1])[0, 0]) - y[i])
    if not errors:
        return None, 0
    return float(np.sqrt(np.mean(np.square(errors)))), len(errors)


def _nested_fits(
    xs: FloatArray,
    ys: FloatArray,
    at: npt.NDArray[np.int64],
    bounds: tuple[float, float],
    batch: DropFits,
    scales: FloatArray,
) -> list[dict[int, LawFit]]:
    """Per law, its checked fit (no bootstrap) to each table i = the pairs `at[i]` (pair i left out) that
    allows it and where every pair can be left out in turn: `_fit_law`'s numbers, row by row."""
    m = at.shape[1]
    skips = _why_skip(xs)
    out = []
    for law in LAWS.values():
        rows = np.asarray([i for i, why in enumerate(skips) if why[law.form] is None], dtype=int)
        if not rows.size:
            continue
        own, _, cond = batch.fits(law.form, [(int(i),) for i in rows])
        loo, defined, _ = batch.fits(law.form, [(int(i), int(j)) for i in rows for j in at[i]])
        loo = loo.reshape(rows.size, m, law.k)
        ok = np.asarray(defined.reshape(rows.size, m).all(axis=1), dtype=bool)
        fitted = pointwise(law.form, np.broadcast_to(own[:, None, :], loo.shape), xs[rows])
        resid = ys[rows] - fitted
        sse = np.vecdot(resid, resid)
        rmse = np.sqrt(np.mean((pointwise(law.form, loo, xs[rows]) - ys[rows]) ** 2, axis=1))
        fits: dict[int, LawFit] = {}
        for r, i in enumerate(rows):
            if not ok[r]:
                continue
            identified, reason, limit = _identify(law, own[r], xs[i], float(cond[r]), None, bounds)
            fits[int(i)] = LawFit(
                law.form, law.formula, law.names, tuple(float(v) for v in own[r]), float(sse[r]),
                float(rmse[r]), _aicc(float(sse[r]), m, law.k, float(scales[i])), float(cond[r]),
                identified, reason, limit,
            )  # fmt: skip
        out.append(fits)
    return out
