"""Where interventions fall: mismatch share by relative-position decile, and the early share vs uniform.

The early-share test treats the sample as the unit (tokens of one sample are not independent): per sample,
d_i = early mismatches − mismatches × (early tokens / tokens) has mean 0 when mismatches fall uniformly
within each sample; the score statistic Σ d_i / √(Σ d_i²) is tested against Student's t(k − 1),
two-sided unless `alternative` says otherwise. The enrichment R = (EM / M) / (E / N) (early mismatches over
mismatches, early tokens over tokens, summed over the k samples) gets a cluster-robust interval by the delta
method on log R: each sample's influence is ψ_i = em_i/EM − m_i/M − e_i/E + n_i/N, var(log R) =
k/(k − 1) · Σ ψ_i², and the interval is R · exp(± t(k − 1) · se), the ratio-estimator interval CoF has
(analytics/frequency.py), taken on the log scale so that it stays positive.

Positions fixed by the prompt format: a step (among the first `FIXED_STEPS`) that never mismatches in any
sample of a group although the group's CoF would give it at least one mismatch with probability 99% (the
zoo's first token, whose answer always opens the same way) is named in `fixed_steps`, and the statistic
is given again with those steps left out of both the window and the sample (`*_without_fixed`).

Reading, exact for every window: the runs in scope with their per-decile and first-step counts
(`position_sums`, `histogram_sums`) in one query, which also tell each group's fixed steps; then in one more
each sample's tokens and mismatches in the window from `sample_sums`, whose columns count the first k tokens
for k ≤ 16 and the first 5%, 10%, 20% and 25% on the 0.001 rel_pos grid (`EARLY_WINDOWS`), or from a scan of
`token_events` for any other window, and where its group has fixed steps its tokens at them (and in the
window) from `step_sums`, or from the events for a fraction off the grid. The interval replaced a
1,000-resample bootstrap by sample (O(resamples × samples): 0.6 s for 4 groups of 10,000 samples); it agrees
with one where samples are many (tests).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    ConflictingParameters,
    Filters,
    Source,
    check_group_by,
    connect,
    group_select,
    query_arrays,
    run_column_dtype,
    runs_where,
)
from analytics.window_stats import (
    CONFIDENCE,
    SAMPLE_COLUMNS,
    Alternative,
    Columns,
    assembled,
    int_sums,
    moment_stats,
    sample_rows,
)
from warehouse.summaries import (
    EARLY_WINDOWS,
    FIRST_STEPS,
    MOMENT_SUMS,
    REL_POS_CELLS,
    cell_window,
    step_window,
)

FIXED_STEPS = FIRST_STEPS  # the first steps checked for a position the prompt format fixes (step_sums)
MOMENTS_FROM_RUNS = 2  # scopes of this many runs or more read `window_moments` (`_early_share`)
FIXED_P = 0.01  # a step is fixed when zero mismatches in its tokens had this probability or less
TEST_LABEL = "early share of mismatches vs share of tokens: score test clustered by sample, t(k − 1)"
INTERVAL_LABEL = f"{CONFIDENCE:.0%} interval by sample: delta method on log enrichment, t(samples − 1)"


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
    return _deciles(_scope(source, check_group_by(group_by), filters))


def run_rows(source: Source, group_by: Sequence[str], filters: Filters | None) -> dict[str, npt.NDArray[Any]]:
    """The runs in scope that have events (`of_run`) with their group, and their tokens and mismatches per
    decile of relative position (`decile` true, `bin` 0..9: `position_sums`) and per first step (`decile`
    false, `bin` 0..FIXED_STEPS − 1: `histogram_sums`); a column with nulls is a masked array."""
    where, params = runs_where(filters)
    sql = f"""SELECT r.run_id AS of_run, {group_select(group_by)}, c.decile, c.bin, c.tokens, c.mismatches
              FROM runs r JOIN (
                  SELECT run_id, true AS decile, bin, tokens, mismatches FROM position_sums
                  UNION ALL
                  SELECT run_id, false, cell, tokens, mismatches FROM histogram_sums
                  WHERE feature = 'step' AND cell BETWEEN 0 AND {FIXED_STEPS - 1}
              ) c ON c.run_id = r.run_id
              {where}"""
    return query_arrays(source, sql, params)


IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scope:
    """The runs in scope that have events, in groups: `run_rows` read once into arrays (a few hundred rows:
    NumPy and Python where polars spent a millisecond an operation).

    `keys` are the groups' values of the group-by columns `cols` (polars types `schema`), in the order the
    early-share rows take (nulls first); `runs` maps each run to its group's index in `keys`. Each run row
    has its group, whether it counts a decile (or else a first step), its bin and its counts."""

    cols: tuple[str, ...]
    schema: dict[str, pl.DataType]
    keys: list[tuple[Any, ...]]
    runs: dict[int, int]
    group: IntArray
    decile: npt.NDArray[np.bool_]
    bin: IntArray
    tokens: IntArray
    mismatches: IntArray


_NAN = float("nan")  # one NaN object: a NaN group value keys one group, as in polars


def _order(key: tuple[Any, ...], nulls_last: bool) -> tuple[tuple[Any, ...], ...]:
    """Sort key of a group's values as polars sorts them: nulls first (or last), NaN above every number."""
    return tuple(
        (nulls_last,) if v is None else (not nulls_last, v is _NAN, 0.0 if v is _NAN else v) for v in key
    )


def _values(column: npt.NDArray[Any]) -> list[Any]:
    """A group-by column's values (None where null), each NaN the one `_NAN`."""
    values = column.tolist()
    if column.dtype.kind != "f":
        return values
    return [_NAN if v is not None and math.isnan(v) else v for v in values]


def _scope(source: Source, cols: tuple[str, ...], filters: Filters | None) -> Scope:
    """`run_rows` of the runs in scope, in groups (`Scope`)."""
    rows = run_rows(source, cols, filters)
    of_run = rows["of_run"].tolist()
    key_of = dict(zip(of_run, zip(*(_values(rows[c]) for c in cols), strict=True), strict=True))
    keys = sorted(set(key_of.values()), key=lambda k: _order(k, nulls_last=False))
    index = {k: g for g, k in enumerate(keys)}
    runs = {r: index[k] for r, k in key_of.items()}
    return Scope(
        cols=cols,
        schema={c: run_column_dtype(c) for c in cols},
        keys=keys,
        runs=runs,
        group=np.array([runs[r] for r in of_run], dtype=np.int64),
        decile=rows["decile"].astype(bool),
        bin=rows["bin"].astype(np.int64),
        tokens=rows["tokens"].astype(np.int64),
        mismatches=rows["mismatches"].astype(np.int64),
    )


def _key_columns(scope: Scope, groups: Sequence[int]) -> dict[str, list[Any]]:
    """The group-by columns of rows of the given groups."""
    return {c: [scope.keys[g][i] for g in groups] for i, c in enumerate(scope.cols)}


def _deciles(scope: Scope) -> pl.DataFrame:
    """`position_profile` of a `Scope`: its decile rows summed by group and bin, in the order of the group
    (nulls last) and the bin, with the shares within each group."""
    count = len(scope.keys)
    order = sorted(range(count), key=lambda g: _order(scope.keys[g], nulls_last=True))
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count)
    at = scope.decile
    bins = scope.bin[at]
    low = int(bins.min(initial=0))
    span = int(bins.max(initial=0)) - low + 1
    cells, cell_of = np.unique(rank[scope.group[at]] * span + (bins - low), return_inverse=True)
    tokens, mismatches = (
        np.bincount(cell_of, v[at], len(cells)).astype(np.int64) for v in (scope.tokens, scope.mismatches)
    )
    group = np.asarray(order, dtype=np.int64)[cells // span]
    t_sum, m_sum = (np.bincount(group, v, count)[group] for v in (tokens, mismatches))
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = {
            "mismatch_rate": mismatches / tokens,
            "mismatch_share": pl.Series(np.where(m_sum > 0, mismatches / m_sum, np.nan), nan_to_null=True),
            "token_share": tokens / t_sum,
        }
    data = {"bin": cells % span + low, "tokens": tokens, "mismatches": mismatches, **shares}
    schema = {**scope.schema, "bin": pl.Int32(), **DECILES.polars(leave_out=("bin",))}
    return pl.DataFrame({**_key_columns(scope, group.tolist()), **data}, schema=schema)


def positions(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    k: int | None = None,
    fraction: float | None = None,
    filters: Filters | None = None,
    alternative: Alternative = "two-sided",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`position_profile` and `early_share` of the same runs, reading the runs in scope once."""
    window = early_window(k, fraction)
    cols = check_group_by(group_by)
    with connect(source) as con:
        scope = _scope(con, cols, filters)
        return _deciles(scope), _early_share(con, scope, window, alternative, from_events=False)


@dataclass(frozen=True)
class Window:
    """An early window: its condition on token_events `e` (and the condition's parameters), on step_sums `s`
    (None off the 0.001 rel_pos grid), the `sample_sums` window that counts it (None: counted from the
    events), and its label."""

    events: str
    params: tuple[object, ...]
    steps: str | None
    served: str | None
    label: str


def early_window(k: int | None, fraction: float | None) -> Window:
    """The early window asked for: the first k tokens, or the first fraction of each sample (default 0.1)."""
    if k is not None and fraction is not None:
        raise ConflictingParameters(
            "give either k (first k tokens) or fraction (first share of each sample), not both"
        )
    if k is not None:
        if k < 1:
            raise AnalyticsError(f"k must be at least 1, got {k}")
        served = step_window(k) if step_window(k) in EARLY_WINDOWS else None
        return Window("e.step < ?", (k,), f"s.step < {int(k)}", served, f"first {k} tokens")
    frac = 0.1 if fraction is None else fraction
    if not 0 < frac < 1:
        raise AnalyticsError(f"fraction must lie in (0, 1), got {frac}")
    label, cells = f"first {frac:.0%} of tokens", frac * REL_POS_CELLS
    if abs(cells - round(cells)) < 1e-9:  # on the 0.001 grid: whole rel_pos cells, as the summaries count
        c = round(cells)
        cond = f"floor(CAST(e.rel_pos AS DOUBLE) * {REL_POS_CELLS}) < ?"
        served = cell_window(c) if cell_window(c) in EARLY_WINDOWS else None
        return Window(cond, (c,), f"s.cell < {c}", served, label)
    return Window("e.rel_pos < ?", (frac,), None, None, label)


def in_runs(runs: Sequence[int], column: str = "run_id") -> str:
    """A condition that holds for exactly `runs` (ids of the warehouse, as literals), within their span so
    that a table kept in run order reads only the span's row groups."""
    if not runs:
        return "FALSE"
    ids = sorted({int(r) for r in runs})
    return f"{column} BETWEEN {ids[0]} AND {ids[-1]} AND {column} IN ({', '.join(map(str, ids))})"


def _samples_sql(
    runs: Sequence[int], window: Window, from_events: bool, ids: bool
) -> tuple[str, list[object]]:
    """Per sample of `runs`: its run (`of_run`), with `ids` its `sample_id`, tokens and mismatches, and those
    in the window (`sample_sums`, from the events where it does not count the window or `from_events`)."""
    if window.served is not None and not from_events:
        early = f"tokens_{window.served} AS early_tokens, mismatches_{window.served} AS early_mismatches"
        cols = f"run_id AS of_run{', sample_id' if ids else ''}, tokens, mismatches, {early}"
        return f"SELECT {cols} FROM sample_sums WHERE {in_runs(runs)}", []
    sql = f"""SELECT ss.run_id AS of_run{", ss.sample_id" if ids else ""}, ss.tokens, ss.mismatches,
                     CAST(coalesce(w.tokens, 0) AS BIGINT) AS early_tokens,
                     CAST(coalesce(w.mismatches, 0) AS BIGINT) AS early_mismatches
              FROM sample_sums ss LEFT JOIN (
                  SELECT e.run_id, e.sample_id, count(*) AS tokens, count_if(e.mismatch) AS mismatches
                  FROM token_events e WHERE {in_runs(runs, "e.run_id")} AND {window.events} GROUP BY ALL
              ) w ON w.run_id = ss.run_id AND w.sample_id = ss.sample_id
              WHERE {in_runs(runs, "ss.run_id")} ORDER BY ss.run_id, ss.sample_id"""
    return sql, list(window.params)


def _fixed_sql(
    pairs: Sequence[tuple[int, int]], window: Window, from_events: bool
) -> tuple[str, list[object]]:
    """Per sample (`of_run`, `sample_id`), summed over the (run, step) pairs of its run: its tokens at those
    steps (`at`) and those of them in the window (`early_at`), from `step_sums` (the events off the grid)."""
    values = ", ".join(f"({int(r)}, {int(s)})" for r, s in pairs)
    if window.steps is not None and not from_events:
        sql = f"""SELECT s.run_id AS of_run, s.sample_id, CAST(sum(s.tokens) AS BIGINT) AS at,
                         CAST(coalesce(sum(s.tokens) FILTER (WHERE {window.steps}), 0) AS BIGINT) AS early_at
                  FROM step_sums s JOIN (VALUES {values}) f(run_id, step) USING (run_id, step) GROUP BY ALL"""
        return sql, []
    sql = f"""SELECT e.run_id AS of_run, e.sample_id, count(*) AS at, count_if({window.events}) AS early_at
              FROM token_events e JOIN (VALUES {values}) f(run_id, step) USING (run_id, step) GROUP BY ALL"""
    return sql, list(window.params)


def sample_windows(
    source: Source,
    runs: Sequence[int],
    window: Window,
    pairs: Sequence[tuple[int, int]] = (),
    *,
    from_events: bool = False,
) -> dict[str, npt.NDArray[np.int64]]:
    """Per sample of `runs`: its run (`of_run`), tokens and mismatches, and those in the window
    (`sample_sums`, from the events where it does not count the window or `from_events`); with `pairs` (run,
    fixed step) also its tokens at its run's fixed steps (`at`) and those of them in the window
    (`early_at`), from `step_sums` (the events off the grid), in the same query."""
    samples, params = _samples_sql(runs, window, from_events, ids=bool(pairs))
    if not pairs:
        return query_arrays(source, samples, params)
    fixed, fixed_params = _fixed_sql(pairs, window, from_events)
    sql = f"""SELECT x.of_run, {", ".join(f"x.{c}" for c in SAMPLE_COLUMNS)},
                     coalesce(f.at, 0) AS at, coalesce(f.early_at, 0) AS early_at
              FROM ({samples}) x LEFT JOIN ({fixed}) f ON f.of_run = x.of_run AND f.sample_id = x.sample_id"""
    return query_arrays(source, sql, [*params, *fixed_params])


def early_share(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    k: int | None = None,
    fraction: float | None = None,
    filters: Filters | None = None,
    alternative: Alternative = "two-sided",
    from_events: bool = False,
) -> pl.DataFrame:
    """Share of mismatches in the first k tokens (or first fraction, default 10%) vs the uniform baseline,
    tested clustered by sample, with the enrichment's interval, and without the steps the format fixes;
    `from_events` counts the windows from token_events instead of the summaries (the same answer)."""
    window = early_window(k, fraction)
    cols = check_group_by(group_by)
    with connect(source) as con:
        return _early_share(con, _scope(con, cols, filters), window, alternative, from_events)


def _early_share(
    con: duckdb.DuckDBPyConnection, scope: Scope, window: Window, alternative: Alternative, from_events: bool
) -> pl.DataFrame:
    """`early_share` of the runs of a `Scope`: from their `window_moments` rows where the summaries count the
    window and no group has fixed steps (the test without them needs its samples' tokens at those steps),
    else from every sample's row (so too for one run: DuckDB reads its samples as fast as its 18 moments)."""
    fixed = _fixed(scope)
    count = len(scope.keys)
    if window.served is None or from_events or any(fixed) or len(scope.runs) < MOMENTS_FROM_RUNS:
        pairs = [(r, s) for r, g in scope.runs.items() for s in fixed[g]]
        samples = sample_windows(con, list(scope.runs), window, pairs, from_events=from_events)
        of = _group_of(scope.runs, samples["of_run"])
        x: Columns = tuple(samples[c].astype(np.float64) for c in SAMPLE_COLUMNS)  # type: ignore[assignment]
        y = (x[0] - samples["at"], x[1], x[2] - samples["early_at"], x[3]) if pairs else x
        rows = sample_rows(x, y, of, fixed, alternative)
    else:
        moments = window_moments(con, scope.runs.keys(), window.served)
        of = _group_of(scope.runs, moments["of_run"])
        counts = {c: [int(v) for v in int_sums(moments[c], of, count)] for c in ("samples", *SAMPLE_COLUMNS)}
        rows = assembled(counts, moment_stats(moments, of, count, alternative), {}, fixed, alternative)
    data = {
        **_key_columns(scope, range(count)),
        **rows,
        "window": [window.label] * count,
        "test": [TEST_LABEL] * count,
    }
    schema = {**scope.schema, **EARLY.polars()}
    by_row = list(zip(*(data[c] for c in schema), strict=True))  # by row: a third of building 22 columns
    return pl.DataFrame(by_row, schema=schema, orient="row")


def window_moments(source: Source, runs: Collection[int], window: str) -> dict[str, npt.NDArray[Any]]:
    """The `window_moments` rows of `runs` for a window the summaries count (its run as `of_run`)."""
    if not runs:
        return {c: np.zeros(0, dtype=np.int64) for c in ("of_run", *MOMENT_SUMS)}
    # The runs' span, then their own rows here: DuckDB planned a literal list of 40 ids in 0.4 ms.
    sql = f"""SELECT run_id AS of_run, {", ".join(MOMENT_SUMS)} FROM window_moments
              WHERE window_name = ? AND run_id BETWEEN ? AND ?"""
    rows = query_arrays(source, sql, [window, min(runs), max(runs)])
    keep = np.isin(rows["of_run"], np.fromiter(runs, dtype=np.int64, count=len(runs)))
    return {c: v[keep] for c, v in rows.items()}


def _group_of(runs: Mapping[int, int], of_run: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each row's group from its run (`runs`: run -> group; every row's run is among them)."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    low = min(runs)
    group = np.zeros(max(runs) - low + 1, dtype=np.int64)  # over the runs' span: a lookup, not a search
    group[np.array(list(runs), dtype=np.int64) - low] = list(runs.values())
    return group[of_run - low]


def _fixed(scope: Scope) -> list[list[int]]:
    """Each group's fixed steps, from its runs' per-step counts and their tokens and mismatches (the scope's
    step and decile rows: the deciles count every token once, as its samples do)."""
    count = len(scope.keys)
    at = np.zeros((count, FIXED_STEPS), dtype=np.int64)
    miss_at = np.zeros_like(at)
    step, decile = ~scope.decile, scope.decile
    np.add.at(at, (scope.group[step], scope.bin[step]), scope.tokens[step])
    np.add.at(miss_at, (scope.group[step], scope.bin[step]), scope.mismatches[step])
    n, m = (np.bincount(scope.group[decile], v[decile], count) for v in (scope.tokens, scope.mismatches))
    return [fixed_steps(int(n[g]), int(m[g]), list(at[g]), list(miss_at[g])) for g in range(count)]


# The columns `early_share` returns after its group-by columns.
EARLY = FrameSchema.of(
    **dict.fromkeys(("samples", "tokens", "mismatches", "early_tokens", "early_mismatches"), Col(int)),
    mismatch_share=Col(float),
    baseline_share=Col(float, "the window's share of tokens (uniform baseline)"),
    enrichment=Col(float, "mismatch_share / baseline_share"),
    enrichment_lo=Col(float, INTERVAL_LABEL),
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


def fixed_steps(tokens: int, mismatches: int, at: Sequence[int], miss_at: Sequence[int]) -> list[int]:
    """Steps among the first FIXED_STEPS (a group's tokens `at[s]` and mismatches `miss_at[s]` there) that no
    sample mismatches at although the group's CoF would give them a mismatch with probability ≥ 1 − FIXED_P:
    positions the prompt format fixes."""
    if tokens == 0 or mismatches == 0:
        return []
    rate = mismatches / tokens
    pairs = enumerate(zip(at, miss_at, strict=True))
    return [s for s, (n, m) in pairs if n and m == 0 and (1 - rate) ** n <= FIXED_P]


def early_share_row(
    part: pl.DataFrame, fixed: Sequence[int] = (), alternative: Alternative = "two-sided"
) -> dict[str, Any]:
    """The early-share figures of one group of samples given one row each (columns `SAMPLE_COLUMNS`, and
    `at_{s}` and `early_at_{s}`, its tokens at step s and those in the window, for each fixed step s)."""
    x: Columns = tuple(part[c].to_numpy().astype(np.float64) for c in SAMPLE_COLUMNS)  # type: ignore[assignment]
    at = sum((part[f"at_{s}"].to_numpy() for s in fixed), np.zeros(part.height))
    early_at = sum((part[f"early_at_{s}"].to_numpy() for s in fixed), np.zeros(part.height))
    y = (x[0] - at, x[1], x[2] - early_at, x[3])
    rows = sample_rows(x, y, np.zeros(part.height, dtype=np.int64), [list(fixed)], alternative)
    return {name: values[0] for name, values in rows.items()}
