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

import functools
import itertools
from collections.abc import Sequence
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


class _Profile:
    """γ, z̄ (β = ȳ − γ·z̄) and the weighted SSE of each row at its α: rows of yc = y − ȳ [B, n] with weights
    w [B, n] (sw = Σw, ȳ the weighted mean) over the shared points −ln R [n]. Row sums are `vecdot`s (one
    call each) into scratch arrays made once: the search evaluates this 50 times on small arrays. `unit`:
    every weight is 1, so the products by w (exact) are skipped."""

    def __init__(self, neg_log_r: FloatArray, w: FloatArray, sw: FloatArray, yc: FloatArray, unit: bool):
        self.neg_log_r, self.w, self.sw, self.yc, self.unit = neg_log_r, w, sw, yc, unit
        self.z, self.t = np.empty(yc.shape), np.empty(yc.shape)

    def at(self, alpha: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(γ, z̄, SSE) at α [B]."""
        z, w = self.z, self.w
        np.exp(np.multiply(alpha[:, None], self.neg_log_r, out=z), out=z)  # R^(−α): [B, n]
        zbar = np.vecdot(w, z)
        zbar /= self.sw
        zc = np.subtract(z, zbar[:, None], out=z)
        wzc = zc if self.unit else np.multiply(w, zc, out=self.t)
        # Σw·zc·yc over Σw·zc² (0 where every weighted z is equal: then Σw·zc·yc is 0 too)
        gamma = np.vecdot(wzc, self.yc)
        gamma /= np.maximum(np.vecdot(wzc, zc), 1e-300)
        resid = np.subtract(self.yc, np.multiply(gamma[:, None], zc, out=z), out=z)  # y − γz − β
        wr = resid if self.unit else np.multiply(w, resid, out=self.t)
        return gamma, zbar, np.vecdot(wr, resid)


@functools.cache
def _alpha_grid(bounds: tuple[float, float]) -> FloatArray:
    """The α grid of a search range (made once per range; read-only)."""
    grid = np.geomspace(bounds[0], bounds[1], GRID_POINTS)
    grid.flags.writeable = False
    return grid


def _grid_bracket(
    neg_log_r: FloatArray,
    w: FloatArray,
    sw: FloatArray,
    yc: FloatArray,
    bounds: tuple[float, float],
    unit: bool,
) -> tuple[FloatArray, FloatArray]:
    """The grid cell around the best α of each row: (lo, hi), each [B]. The weighted sums at every grid
    point are products of [B, n] and [G, n] (the points are shared), with z centred per grid point against
    cancellation; einsum, not BLAS, whose threads only queue on a busy machine. `unit`: every weight is 1,
    so the sums of w alone are alike in every row: made for one row (einsum sums a row alike in any batch)
    and broadcast, two of the three [B, G, n] products saved."""
    grid = _alpha_grid(bounds)
    z = np.exp(grid[:, None] * neg_log_r[None, :])  # [G, n]
    z = z - z.mean(axis=1, keepdims=True)
    wy = yc if unit else w * yc
    w_rows, sw_rows = (w[:1], sw[:1]) if unit else (w, sw)
    sz = np.einsum("bn,gn->bg", w_rows, z)
    szz = np.einsum("bn,gn->bg", w_rows, z * z) - sz * sz / sw_rows[:, None]
    szy = np.einsum("bn,gn->bg", wy, z)  # Σw·yc = 0, so no correction
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
    unit = w is None
    w = np.ones_like(y) if w is None else np.broadcast_to(np.asarray(w, dtype=float), y.shape)
    neg_log_r = -np.asarray(log_r, dtype=float)
    sw = w.sum(axis=1)
    ybar = (w * y).sum(axis=1) / sw
    yc = y - ybar[:, None]
    lo, hi = _grid_bracket(neg_log_r, w, sw, yc, bounds, unit)
    profile = _Profile(neg_log_r, w, sw, yc, unit)

    def sse_at(alpha: FloatArray) -> FloatArray:
        return profile.at(alpha)[2]

    # Golden-section search, vectorised over rows: one new evaluation per step.
    inv_phi = (np.sqrt(5.0) - 1) / 2
    c, d = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fc, fd = sse_at(c), sse_at(d)
    for _ in range(GOLDEN_STEPS):
        left = fc <= fd
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
        step = inv_phi * (hi - lo)
        x = np.where(left, hi - step, lo + step)
        fx = sse_at(x)
        c, d, fc, fd = (
            np.where(left, x, d),
            np.where(left, c, x),
            np.where(left, fx, fd),
            np.where(left, fc, fx),
        )
    alpha = (lo + hi) / 2
    gamma, zbar, sse = profile.at(alpha)
    return np.stack([gamma, alpha, ybar - gamma * zbar, sse], axis=1)


def quantiles(values: npt.ArrayLike, qs: Sequence[float]) -> FloatArray:
    """`np.quantile(values, qs, axis=0)` (its linear method) number for number: the draws sorted once, then
    its index, weight and interpolation arithmetic (np.quantile's checks, partition and reshaping cost more
    than the arithmetic on a few hundred draws; a request reads four to six such intervals). A column
    holding NaN gives NaN, as there."""
    a = np.sort(np.asarray(values, dtype=float), axis=0)
    n = a.shape[0]
    virtual = (n - 1) * np.asarray(qs, dtype=float)
    prev = np.floor(virtual)
    prev[virtual >= n - 1] = -1  # the largest value (numpy's index for it)
    prev[virtual < 0] = 0
    below = prev.astype(np.intp)
    above = np.where(prev == -1, -1, below + 1)
    t = (virtual - below).reshape(-1, *(1,) * (a.ndim - 1))
    lo, hi = a[below], a[above]
    diff = hi - lo
    out = np.asarray(lo + diff * t)
    np.subtract(hi, diff * (1 - t), out=out, where=t >= 0.5)
    np.copyto(out, a[-1], where=np.isnan(a[-1]))
    return out


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


def condition(g: FloatArray) -> FloatArray:
    """Condition number of each column-scaled matrix [..., n, q] (inf where a column is zero)."""
    if g.shape[-1] == 0:
        return np.ones(g.shape[:-2])
    sv = np.linalg.svd(g, compute_uv=False)
    return np.where(sv[..., -1] > 0, sv[..., 0] / np.where(sv[..., -1] > 0, sv[..., -1], 1.0), np.inf)


def _scaled_condition(g: FloatArray) -> FloatArray:
    """Condition number of each matrix [R, n, q] with its columns scaled to unit norm (inf: a zero column)."""
    norm = np.sqrt((g * g).sum(axis=1))  # [R, q]
    full = np.all(norm > 0, axis=-1)
    return np.where(full, condition(g / np.where(norm > 0, norm, 1.0)[:, None, :]), np.inf)


def _linear_rows(form: str, x: FloatArray, y: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Weighted least squares of a linear law per row: x [n, 2] shared, y and w [R or 1, n] -> (params
    [R, 1 + q], condition [R or 1] of the centred, column-scaled design √w·(F − F̄), inf: rank-deficient).
    A weight of 0 drops a pair: the fit and the condition are those of the table without it."""
    f = _features(form, x)  # [n, q]
    sw = w.sum(axis=1)
    ybar = (w * y).sum(axis=1) / sw
    mean = (w @ f) / sw[:, None]  # [R, q]
    root = np.sqrt(w)
    g = root[:, :, None] * (f[None, :, :] - mean[:, None, :])  # [R, n, q]
    norm = np.sqrt((g * g).sum(axis=1))
    cond = _scaled_condition(g)
    if f.shape[1] == 0:  # the constant: the weighted mean
        return ybar[:, None], cond
    pinv = np.linalg.pinv(g / np.where(norm > 0, norm, 1.0)[:, None, :])  # [R, q, n]
    rows = max(y.shape[0], w.shape[0])
    coef = np.einsum("rqn,rn->rq", np.broadcast_to(pinv, (rows, *pinv.shape[1:])), root * (y - ybar[:, None]))
    coef = coef / np.where(norm > 0, norm, 1.0)
    return np.concatenate([ybar[:, None] - (coef * mean).sum(axis=1, keepdims=True), coef], axis=1), cond


def _power_condition(params: FloatArray, log_r: FloatArray, w: FloatArray) -> FloatArray:
    """Condition number of each row's column-scaled, weighted Jacobian at its fit (Gauss-Newton Hessian
    JᵀJ): params [R, 3], ln R [n] shared, w [R, n]."""
    gamma, alpha = params[:, :1], params[:, 1:2]
    z = np.exp(-alpha * log_r[None, :])
    jac = np.stack([z, -gamma * log_r[None, :] * z, np.ones_like(z)], axis=2)  # [R, n, 3]
    return np.asarray(_scaled_condition(np.sqrt(w)[:, :, None] * jac))


def fit_rows(
    form: str, x: FloatArray, y: FloatArray, bounds: tuple[float, float] = ALPHA_BOUNDS
) -> tuple[FloatArray, BoolArray]:
    """Fit one law to each row of y [B, n] at the shared pairs x [n, 2] -> (params [B, k], defined [B])."""
    if form not in LAWS:
        raise AnalyticsError(f"unknown law {form!r}; choose from: {', '.join(LAWS)}")
    if form == "power_ratio":
        log_r = x[:, 0] - x[:, 1]
        defined = int(distinct_count(log_r[None])[0]) >= 3
        return power_fit(log_r, y, None, bounds)[:, :3], np.full(y.shape[0], defined)
    params, cond = _linear_rows(form, x, y, np.ones((1, y.shape[1])))
    return params, np.broadcast_to(cond < RANK_COND, y.shape[:1])


def values(form: str, params: FloatArray, x: FloatArray) -> FloatArray:
    """Each row's law at points x [m, 2] (or [B, m, 2]): params [B, k] -> [B, m]."""
    return pointwise(form, params[:, None, :], x)


def pointwise(form: str, params: FloatArray, x: FloatArray) -> FloatArray:
    """Each point's own law: params [..., k] at x [..., 2] -> [...], broadcast against each other (the one
    place the laws' formulas are written; `values` is its rows-by-points case)."""
    p = [params[..., i] for i in range(params.shape[-1])]
    log_l, log_s = x[..., 0], x[..., 1]
    if form == "power_ratio":
        return np.asarray(p[0] * np.exp(-p[1] * (log_l - log_s)) + p[2])
    if form == "log_ratio":
        return np.asarray(p[0] + p[1] * (log_l - log_s))
    if form == "log_sizes":
        return np.asarray(p[0] + p[1] * log_l + p[2] * log_s)
    return np.asarray(np.broadcast_to(p[0], np.broadcast_shapes(p[0].shape, log_l.shape)))


class DropFits:
    """Laws fitted to one table of pairs (x [n, 2], y [n]) and to it without each set of up to `depth`
    pairs, one batch per law (a left-out pair weighs 0): leave-one-out, and the nested leave-one-out that
    re-runs the choice without each pair, need every such subset; one batch costs about what one fit does,
    and each row equals the fit to its subset alone (to rounding). `extra` weight rows [E, n] (a pairs
    bootstrap's counts) join the power law's batch; `extra_fits` reads them (γ, α, β, SSE)."""

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        depth: int,
        bounds: tuple[float, float],
        forms: Sequence[str],
        extra: FloatArray | None = None,
    ) -> None:
        n = y.size
        self.x, self.y = x, y
        drops = (d for k in range(min(depth, n - 1) + 1) for d in itertools.combinations(range(n), k))
        self._row = {drop: i for i, drop in enumerate(drops)}
        w = np.ones((len(self._row), n))
        for drop, i in self._row.items():
            w[i, list(drop)] = 0.0
        log_r = x[:, 0] - x[:, 1]
        kept = np.where(w > 0, log_r[None, :], np.nan)  # NaN sorts last and never counts as distinct
        self._fits: dict[str, tuple[FloatArray, BoolArray, FloatArray]] = {}
        self._extra = np.empty((0, 4))
        for form in forms:
            if form == "power_ratio":
                rows = w if extra is None else np.concatenate([w, extra])
                solved = power_fit(log_r, np.broadcast_to(y, rows.shape), rows, bounds)
                params, self._extra = solved[: len(w), :3], solved[len(w) :]
                cond = _power_condition(params, log_r, w)
                self._fits[form] = params, distinct_count(kept) >= 3, cond
            else:
                params, cond = _linear_rows(form, x, y[None, :], w)
                self._fits[form] = params, cond < RANK_COND, cond

    def fit(self, form: str, drop: tuple[int, ...]) -> tuple[FloatArray, bool, float]:
        """The law's params [k] on the table without the pairs `drop` (indices into the full table),
        whether that subset pins it down (the law's rank or distinct-ratio need), and its condition number
        (the column-scaled Jacobian or design)."""
        params, defined, cond = self._fits[form]
        i = self._row[tuple(sorted(drop))]
        return np.asarray(params[i]), bool(defined[i]), float(cond[i])

    def fits(self, form: str, drops: Sequence[tuple[int, ...]]) -> tuple[FloatArray, BoolArray, FloatArray]:
        """`fit` of each set of pairs in `drops`, as arrays: params [m, k], defined [m], condition [m]."""
        params, defined, cond = self._fits[form]
        rows = [self._row[tuple(sorted(drop))] for drop in drops]
        return params[rows], defined[rows], cond[rows]

    def extra_fits(self) -> FloatArray:
        """The power law's fits [E, 4] = (γ, α, β, weighted SSE) to the `extra` weight rows."""
        return self._extra
