"""Candidate laws for CoF over (LLM, SLM) pairs, each fitted by least squares row by row (vectorised).

Every law sees the pairs as x = (ln N_LLM, ln N_SLM), shape [..., n, 2], so ln R = x₀ − x₁. Rows are
independent fits (leave-one-out subsets, bootstrap resamples), so one call fits hundreds at once.

- `constant`: CoF = a
- `log_ratio`: CoF = a + b·ln R
- `log_sizes`: CoF = a + b·ln N_LLM + c·ln N_SLM
- `power_ratio`: CoF = γ·R^(−α) + β (the paper's; γ's sign free). For a fixed α it is linear in (γ, β), so
  α is profiled: every point of a 160-point grid over α is a start, each solved in closed form, and a
  golden-section search refines the best one inside its grid cell — the global least-squares optimum
  within the α bounds, whatever the sign of γ.
"""

from __future__ import annotations

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


def _linear_given_alpha(
    alpha: FloatArray, log_r: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """γ, β and SSE at each α; shapes broadcast: alpha [..., 1], log_r and y [..., n]."""
    z = np.exp(-alpha * log_r)  # R^(−α): [..., n]
    zc = z - z.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    szz = (zc * zc).sum(axis=-1)
    szy = (zc * yc).sum(axis=-1)
    flat = szz <= 1e-300
    gamma = np.where(flat, 0.0, szy / np.where(flat, 1.0, szz))
    beta = y.mean(axis=-1) - gamma * z.mean(axis=-1)
    resid = y - gamma[..., None] * z - beta[..., None]
    return gamma, beta, (resid * resid).sum(axis=-1)


def _grid_bracket(
    log_r: FloatArray, y: FloatArray, bounds: tuple[float, float]
) -> tuple[FloatArray, FloatArray]:
    """The grid cell around the best α of each row: (lo, hi), each [B]."""
    grid = np.geomspace(bounds[0], bounds[1], GRID_POINTS)
    _, _, sse = _linear_given_alpha(grid[None, :, None], log_r[:, None, :], y[:, None, :])  # [B, G]
    best = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    return grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, GRID_POINTS - 1)]


def power_fit_rows(log_r: FloatArray, y: FloatArray, bounds: tuple[float, float]) -> FloatArray:
    """Fit γ·R^(−α) + β to each row of log_r / y [B, n]; returns [B, 4] = (γ, α, β, SSE)."""
    lo, hi = _grid_bracket(log_r, y, bounds)

    def sse_at(alpha: FloatArray) -> FloatArray:
        return _linear_given_alpha(alpha[:, None], log_r, y)[2]

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
    gamma, beta, sse = _linear_given_alpha(alpha[:, None], log_r, y)
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
    """Fit one law to each row: x [B or 1, n, 2], y [B, n] -> (params [B, k], defined [B])."""
    if form == "power_ratio":
        log_r = np.broadcast_to(x[..., 0] - x[..., 1], y.shape)
        params = power_fit_rows(np.ascontiguousarray(log_r), y, bounds)[:, :3]
        return params, distinct_count(log_r) >= 3
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
    others = np.array([[j for j in range(n) if j != i] for i in range(n)])  # [n, n-1]
    params, ok = fit_rows(form, x[others], y[others], bounds)
    if not ok.all():
        return None
    return np.asarray(np.diagonal(values(form, params, x)))
