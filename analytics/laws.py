"""Candidate laws for CoF over (LLM, SLM) pairs, each fitted by least squares row by row (vectorised).

Every law sees the pairs as x = (ln N_LLM, ln N_SLM), shape [..., n, 2], so ln R = x₀ − x₁. Rows are
independent fits (leave-one-out subsets, bootstrap resamples), so one call fits hundreds at once; the power
law's rows share the points and weigh them (a resample's counts, 0 for a pair left out), so every fit one
table needs is one batch (`DropFits`).

- `constant`: CoF = a
- `log_ratio`: CoF = a + b·ln R
- `log_sizes`: CoF = a + b·ln N_LLM + c·ln N_SLM
- `power_ratio`: CoF = γ·R^(−α) + β (the paper's; γ's sign free). For a fixed α it is linear in (γ, β), so
  α is profiled: every point of a 160-point grid over α is a start, each solved in closed form, and a
  golden-section search refines the best one inside its grid cell — the global least-squares optimum
  within the α bounds, whatever the sign of γ.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.source import AnalyticsError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ALPHA_BOUNDS = (1e-3, 5.0)
GRID_POINTS = 160
GOLDEN_STEPS = 48
# A column-scaled design or Jacobian with a condition number above this cannot pin its parameters down.
RANK_COND = 1e8


@dataclass(frozen=True)
class Law:
    """One candidate law: its name, formula and parameter names."""

    form: str
    formula: str
    names: tuple[str, ...]

    @property
    def k(self) -> int:
        """Number of fitted parameters."""
        return len(self.names)


LAWS: dict[str, Law] = {
    law.form: law
    for law in (
        Law("power_ratio", "gamma*R^(-alpha) + beta", ("gamma", "alpha", "beta")),
        Law("log_ratio", "a + b*ln(R)", ("a", "b")),
        Law("log_sizes", "a + b*ln(N_LLM) + c*ln(N_SLM)", ("a", "b", "c")),
        Law("constant", "a", ("a",)),
    )
}


def _given_alpha(
    alpha: FloatArray, neg_log_r: FloatArray, w: FloatArray, sw: FloatArray, ybar: FloatArray, yc: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """γ, β and the weighted SSE of each row at its α [B]: rows of yc = y − ȳ [B, n] with weights w [B, n]
    (sw = Σw, ȳ the weighted mean) over the shared points −ln R [n]."""
    z = np.exp(alpha[:, None] * neg_log_r)  # R^(−α): [B, n]
    zbar = (w * z).sum(axis=1) / sw
    zc = z - zbar[:, None]
    wzc = w * zc
    # Σw·zc·yc over Σw·zc² (0 where every weighted z is equal: then Σw·zc·yc is 0 too)
    gamma = (wzc * yc).sum(axis=1) / np.maximum((wzc * zc).sum(axis=1), 1e-300)
    resid = yc - gamma[:, None] * zc  # y − γz − β
    return gamma, ybar - gamma * zbar, (w * resid * resid).sum(axis=1)


def _grid_bracket(
    neg_log_r: FloatArray, w: FloatArray, sw: FloatArray, yc: FloatArray, bounds: tuple[float, float]
) -> tuple[FloatArray, FloatArray]:
    """The grid cell around the best α of each row: (lo, hi), each [B]. The weighted sums at every grid
    point are matrix products (the points are shared), with z centred per grid point against cancellation."""
    grid = np.geomspace(bounds[0], bounds[1], GRID_POINTS)
    z = np.exp(grid[:, None] * neg_log_r[None, :])  # [G, n]
    z = z - z.mean(axis=1, keepdims=True)
    wy = w * yc
    sz = w @ z.T  # [B, G]
    szz = w @ (z * z).T - sz * sz / sw[:, None]
    szy = wy @ z.T  # Σw·yc = 0, so no correction
    syy = (wy * yc).sum(axis=1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = np.where(szz > 1e-300, syy - szy * szy / szz, syy)
    best = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    return grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, GRID_POINTS - 1)]


def power_fit(
    log_r: FloatArray, y: FloatArray, w: FloatArray | None = None, bounds: tuple[float, float] = ALPHA_BOUNDS
) -> FloatArray:
    """Fit γ·R^(−α) + β to each row of y [B, n] at the shared ratios ln R [n], weighting the points by w
    [B, n] (None: all 1); returns [B, 4] = (γ, α, β, weighted SSE).

    A weight is how often a point is in a row's table, so one call fits many tables drawn from the same
    points: a bootstrap resample is its counts, leaving pairs out is a weight of 0 (every row needs positive
    weight on at least one point). The fit equals the unweighted fit to the table itself (to rounding).
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    w = np.ones_like(y) if w is None else np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    neg_log_r = -np.asarray(log_r, dtype=float)
    sw = w.sum(axis=1)
    ybar = (w * y).sum(axis=1) / sw
    yc = y - ybar[:, None]
    lo, hi = _grid_bracket(neg_log_r, w, sw, yc, bounds)

    def sse_at(alpha: FloatArray) -> FloatArray:
        return _given_alpha(alpha, neg_log_r, w, sw, ybar, yc)[2]

    # Golden-section search, vectorised over rows: one new evaluation per step.
    inv_phi = (np.sqrt(5.0) - 1) / 2
    c, d = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fc, fd = sse_at(c), sse_at(d)
    for _ in range(GOLDEN_STEPS):
        left = fc <= fd
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
        x = np.where(left, hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo))
        fx = sse_at(x)
        c, d, fc, fd = (
            np.where(left, x, d),
            np.where(left, c, x),
            np.where(left, fx, fd),
            np.where(left, fc, fx),
        )
    alpha = (lo + hi) / 2
    gamma, beta, sse = _given_alpha(alpha, neg_log_r, w, sw, ybar, yc)
    return np.stack([gamma, alpha, beta, sse], axis=1)


def distinct_count(values: FloatArray) -> npt.NDArray[np.int64]:
    """Distinct values in each row of [B, n] (ratios closer than 1e-9 in ln R count as one)."""
    srt = np.sort(values, axis=-1)
    return 1 + (np.diff(srt, axis=-1) > 1e-9).sum(axis=-1)


def _features(form: str, x: FloatArray) -> FloatArray:
    """The non-intercept regressors of a linear law: [..., n, q]."""
    if form == "log_ratio":
        return (x[..., 0] - x[..., 1])[..., None]
    if form == "log_sizes":
        return x
    return x[..., :0]  # constant


def _scaled(f: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Centred regressors divided by their column norms: (G [..., n, q], means [..., q], norms [..., q])."""
    mean = f.mean(axis=-2)
    fc = f - mean[..., None, :]
    norm = np.sqrt((fc * fc).sum(axis=-2))
    return fc / np.where(norm > 0, norm, 1.0)[..., None, :], mean, norm


def condition(g: FloatArray) -> FloatArray:
    """Condition number of each column-scaled matrix [..., n, q] (inf where a column is zero)."""
    if g.shape[-1] == 0:
        return np.ones(g.shape[:-2])
    sv = np.linalg.svd(g, compute_uv=False)
    return np.where(sv[..., -1] > 0, sv[..., 0] / np.where(sv[..., -1] > 0, sv[..., -1], 1.0), np.inf)


def _linear_fit_rows(form: str, x: FloatArray, y: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Least squares of a linear law per row: params [B, 1 + q] and whether each row is full rank."""
    g, mean, norm = _scaled(_features(form, x))  # g: [B or 1, n, q]
    ok = (condition(g) < RANK_COND) & np.all(norm > 0, axis=-1)
    pinv = np.linalg.pinv(g)  # [B or 1, q, n]
    yc = y - y.mean(axis=-1, keepdims=True)
    coef = np.einsum("bqn,bn->bq", np.broadcast_to(pinv, (y.shape[0], *pinv.shape[1:])), yc)
    coef = coef / np.where(norm > 0, norm, 1.0)
    intercept = y.mean(axis=-1) - (coef * mean).sum(axis=-1)
    return np.concatenate([intercept[:, None], coef], axis=1), np.broadcast_to(ok, y.shape[:1])


def fit_rows(
    form: str, x: FloatArray, y: FloatArray, bounds: tuple[float, float] = ALPHA_BOUNDS
) -> tuple[FloatArray, BoolArray]:
    """Fit one law to each row: x [B or 1, n, 2] (the power law: [1, n, 2], points shared by the rows),
    y [B, n] -> (params [B, k], defined [B])."""
    if form == "power_ratio":
        if x.shape[0] != 1:
            raise ValueError("the power law fits rows at shared points: weight them with power_fit")
        log_r = x[0, :, 0] - x[0, :, 1]
        defined = int(distinct_count(log_r[None])[0]) >= 3
        return power_fit(log_r, y, None, bounds)[:, :3], np.full(y.shape[0], defined)
    if form not in LAWS:
        raise AnalyticsError(f"unknown law {form!r}; choose from: {', '.join(LAWS)}")
    if form == "constant":
        return y.mean(axis=-1, keepdims=True), np.full(y.shape[0], y.shape[1] >= 1)
    return _linear_fit_rows(form, x, y)


def values(form: str, params: FloatArray, x: FloatArray) -> FloatArray:
    """Each row's law at points x [m, 2] (or [B, m, 2]): params [B, k] -> [B, m]."""
    p = [params[:, i, None] for i in range(params.shape[1])]
    log_l, log_s = x[..., 0], x[..., 1]
    if form == "power_ratio":
        return np.asarray(p[0] * np.exp(-p[1] * (log_l - log_s)) + p[2])
    if form == "log_ratio":
        return np.asarray(p[0] + p[1] * (log_l - log_s))
    if form == "log_sizes":
        return np.asarray(p[0] + p[1] * log_l + p[2] * log_s)
    return np.asarray(np.broadcast_to(p[0], (params.shape[0], x.shape[-2])))


def jacobian_condition(form: str, params: FloatArray, x: FloatArray) -> float:
    """Condition number of the column-scaled Jacobian at the fit (Gauss-Newton Hessian = JᵀJ)."""
    if form != "power_ratio":
        g, _, norm = _scaled(_features(form, x))
        return float(condition(g)) if np.all(norm > 0) else float("inf")
    gamma, alpha, _ = params
    log_r = x[:, 0] - x[:, 1]
    z = np.exp(-alpha * log_r)
    jac = np.stack([z, -gamma * log_r * z, np.ones_like(z)], axis=1)  # [n, 3]
    norm = np.sqrt((jac * jac).sum(axis=0))
    if np.any(norm <= 0):
        return float("inf")
    return float(condition(jac / norm))


def leave_one_out(
    form: str, x: FloatArray, y: FloatArray, bounds: tuple[float, float] = ALPHA_BOUNDS
) -> FloatArray | None:
    """Each pair predicted by the law fitted to the others: [n], or None when some subset cannot be fit."""
    n = y.size
    if form == "power_ratio":
        fits = DropFits(x[:, 0] - x[:, 1], y, 1, bounds)
        if not all(fits.defined((i,)) for i in range(n)):
            return None
        params = np.stack([fits.params((i,)) for i in range(n)])
    else:
        others = np.array([[j for j in range(n) if j != i] for i in range(n)])  # [n, n-1]
        params, ok = fit_rows(form, x[others], y[others], bounds)
        if not ok.all():
            return None
    return np.asarray(np.diagonal(values(form, params, x)))


class DropFits:
    """The power law fitted to one table of pairs (ln R [n], y [n]) and to it without each set of up to
    `depth` pairs, all in one `power_fit` call (a left-out pair weighs 0): leave-one-out and nested
    leave-one-out need every such subset, and one batch costs about what one fit does."""

    def __init__(self, log_r: FloatArray, y: FloatArray, depth: int, bounds: tuple[float, float]) -> None:
        n = y.size
        self._row = {
            drop: i
            for i, drop in enumerate(
                d for k in range(min(depth, n - 1) + 1) for d in itertools.combinations(range(n), k)
            )
        }
        w = np.ones((len(self._row), n))
        for drop, i in self._row.items():
            w[i, list(drop)] = 0.0
        self._fits = power_fit(log_r, np.broadcast_to(y, w.shape), w, bounds)[:, :3]
        kept = np.where(w > 0, log_r[None, :], np.nan)  # NaN sorts last and never counts as distinct
        self._defined = distinct_count(kept) >= 3

    def params(self, drop: tuple[int, ...]) -> FloatArray:
        """(γ, α, β) of the table without the pairs `drop` (indices into the full table)."""
        return np.asarray(self._fits[self._row[tuple(sorted(drop))]])

    def defined(self, drop: tuple[int, ...]) -> bool:
        """Whether the pairs left after `drop` have the 3 distinct ratios the law needs."""
        return bool(self._defined[self._row[tuple(sorted(drop))]])
