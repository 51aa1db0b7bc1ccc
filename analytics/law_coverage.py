"""How often a law's prediction interval covers a pair it was fitted without (`analytics.law_choice`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.law_choice import TooFewPairs, fit_cof


@dataclass(frozen=True)
class Coverage:
    """How many left-out pairs fell inside the prediction interval fitted without them."""

    covered: int
    total: int
    confidence: float

    @property
    def rate(self) -> float:
        """Share covered (NaN when no pair could be left out)."""
        return self.covered / self.total if self.total else float("nan")


def loo_coverage(
    llm_params: npt.ArrayLike,
    slm_params: npt.ArrayLike,
    cof: npt.ArrayLike,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    confidence: float = 0.9,
) -> Coverage:
    """Leave each pair out, refit (choice included) on the rest, and check the pair's prediction interval."""
    nl = np.asarray(llm_params, dtype=float).ravel()
    ns = np.asarray(slm_params, dtype=float).ravel()
    y = np.asarray(cof, dtype=float).ravel()
    covered = total = 0
    for i in range(y.size):
        keep = np.arange(y.size) != i
        try:
            fit = fit_cof(nl[keep], ns[keep], y[keep], bootstrap=bootstrap, seed=seed)
        except TooFewPairs:
            continue
        _, lo, hi, _ = fit.predict(float(nl[i]), float(ns[i]), confidence)
        if np.isfinite(lo):
            total += 1
            covered += int(lo <= y[i] <= hi)
    return Coverage(covered, total, confidence)
