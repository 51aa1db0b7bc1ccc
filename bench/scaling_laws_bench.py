"""How well `fit_cof` tells laws apart and how honest its prediction intervals are, on synthetic pairs.

    python bench/scaling_laws_bench.py --datasets 200 --noise 0.01

Pairs come from a Pythia-like family (8 sizes, 70M–12B: 28 pairs with N_LLM > N_SLM). For each generating
law, each synthetic table draws 12–20 of the pairs, adds Gaussian noise of known sd to CoF, and asks the
chooser which law it is; the remaining pairs are held out and predicted with the 90% interval. Also times
`fit_cof` with 1,000 bootstrap resamples (DESIGN §7: scaling fit with 1,000 resamples < 2 s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.scaling import fit_cof  # noqa: E402

SIZES = np.array([70e6, 160e6, 410e6, 1.0e9, 1.4e9, 2.8e9, 6.9e9, 12e9])
PAIRS = np.array([(hi, lo) for i, hi in enumerate(SIZES) for lo in SIZES[:i]])


def truth(form: str, nl: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """The generating laws; log_sizes is tuned to the paper's 32B/14B 0.066 and 1.8B/0.5B 0.101."""
    r = nl / ns
    if form == "power_ratio":
        return -0.15 * r**-0.6 + 0.2
    if form == "log_ratio":
        return 0.05 + 0.02 * np.log(r)
    if form == "log_sizes":
        c = (0.066 - 0.101 - 0.02 * np.log(32 / 1.8)) / np.log(14 / 0.5)
        return 0.101 + 0.02 * np.log(nl / 1.8e9) + c * np.log(ns / 0.5e9)
    return np.full(r.shape, 0.12)


def one_table(form: str, rng: np.random.Generator, noise: float, bootstrap: int) -> tuple[str, int, int, int]:
    """(chosen law, held-out pairs covered, held out, pairs used) for one synthetic table."""
    n = int(rng.integers(12, 21))
    order = rng.permutation(len(PAIRS))
    fit_i, out_i = order[:n], order[n:]
    nl, ns = PAIRS[:, 0], PAIRS[:, 1]
    y = truth(form, nl, ns) + rng.normal(0, noise, len(PAIRS))
    fit = fit_cof(nl[fit_i], ns[fit_i], y[fit_i], bootstrap=bootstrap, seed=int(rng.integers(1 << 30)))
    _, lo, hi = fit.band(nl[out_i], ns[out_i], 0.9)
    covered = int(((lo <= y[out_i]) & (y[out_i] <= hi)).sum())
    return fit.form, covered, len(out_i), n


def main() -> None:
    """Print choice rates, coverage and timing."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=200, help="synthetic tables per generating law")
    parser.add_argument("--noise", type=float, default=0.01, help="sd of the noise added to CoF")
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples per fit for the intervals")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    forms = ("power_ratio", "log_ratio", "log_sizes", "constant")
    print(
        f"{args.datasets} tables per law, 12-20 pairs each, noise sd {args.noise}, {args.bootstrap} resamples"
    )
    print("| generating law | chosen correctly | chosen instead (count) | 90% interval coverage |")
    print("|---|---|---|---|")
    for form in forms:
        chosen: dict[str, int] = {}
        covered = total = 0
        for _ in range(args.datasets):
            got, cov, out, _ = one_table(form, rng, args.noise, args.bootstrap)
            chosen[got] = chosen.get(got, 0) + 1
            covered, total = covered + cov, total + out
        rate = chosen.get(form, 0) / args.datasets
        others = ", ".join(f"{k} {v}" for k, v in sorted(chosen.items()) if k != form) or "–"
        print(f"| {form} | {rate:.1%} | {others} | {covered / total:.1%} ({covered}/{total}) |")
    big = np.concatenate([PAIRS, PAIRS * 1.01])[:45]
    y = truth("power_ratio", big[:, 0], big[:, 1]) + rng.normal(0, args.noise, 45)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        fit_cof(big[:, 0], big[:, 1], y, bootstrap=1000)
        times.append(time.perf_counter() - started)
    print(
        f"\nfit_cof, 45 pairs, 1,000 resamples (4 laws): "
        f"median {np.median(times):.3f} s, best {min(times):.3f} s"
    )


if __name__ == "__main__":
    main()
