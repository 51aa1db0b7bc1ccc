"""The early-share test's figures of groups of samples, from each sample's tokens n, mismatches m, and those
in the early window e and em (analytics/positions.py's docstring says what the figures are and why), or
from their runs' sums of these (`window_moments` rows: `moment_stats`); and the columns they fill
(`sample_rows`, `assembled`).

NumPy over one column per value: an interleaved [samples, 4] float copy cost 1.5 ms at 40,000 samples, the
four columns 0.1 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from warehouse.summaries import MOMENT_FLOATS, MOMENT_SUMS, MOMENT_VALUES

Alternative = Literal["two-sided", "greater", "less"]
CONFIDENCE = 0.95
FloatArray = npt.NDArray[np.float64]
SAMPLE_COLUMNS = tuple(MOMENT_VALUES.values())  # n, m, e, em: of `sample_windows` rows
Columns = tuple[FloatArray, FloatArray, FloatArray, FloatArray]  # per sample: n, m, e, em (SAMPLE_COLUMNS)


STATS = ("baseline_share", "enrichment", "enrichment_lo", "enrichment_hi", "p_value")  # of `window_stats`


def _p_values(t: FloatArray, df: FloatArray, alternative: Alternative) -> FloatArray:
    """p-values of score statistics t against Student's t(df)."""
    if alternative == "greater":
        return np.asarray(special.stdtr(df, -t), dtype=np.float64)  # t(df).sf(t), without scipy.stats' checks
    if alternative == "less":
        return np.asarray(special.stdtr(df, t), dtype=np.float64)
    return np.minimum(1.0, 2 * np.asarray(special.stdtr(df, -np.abs(t)), dtype=np.float64))


def _nullable(values: FloatArray, valid: npt.NDArray[np.bool_]) -> list[float | None]:
    return [float(v) if ok else None for v, ok in zip(values, valid, strict=True)]


Sum = npt.NDArray[Any]  # per group (np.bincount's sums: float64)


@dataclass(frozen=True)
class Sums:
    """Per group: its samples k, the sums of n, m, e, em (`x`), of d = em − m·e/n (`d`) and d² (`dd`), and
    Σψ² (`psi`), each sample's influence on log enrichment squared (analytics/positions.py's docstring)."""

    k: Sum
    x: tuple[Sum, Sum, Sum, Sum]
    d: Sum
    dd: Sum
    psi: Sum


def window_stats(
    x: Columns, groups: npt.NDArray[np.int64], count: int, alternative: Alternative
) -> dict[str, list[float | None]]:
    """Per group of samples (`groups`: each row's group, 0..count − 1; x: the columns n, m, e, em of the
    samples): baseline share, enrichment with its delta-method interval and the score test's p-value
    (analytics/positions.py's docstring); None where undefined."""
    k = np.bincount(groups, minlength=count).astype(np.float64)
    n, m, e, em = (np.bincount(groups, c, minlength=count) for c in x)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = x[3] - x[1] * np.where(x[0] > 0, x[2] / x[0], 0.0)
        psi = x[3] / em[groups] - x[1] / m[groups] - x[2] / e[groups] + x[0] / n[groups]
    sums = (np.bincount(groups, v, minlength=count) for v in (d, d * d, psi * psi))
    return stats(Sums(k, (n, m, e, em), *sums), alternative)


def moment_stats(
    rows: Mapping[str, npt.NDArray[Any]], groups: npt.NDArray[np.int64], count: int, alternative: Alternative
) -> dict[str, list[float | None]]:
    """`window_stats` of groups of runs from their `window_moments` rows (`groups`: each row's group): the
    same sums, and Σψ² as the quadratic form of each group's centred products, whose numerators
    k·Σab − Σa·Σb are exact integers (so that samples all alike give 0, as their ψ do)."""
    total = {c: int_sums(rows[c], groups, count) for c in MOMENT_SUMS if c not in MOMENT_FLOATS}
    k = total["samples"]
    names = list(MOMENT_VALUES)
    sign = (1, -1, -1, 1)  # ψ = n/N − m/M − e/E + em/EM
    sums = [total[MOMENT_VALUES[a]] for a in names]
    psi = np.zeros(count)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, j in combinations_with_replacement(range(len(names)), 2):
            centred = k * total[f"{names[i]}_{names[j]}"] - sums[i] * sums[j]  # k² × covariance, exact
            weight = (1 if i == j else 2) * sign[i] * sign[j]
            psi += weight * _floats(centred) / (_floats(k) * _floats(sums[i]) * _floats(sums[j]))
    psi = np.maximum(psi, 0.0)  # a rounding below 0 where the samples are (nearly) alike
    d, dd = (np.bincount(groups, rows[c], minlength=count) for c in MOMENT_FLOATS)
    n, m, e, em = (_floats(v) for v in sums)
    return stats(Sums(_floats(k), (n, m, e, em), d, dd, psi), alternative)


def int_sums(values: npt.NDArray[Any], groups: npt.NDArray[np.int64], count: int) -> npt.NDArray[Any]:
    """Sums of integer values by group, exact (Python integers: products of sums pass 2**63)."""
    out = np.zeros(count, dtype=object)
    np.add.at(out, groups, values.astype(object))
    return out


def _floats(values: npt.NDArray[Any]) -> FloatArray:
    return values.astype(np.float64)


def stats(sums: Sums, alternative: Alternative) -> dict[str, list[float | None]]:
    """The `STATS` of each group from its `Sums`; None where undefined."""
    k, (n, m, e, em), dd = sums.k, sums.x, sums.dd
    df = np.maximum(k - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = e / n
        enrich = (em / m) / base
        p = _p_values(sums.d / np.sqrt(dd), df, alternative)
        se = np.sqrt(k / (k - 1) * sums.psi)
        half = special.stdtrit(df, (1 + CONFIDENCE) / 2) * se  # t(df).ppf
    has_enrich = (n > 0) & (e > 0) & (m > 0)
    has_interval = has_enrich & (em > 0) & (k >= 2)
    has_p = (n > 0) & (e > 0) & (e < n) & (k >= 2) & (dd > 0)
    values = (base, enrich, enrich * np.exp(-half), enrich * np.exp(half), p)
    valid = (n > 0, has_enrich, has_interval, has_interval, has_p)
    return {name: _nullable(v, ok) for name, v, ok in zip(STATS, values, valid, strict=True)}


# The `STATS` again without a group's fixed steps (analytics/positions.py's docstring).
WITHOUT_FIXED = {
    "baseline_share": "baseline_share_without_fixed",
    "enrichment": "enrichment_without_fixed",
    "enrichment_lo": "enrichment_without_fixed_lo",
    "enrichment_hi": "enrichment_without_fixed_hi",
    "p_value": "p_value_without_fixed",
}


def sample_rows(
    x: Columns,
    y: Columns,
    groups: npt.NDArray[np.int64],
    fixed: Sequence[list[int]],
    alternative: Alternative,
) -> dict[str, list[Any]]:
    """The early-share columns (analytics.positions.EARLY, but the labels) of each group of samples (columns
    x: n, m, e, em), and those without its fixed steps (columns y: the same less the tokens at them; a
    sample with none left is dropped)."""
    count = len(fixed)
    sums = [np.bincount(groups, minlength=count), *(np.bincount(groups, c, minlength=count) for c in x)]
    counts = {
        name: [int(v) for v in col] for name, col in zip(("samples", *SAMPLE_COLUMNS), sums, strict=True)
    }
    whole = window_stats(x, groups, count, alternative)
    return assembled(counts, whole, without_fixed(y, groups, fixed, alternative), fixed, alternative)


def without_fixed(
    y: Columns, groups: npt.NDArray[np.int64], fixed: Sequence[list[int]], alternative: Alternative
) -> dict[str, list[float | None]]:
    """`window_stats` of the samples (columns y) of groups with fixed steps that have tokens left."""
    kept = np.array([bool(f) for f in fixed], dtype=bool)[groups] & (y[0] > 0)
    if not kept.any():
        return {}
    return window_stats(tuple(c[kept] for c in y), groups[kept], len(fixed), alternative)  # type: ignore[arg-type]


def assembled(
    counts: dict[str, list[int]],
    whole: dict[str, list[float | None]],
    left: dict[str, list[float | None]],
    fixed: Sequence[list[int]],
    alternative: Alternative,
) -> dict[str, list[Any]]:
    """The early-share columns (but the labels) from each group's counts, its `STATS` and those without its
    fixed steps (`left`; None for a group without any)."""
    m, em = counts["mismatches"], counts["early_mismatches"]
    return {
        **counts,
        "mismatch_share": [b / a if a else None for a, b in zip(m, em, strict=True)],
        **whole,
        "alternative": [alternative] * len(fixed),
        "fixed_steps": [list(f) for f in fixed],
        **{
            WITHOUT_FIXED[name]: [
                v if f else None for v, f in zip(left.get(name, [None] * len(fixed)), fixed, strict=True)
            ]
            for name in STATS
        },
    }
