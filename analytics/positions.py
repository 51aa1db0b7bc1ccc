"""Where interventions fall: mismatch share by relative-position decile, and the early share vs uniform.

The early-share test treats the sample as the unit (tokens of one sample are not independent): per sample,
d_i = early mismatches − mismatches × (early tokens / tokens) has mean 0 when mismatches fall uniformly
within each sample; the score statistic Σ d_i / √(Σ d_i²) is tested against Student's t(k − 1),
two-sided unless `alternative` says otherwise. The enrichment (early share of mismatches over early share
of tokens) gets a percentile interval from a bootstrap by sample.

Positions fixed by the prompt format: a step (among the first `FIXED_STEPS`) that never mismatches in any
sample of a group although the group's CoF would give it at least one mismatch with probability 99% (the
zoo's first token, whose answer always opens the same way) is named in `fixed_steps`, and the statistic
is given again with those steps left out of both the window and the sample (`*_without_fixed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import stats

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    ConflictingParameters,
    Filters,
    Source,
    check_group_by,
    events_where,
    group_select,
    profile_sums,
    query,
    runs_where,
)
from warehouse.summaries import REL_POS_CELLS

Alternative = Literal["two-sided", "greater", "less"]
FIXED_STEPS = 8  # the first steps checked for a position the prompt format fixes
FIXED_P = 0.01  # a step is fixed when zero mismatches in its tokens had this probability or less
BOOTSTRAP = 1000  # resamples of the samples behind the enrichment's interval
RESAMPLE_DRAWS = 2_000_000  # row draws per chunk of resamples (bounds the bootstrap's memory)
CONFIDENCE = 0.95
TEST_LABEL = "early share of mismatches vs share of tokens: score test clustered by sample, t(k − 1)"


# The columns `position_profile` returns after its group-by columns.
DECILES = FrameSchema.of(
    bin=Col(int, "decile 0..9 of the relative position in the sample"),
    tokens=Col(int),
    mismatches=Col(int),
    mismatch_rate=Col(float),
    mismatch_share=Col(float, "share of the group's mismatches in this decile"),
    token_share=Col(float, "share of the group's tokens (the uniform baseline)"),
)


def position_profile(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Per group and relative-position decile: tokens, mismatch rate, share of the group's mismatches."""
    cols = check_group_by(group_by)
    sums = profile_sums(source, "position_profile", ["bin"], cols, filters)
    return DECILES.select(with_shares(sums, cols), cols)


def with_shares(sums: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Add mismatch rate, mismatch share and token share (the uniform baseline) within each group."""
    over = list(keys)
    return sums.with_columns(
        (pl.col("mismatches") / pl.col("tokens")).alias("mismatch_rate"),
        pl.when(pl.col("mismatches").sum().over(over) > 0)
        .then(pl.col("mismatches") / pl.col("mismatches").sum().over(over))
        .alias("mismatch_share"),
        (pl.col("tokens") / pl.col("tokens").sum().over(over)).alias("token_share"),
    )


def _early_condition(k: int | None, fraction: float | None) -> tuple[str, list[object], str]:
    """SQL condition on token_events `e` selecting the early window, its parameters and its label."""
    if k is not None and fraction is not None:
        raise ConflictingParameters(
            "give either k (first k tokens) or fraction (first share of each sample), not both"
        )
    if k is not None:
        if k < 1:
            raise AnalyticsError(f"k must be at least 1, got {k}")
        return "e.step < ?", [k], f"first {k} tokens"
    frac = 0.1 if fraction is None else fraction
    if not 0 < frac < 1:
        raise AnalyticsError(f"fraction must lie in (0, 1), got {frac}")
    cells = frac * REL_POS_CELLS
    if abs(cells - round(cells)) < 1e-9:  # on the summaries' 0.001 grid: the same cells they count
        cond = f"floor(CAST(e.rel_pos AS DOUBLE) * {REL_POS_CELLS}) < ?"
        return cond, [round(cells)], f"first {frac:.0%} of tokens"
    return "e.rel_pos < ?", [frac], f"first {frac:.0%} of tokens"


STEP_COUNTS = ("at", "miss_at", "early_at")  # per sample and step: tokens, mismatches, tokens in the window


def _step_columns(cond: str) -> str:
    """Per-sample counts of each of the first FIXED_STEPS steps: tokens, mismatches, tokens in the window."""
    return ", ".join(
        f"count_if(e.step = {s}) AS at_{s}, count_if(e.step = {s} AND e.mismatch) AS miss_at_{s}, "
        f"count_if(e.step = {s} AND {cond}) AS early_at_{s}"
        for s in range(FIXED_STEPS)
    )


def sample_windows(
    source: Source, group_by: Sequence[str], k: int | None, fraction: float | None, filters: Filters | None
) -> pl.DataFrame:
    """One row per sample: its group, tokens and mismatches (`sample_sums`), the early window's tokens and
    mismatches, and its tokens at each of the first FIXED_STEPS steps (in the window and at all)."""
    cond, cond_params, _ = _early_condition(k, fraction)
    cols = check_group_by(group_by)
    ev_where, ev_params = events_where(filters)
    where, params = runs_where(filters)
    steps = ", ".join(f"CAST(coalesce(w.{c}_{s}, 0) AS BIGINT) AS {c}_{s}"
                      for s in range(FIXED_STEPS) for c in STEP_COUNTS)  # fmt: skip
    scan_where = f"WHERE e.step < {FIXED_STEPS} OR {cond}"
    sem = ev_where.replace("WHERE", "AND", 1) if ev_where else ""
    return query(
        source,
        f"""WITH w AS (
                SELECT e.run_id, e.sample_id, count_if({cond}) AS early_tokens,
                       count_if(e.mismatch AND {cond}) AS early_mismatches, {_step_columns(cond)}
                FROM token_events e {scan_where} {sem} GROUP BY ALL
            )
            SELECT {group_select(cols)},
                   CAST(e.tokens AS BIGINT) AS tokens, CAST(e.mismatches AS BIGINT) AS mismatches,
                   CAST(coalesce(w.early_tokens, 0) AS BIGINT) AS early_tokens,
                   CAST(coalesce(w.early_mismatches, 0) AS BIGINT) AS early_mismatches, {steps}
            FROM sample_sums e JOIN runs r ON r.run_id = e.run_id
            LEFT JOIN w ON w.run_id = e.run_id AND w.sample_id = e.sample_id
            {where} ORDER BY e.run_id, e.sample_id""",
        [*cond_params, *cond_params, *[p for _ in range(FIXED_STEPS) for p in cond_params],
         *cond_params, *ev_params, *params],
    )  # fmt: skip


def early_share(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    k: int | None = None,
    fraction: float | None = None,
    filters: Filters | None = None,
    alternative: Alternative = "two-sided",
    seed: int = 0,
) -> pl.DataFrame:
    """Share of mismatches in the first k tokens (or first fraction, default 10%) vs the uniform baseline,
    tested clustered by sample, with the enrichment's interval, and without the steps the format fixes."""
    _, _, label = _early_condition(k, fraction)
    cols = list(check_group_by(group_by))
    samples = sample_windows(source, cols, k, fraction, filters)
    rows = [
        {**dict(zip(cols, key, strict=True)), **early_share_row(part, alternative, seed)}
        for key, part in samples.group_by(cols, maintain_order=True)
    ]
    schema = {c: samples.schema[c] for c in cols} | EARLY.polars(leave_out=LABELS)
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    labelled = frame.sort(cols).with_columns(pl.lit(label).alias("window"), pl.lit(TEST_LABEL).alias("test"))
    return EARLY.select(labelled, tuple(cols))


# The columns `early_share` returns after its group-by columns.
EARLY = FrameSchema.of(
    **dict.fromkeys(("samples", "tokens", "mismatches", "early_tokens", "early_mismatches"), Col(int)),
    mismatch_share=Col(float),
    baseline_share=Col(float, "the window's share of tokens (uniform baseline)"),
    enrichment=Col(float, "mismatch_share / baseline_share"),
    enrichment_lo=Col(float, f"{CONFIDENCE:.0%} interval of enrichment: bootstrap by sample"),
    enrichment_hi=Col(float),
    p_value=Col(float, "score test clustered by sample, t(samples − 1)"),
    alternative=Col(str),
    fixed_steps=Col(
        list[int],
        "steps no sample mismatches at though the group's CoF makes that unlikely "
        f"(p ≤ {FIXED_P}): fixed by the prompt format",
    ),
    baseline_share_without_fixed=Col(float, "as above, fixed steps left out"),
    **dict.fromkeys(
        ("enrichment_without_fixed", "enrichment_without_fixed_lo", "enrichment_without_fixed_hi"), Col(float)
    ),
    p_value_without_fixed=Col(float),
    window=Col(str),
    test=Col(str, "what p_value tests, and how"),
)
LABELS = ("window", "test")  # the same on every row: set after the rows are computed


WITHOUT_FIXED = tuple(k for k in EARLY.names if k.endswith("_without_fixed") or "_without_fixed_" in k)


def fixed_steps(part: pl.DataFrame) -> list[int]:
    """Steps among the first FIXED_STEPS that no sample of the group mismatches at although the group's
    CoF would give them a mismatch with probability ≥ 1 − FIXED_P: positions the prompt format fixes."""
    tokens, mismatches = int(part["tokens"].sum()), int(part["mismatches"].sum())
    if tokens == 0 or mismatches == 0:
        return []
    rate = mismatches / tokens
    out = []
    for s in range(FIXED_STEPS):
        n = int(part[f"at_{s}"].sum())
        if n and int(part[f"miss_at_{s}"].sum()) == 0 and (1 - rate) ** n <= FIXED_P:
            out.append(s)
    return out


def _score_p(d: npt.NDArray[np.float64], alternative: Alternative) -> float | None:
    """p-value of Σ d_i = 0 by the self-normalised score Σ d_i / √(Σ d_i²) against t(k − 1)."""
    if d.size < 2 or not np.any(d):
        return None
    t = float(d.sum() / np.sqrt((d**2).sum()))
    dist = stats.t(d.size - 1)
    if alternative == "greater":
        return float(dist.sf(t))
    if alternative == "less":
        return float(dist.cdf(t))
    return float(min(1.0, 2 * dist.sf(abs(t))))


def _resampled_sums(x: npt.NDArray[np.float64], seed: int, resamples: int) -> npt.NDArray[np.float64]:
    """Column sums of `resamples` bootstrap resamples of the rows of x [k, c]: [resamples, c].

    Each resample's weights are the counts of k uniform row draws (multinomial(k, 1/k), as a bootstrap
    by sample wants), counted with one bincount per chunk: `rng.multinomial` over k = 10,000 samples took
    2.4 s for 1,000 resamples, this 0.1-0.6 s."""
    k = x.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, RESAMPLE_DRAWS // k)
    out = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, k, size=(rows, k)) + (np.arange(rows) * k)[:, None]
        out.append(np.bincount(draws.ravel(), minlength=rows * k).reshape(rows, k) @ x)
    return np.concatenate(out)


def _enrichment_interval(
    x: npt.NDArray[np.float64], seed: int, resamples: int
) -> tuple[float | None, float | None]:
    """Percentile interval of (Σ em / Σ m) / (Σ e / Σ n) over a bootstrap by sample; x: [k, 4] columns
    n, m, e, em."""
    k = x.shape[0]
    if k < 2 or resamples < 1:
        return None, None
    n, m, e, em = _resampled_sums(x, seed, resamples).T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (em / m) / (e / n)
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size < resamples // 2:
        return None, None
    lo, hi = np.quantile(ratio, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(lo), float(hi)


def _window_stats(
    x: npt.NDArray[np.float64], alternative: Alternative, seed: int, resamples: int
) -> tuple[float | None, float | None, float | None, float | None, float | None]:
    """(baseline share, enrichment, its interval, p-value) of per-sample columns n, m, e, em."""
    n, m, e, em = x.sum(0)
    base = e / n if n else None
    enrich = (em / m) / base if m and base else None
    lo, hi = _enrichment_interval(x, seed, resamples) if enrich is not None else (None, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = x[:, 3] - x[:, 1] * np.where(x[:, 0] > 0, x[:, 2] / x[:, 0], 0.0)
    p = _score_p(d, alternative) if base is not None and 0 < base < 1 else None
    return base, enrich, lo, hi, p


def early_share_row(
    part: pl.DataFrame, alternative: Alternative = "two-sided", seed: int = 0, resamples: int = BOOTSTRAP
) -> dict[str, object]:
    """The early-share figures of one group of samples (`sample_windows` rows); `resamples` = 0: no
    interval."""
    x = part.select("tokens", "mismatches", "early_tokens", "early_mismatches").to_numpy().astype(float)
    n, m, e, em = (int(v) for v in x.sum(0))
    base, enrich, lo, hi, p = _window_stats(x, alternative, seed, resamples)
    fixed = fixed_steps(part)
    plain: dict[str, object] = {
             "samples": part.height, "tokens": n, "mismatches": m, "early_tokens": e, "early_mismatches": em,
             "mismatch_share": em / m if m else None, "baseline_share": base, "enrichment": enrich,
             "enrichment_lo": lo, "enrichment_hi": hi, "p_value": p, "alternative": alternative,
             "fixed_steps": fixed}  # fmt: skip
    without: dict[str, float | None] = dict.fromkeys(WITHOUT_FIXED)
    if fixed:  # fixed steps carry no mismatch: drop their tokens from the sample and from the window
        at = part.select(pl.sum_horizontal(f"at_{s}" for s in fixed)).to_numpy().ravel()
        early_at = part.select(pl.sum_horizontal(f"early_at_{s}" for s in fixed)).to_numpy().ravel()
        y = x - np.stack([at, np.zeros_like(at), early_at, np.zeros_like(at)], axis=1)
        b, en, lo2, hi2, p2 = _window_stats(y[y[:, 0] > 0], alternative, seed, resamples)
        without = {"baseline_share_without_fixed": b, "enrichment_without_fixed": en,
                   "enrichment_without_fixed_lo": lo2, "enrichment_without_fixed_hi": hi2,
                   "p_value_without_fixed": p2}  # fmt: skip
    return plain | without
