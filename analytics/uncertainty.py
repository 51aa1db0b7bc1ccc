"""Does System 1's uncertainty predict a mismatch? Correlations, AUROC and mismatch rate by entropy bin.

Every predictor is oriented so that a larger value means a less certain System 1: entropy, 1 − max
probability, 1 − margin. DuckDB reduces the token events (or, by default, the grid cells `histogram_sums`
holds) to a histogram per (group, predictor, value); NumPy reduces that to a handful of sums per group
(Mann–Whitney U with ties counted half, the tie term of the rank variance, and the moments for the
point-biserial correlation) and turns those into statistics. So AUROC over 100M events never brings the
events into Python. On the grid each run's histogram of a predictor arrives packed in one BLOB
(`histogram_packs`, written at ingest) and NumPy sums the runs of a group: summing their ~3,000 cells a
run in DuckDB cost ~12 ms an answer over 40 runs, reading the packs ~0.6 ms. One statement
(`grouped_sql`) answers a request: the groups, the histograms and the entropy bins together (each
statement costs DuckDB milliseconds to plan, and each small polars operation a few tenths).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl

from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Filters,
    Source,
    check_group_by,
    connect,
    events_where,
    group_select,
    query,
    query_arrays,
    run_column_dtype,
    runs_where,
)
from warehouse.summaries import PREDICTOR_GRID

# name -> (SQL expression over token_events columns, histogram cells per unit when not exact); the grid is
# the warehouse's, whose `histogram_sums` table holds each run's counts per cell, written at ingest.
PREDICTORS: dict[str, tuple[str, int]] = dict(PREDICTOR_GRID)
STAT_SUMS = ("tokens", "mismatches", "u", "ties", "sx", "sxx", "sxy")
# The columns `mismatch_predictors` returns after its group-by columns.
PREDICTOR_STATS = FrameSchema.of(
    predictor=Col(str, "larger = less certain System 1"),
    tokens=Col(int),
    mismatches=Col(int),
    auroc=Col(float, "P(the predictor is larger at a mismatch than at a match): area under the ROC curve"),
    spearman=Col(float),
    point_biserial=Col(float),
)
# The columns `mismatch_by_entropy_bin` returns after its group-by columns.
ENTROPY_BINS = FrameSchema.of(
    bin=Col(int),
    lo=Col(float),
    hi=Col(float, "null for the open last bin"),
    tokens=Col(int),
    mismatches=Col(int),
    mismatch_rate=Col(float),
)


def check_predictors(predictors: Sequence[str]) -> tuple[str, ...]:
    """Validate predictor names."""
    names = (predictors,) if isinstance(predictors, str) else tuple(predictors)
    unknown = [p for p in names if p not in PREDICTORS]
    if unknown or not names:
        raise AnalyticsError(f"unknown predictor(s) {unknown or names}; choose from: {', '.join(PREDICTORS)}")
    return names


def histogram_sql(predictors: Sequence[str], filters: Filters | None) -> tuple[str, list[object]]:
    """SQL giving, per run, predictor (`code`: its place in `predictors`) and exact value `v`: tokens `n`
    and mismatches `pos` (a scan of the events of the runs in scope per predictor)."""
    ev_where, ev_params = events_where(filters)
    hist = " UNION ALL ".join(
        f"""SELECT e.run_id, {code} AS code, CAST({PREDICTORS[name][0]} AS DOUBLE) AS v,
                   count(*) AS n, count_if(e.mismatch) AS pos
            FROM token_events e {ev_where} GROUP BY ALL"""
        for code, name in enumerate(predictors)
    )
    return hist, [p for _ in predictors for p in ev_params]


def packs_sql(predictors: Sequence[str]) -> tuple[str, list[object]]:
    """SQL giving, per run and predictor (`code`), its grid histogram as packed at ingest: the first cell
    `lo`, the bytes per count `width` and the cells' (tokens, mismatches) `counts` (warehouse.summaries)."""
    codes = " ".join(f"WHEN ? THEN {code}" for code in range(len(predictors)))
    marks = ", ".join("?" for _ in predictors)
    packs = f"""SELECT run_id, CASE feature {codes} END AS code, lo, width, counts
                FROM histogram_packs WHERE feature IN ({marks})"""
    return packs, [*predictors, *predictors]


# The parts of `grouped_sql`'s answer, told apart by its `part` column (a histogram's part is the code of
# its predictor, 0 and up).
GROUPS, BINS = -2, -1


def scope_sql(group_by: Sequence[str], filters: Filters | None) -> tuple[str, list[object]]:
    """The runs in scope: `run_id`, their group (`gid`: groups numbered in ORDER BY order of the group-by
    columns, nulls last), the group's place when nulls sort first (`place`), and the group-by columns."""
    cols = check_group_by(group_by)
    where, params = runs_where(filters)
    keys = group_select(cols)
    first = ", ".join(f'r."{c}" NULLS FIRST' for c in cols)
    sql = f"""SELECT r.run_id, {keys}, CAST(dense_rank() OVER (ORDER BY {keys}) AS INTEGER) AS gid,
                     CAST(dense_rank() OVER (ORDER BY {first}) AS INTEGER) AS place
              FROM runs r {where}"""
    return sql, params


def grouped_sql(
    group_by: Sequence[str], filters: Filters | None, hist: tuple[str, list[object]] | None, bins: bool
) -> tuple[str, list[object]]:
    """One statement for an answer: the runs in scope (`scope_sql`: part GROUPS, `v` the place), the
    `entropy_profile` rows of each run (part BINS: `v` the bin, `n`, `pos`, `lo`, `hi`), and the `hist`
    rows (`histogram_sql`) summed per group, predictor and value."""
    cols = check_group_by(group_by)
    scope, params = scope_sql(cols, filters)
    none = ", ".join("NULL" for _ in cols)
    parts = [
        f"""SELECT {GROUPS} AS part, g.gid, CAST(g.place AS DOUBLE) AS v, NULL::DOUBLE AS n,
                   NULL::DOUBLE AS pos, NULL::DOUBLE AS lo, NULL::DOUBLE AS hi, {group_select(cols, "g")}
            FROM g"""
    ]
    if bins:
        parts.append(
            f"""SELECT {BINS}, g.gid, p.bin, p.tokens, p.mismatches, p.lo, p.hi, {none}
                FROM entropy_profile p JOIN g ON g.run_id = p.run_id"""
        )
    if hist is not None:
        # A group of one run (grouped by run_id) has its histogram already: no GROUP BY (a millisecond).
        one = "run_id" in cols
        n, pos, grouped = ("h.n", "h.pos", "") if one else ("sum(h.n)", "sum(h.pos)", "GROUP BY ALL")
        parts.append(
            f"""SELECT h.code, g.gid, CAST(h.v AS DOUBLE), CAST({n} AS DOUBLE), CAST({pos} AS DOUBLE),
                       NULL, NULL, {none}
                FROM ({hist[0]}) h JOIN g ON g.run_id = h.run_id {grouped}"""
        )
    sql = f"WITH g AS MATERIALIZED ({scope}) {' UNION ALL '.join(parts)}"
    return sql, [*params, *(hist[1] if hist is not None else [])]


def packed_sql(run_ids: Sequence[int], predictors: Sequence[str], bins: bool) -> tuple[str, list[object]]:
    """The rows of runs `run_ids` (the scope's, as values: DuckDB then plans no scope again and skips
    other runs' row groups): their `entropy_profile` rows (part BINS, as in `grouped_sql`) and their packs
    (`packs_sql`: part the code, `v` the pack's lo, `n` its width, and `counts`)."""
    marks = ", ".join("?" for _ in run_ids)
    packs, params = packs_sql(predictors)
    parts = [
        f"""SELECT code AS part, run_id, CAST(lo AS DOUBLE) AS v, CAST(width AS DOUBLE) AS n,
                   NULL::DOUBLE AS pos, NULL::DOUBLE AS lo, NULL::DOUBLE AS hi, counts
            FROM ({packs} AND run_id IN ({marks}))"""
    ]
    if bins:
        parts.append(
            f"""SELECT {BINS}, run_id, bin, tokens, mismatches, lo, hi, NULL
                FROM entropy_profile WHERE run_id IN ({marks})"""
        )
    return " UNION ALL ".join(parts), [*params, *run_ids, *(run_ids if bins else ())]


I64: TypeAlias = npt.NDArray[np.int64]
F64: TypeAlias = npt.NDArray[np.float64]
HistogramRows = tuple[I64, I64, F64, F64, F64]  # code, gid, v, n, pos


class Grouped:
    """An answer's runs in scope (`scope_sql`'s columns) and rows (`part`, `gid`, `v`, `n`, `pos`, `lo`,
    `hi`, and `counts` where the histograms are packs) as NumPy columns."""

    def __init__(
        self,
        runs: Mapping[str, npt.NDArray[Any]],
        rows: Mapping[str, npt.NDArray[Any]],
        group_by: Sequence[str],
    ) -> None:
        self.columns = rows  # DuckDB's fetchnumpy(): a column with nulls is a masked array
        self.part = np.asarray(rows["part"])
        self.gid = np.asarray(rows["gid"], dtype=np.int64)
        self.floats: dict[str, npt.NDArray[np.float64]] = {}
        gids, first = np.unique(np.asarray(runs["gid"]), return_index=True)  # gid = 1, 2, ... (a dense rank)
        self.place = np.zeros(len(gids) + 1, dtype=np.int64)  # by gid: the group's place, nulls first
        self.place[gids] = np.asarray(runs["place"])[first]
        # by gid - 1: the group-by columns (a few values: Python lists, not a polars frame per request)
        self.keys = {c: np.ma.asarray(runs[c])[first].tolist() for c in group_by}

    def column(self, name: str, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """A number column at `rows`, as floats (null: NaN)."""
        if name not in self.floats:
            self.floats[name] = np.ma.filled(np.ma.asarray(self.columns[name], dtype=np.float64), np.nan)
        return self.floats[name][rows]

    def histogram(self) -> HistogramRows:
        """The histogram rows: predictor code, gid, value `v`, tokens `n` and mismatches `pos`, one row per
        group, predictor and value (packs unpacked and summed per group; cells without tokens left out)."""
        rows = np.flatnonzero(self.part >= 0)
        code, gid = self.part[rows].astype(np.int64), self.gid[rows]
        if "counts" not in self.columns:
            return code, gid, self.column("v", rows), self.column("n", rows), self.column("pos", rows)
        lo, width = (self.column(c, rows).astype(np.int64).tolist() for c in ("v", "n"))
        blobs = np.ma.asarray(self.columns["counts"])[rows].tolist()
        return unpack(code.tolist(), gid.tolist(), lo, width, blobs, len(self.place) - 1)

    def group_keys(self, gid: npt.NDArray[np.int64]) -> list[pl.Series]:
        """The group-by columns of groups `gid`, a row each."""
        return [
            pl.Series(c, [values[i - 1] for i in gid.tolist()], dtype=run_column_dtype(c))
            for c, values in self.keys.items()
        ]


def unpack(
    code: list[int], gid: list[int], lo: list[int], width: list[int], blobs: list[bytes], groups: int
) -> HistogramRows:
    """Packed histograms (`histogram_packs`: a run's cells lo, lo + 1, ... as big-endian (tokens,
    mismatches) pairs of `width` bytes) summed per predictor code, gid and cell, in that order; cells
    without tokens left out. Each pack is added to its group's slice of one array per predictor: no
    array per cell is built (each costs a millisecond at 130,000 cells)."""
    out: list[tuple[npt.NDArray[Any], ...]] = []
    for c in sorted(set(code)):
        at = [i for i, ci in enumerate(code) if ci == c]
        counts = {i: np.frombuffer(blobs[i], dtype=f">i{width[i]}").reshape(-1, 2) for i in at}
        low = min(lo[i] for i in at)
        span = max(lo[i] + len(counts[i]) for i in at) - low
        acc = np.zeros((groups + 1, span, 2), dtype=np.int64)  # by gid (1, 2, ...), cell - low
        for i in at:
            acc[gid[i], lo[i] - low : lo[i] - low + len(counts[i])] += counts[i]
        flat = acc.reshape(-1, 2)
        kept = np.flatnonzero(flat[:, 0])
        g, cell = np.divmod(kept, span)
        out.append((np.full(len(kept), c), g, cell + low, flat[kept, 0], flat[kept, 1]))
    if not out:
        out.append(tuple(np.zeros(0, dtype=np.int64) for _ in range(5)))
    code_, gid_, *floats = (np.concatenate(column) for column in zip(*out, strict=True))
    cell_, n, pos = (x.astype(np.float64) for x in floats)  # integers below 2**53: exact
    return code_.astype(np.int64), gid_.astype(np.int64), cell_, n, pos


def fetch_grouped(
    source: Source,
    group_by: Sequence[str],
    filters: Filters | None,
    hist: tuple[str, list[object]] | None,
    bins: bool,
) -> Grouped:
    """Run `grouped_sql` (one statement)."""
    sql, params = grouped_sql(group_by, filters, hist, bins)
    columns = query_arrays(source, sql, params)
    at = np.flatnonzero(np.asarray(columns["part"]) == GROUPS)
    runs = {"gid": columns["gid"][at], "place": np.asarray(columns["v"])[at]}
    return Grouped({**runs, **{c: columns[c][at] for c in group_by}}, columns, group_by)


def fetch_packed(
    source: Source, group_by: Sequence[str], filters: Filters | None, predictors: Sequence[str], bins: bool
) -> Grouped:
    """The runs in scope (`scope_sql`), then their packs and entropy bins (`packed_sql`): two plain
    statements cost DuckDB less to plan than one that joins the scope to each part (~2 ms)."""
    with connect(source) as con:
        runs = query_arrays(con, *scope_sql(group_by, filters))
        ids = np.asarray(runs["run_id"], dtype=np.int64)
        if len(ids):
            rows = dict(query_arrays(con, *packed_sql(ids.tolist(), predictors, bins)))
        else:  # nothing in scope: no rows (and no empty IN list)
            rows = {c: np.zeros(0) for c in ("v", "n", "pos", "lo", "hi")}
            rows.update(part=np.zeros(0, dtype=np.int64), run_id=ids, counts=np.zeros(0, dtype=object))
    order = np.argsort(ids)
    at = order[np.searchsorted(ids[order], np.asarray(rows["run_id"], dtype=np.int64))]
    rows["gid"] = np.asarray(runs["gid"], dtype=np.int64)[at]
    return Grouped(runs, rows, group_by)


def rank_sums(grouped: Grouped, predictors: Sequence[str], exact: bool) -> dict[str, npt.NDArray[Any]]:
    """Per group and predictor (predictor-major, groups in their nulls-first order): Mann–Whitney U (ties
    count half), the rank tie term, and moments of x, from `grouped`'s histogram rows."""
    code, gid, v, n, pos = grouped.histogram()
    scale = np.array([1.0 if exact else float(PREDICTORS[p][1]) for p in predictors])
    missing = np.isnan(v) if exact else np.zeros(len(v), dtype=bool)  # ranks first, adds no moment
    x = np.where(missing, 0.0, v / scale[code])
    place = grouped.place[gid]
    if exact:
        order = np.lexsort((x, ~missing, place, code))
    else:  # one integer key sorts faster: (predictor, group, cell), and a cell orders as its x
        low, span = (int(v.min()), int(v.max() - v.min()) + 1) if len(v) else (0, 1)
        key = (code.astype(np.int64) * len(grouped.place) + place) * span + (v.astype(np.int64) - low)
        order = np.argsort(key, kind="stable")
    code, gid, place = code[order], gid[order], place[order]
    x, n, pos = x[order], n[order], pos[order]
    # Each (predictor, group) is a run of rows in x order: cumulative sums within each.
    new = np.r_[True, (code[1:] != code[:-1]) | (place[1:] != place[:-1])] if len(code) else code == 0
    starts = np.flatnonzero(new)
    seg = np.cumsum(new) - 1
    neg = n - pos
    cum = np.cumsum(neg)
    neg_below = cum - neg - np.repeat(cum[starts] - neg[starts], np.diff(np.r_[starts, len(seg)]))

    def total(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.bincount(seg, weights=values, minlength=len(starts)).astype(np.float64)

    return {
        "code": code[starts],
        "gid": gid[starts],
        "tokens": total(n),
        "mismatches": total(pos),
        "u": total(pos * (neg_below + 0.5 * neg)),
        "ties": total(n * n * n - n),
        "sx": total(n * x),
        "sxx": total(n * x * x),
        "sxy": total(pos * x),
    }


def statistics(sums: Mapping[str, npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[np.float64]]:
    """AUROC, Spearman and point-biserial correlation from rank and moment sums (NaN where undefined)."""
    n, n1 = np.asarray(sums["tokens"], dtype=np.float64), np.asarray(sums["mismatches"], dtype=np.float64)
    u, ties = np.asarray(sums["u"], dtype=np.float64), np.asarray(sums["ties"], dtype=np.float64)
    sx, sxx, sxy = (np.asarray(sums[c], dtype=np.float64) for c in ("sx", "sxx", "sxy"))
    with np.errstate(divide="ignore", invalid="ignore"):
        n0 = n - n1
        auroc = u / (n1 * n0)
        rank_sum_pos = u + n1 * (n1 + 1) / 2  # Mann–Whitney: U = R1 − n1(n1+1)/2
        mean_rank_gap = rank_sum_pos / n1 - (n * (n + 1) / 2 - rank_sum_pos) / n0
        rank_var = (n * n - 1) / 12 - ties / (12 * n)  # population variance of mid-ranks
        p = n1 / n
        spearman = mean_rank_gap * np.sqrt(p * (1 - p)) / np.sqrt(rank_var)
        cov = sxy / n - (sx / n) * p
        var_x = sxx / n - (sx / n) ** 2
        point_biserial = cov / np.sqrt(var_x * p * (1 - p))
    defined = (n1 > 0) & (n0 > 0)
    return {
        "auroc": np.where(defined, auroc, np.nan),
        "spearman": np.where(defined & (rank_var > 0), spearman, np.nan),
        "point_biserial": np.where(defined & (var_x > 0), point_biserial, np.nan),
    }


def statistics_from_sums(sums: pl.DataFrame) -> pl.DataFrame:
    """AUROC, Spearman and point-biserial correlation from per-group rank and moment sums (a frame)."""
    stats = statistics({c: sums[c].to_numpy() for c in STAT_SUMS})
    keys = [c for c in sums.columns if c not in STAT_SUMS]
    return sums.select(*keys, "tokens", "mismatches").with_columns(
        pl.Series(name, values, nan_to_null=True) for name, values in stats.items()
    )


def frame(schema: FrameSchema, keys: list[pl.Series], *columns: pl.Series) -> pl.DataFrame:
    """The group-by columns, then `schema`'s declared columns in order (a missing one raises): what
    `schema.select` gives, without a polars select per answer."""
    by_name = {c.name: c for c in columns}
    return pl.DataFrame([*keys, *(by_name[name] for name in schema.names)])


def predictor_table(grouped: Grouped, predictors: Sequence[str], exact: bool) -> pl.DataFrame:
    """`PREDICTOR_STATS` per group and predictor from `grouped`'s histogram rows."""
    sums = rank_sums(grouped, predictors, exact)
    names = np.array(predictors, dtype=object)[sums["code"]]
    return frame(
        PREDICTOR_STATS,
        grouped.group_keys(sums["gid"]),
        pl.Series("predictor", names, dtype=pl.Utf8),
        pl.Series("tokens", sums["tokens"].astype(np.int64)),
        pl.Series("mismatches", sums["mismatches"].astype(np.int64)),
        *(pl.Series(name, values, nan_to_null=True) for name, values in statistics(sums).items()),
    )


def bins_table(grouped: Grouped) -> pl.DataFrame:
    """`ENTROPY_BINS` per group (in ORDER BY order) and bin, from `grouped`'s entropy_profile rows."""
    rows = np.flatnonzero(grouped.part == BINS)
    gid = grouped.gid[rows]
    bin_ = grouped.column("v", rows).astype(np.int64)
    low = int(bin_.min()) if len(bin_) else 0
    width = int(bin_.max()) - low + 1 if len(bin_) else 1
    key = gid * width + bin_ - low  # groups in order, bins in order within each
    here = np.flatnonzero(np.bincount(key))
    lo, hi = np.zeros(width), np.zeros(width)  # by bin - low: the view's edges
    lo[bin_ - low], hi[bin_ - low] = grouped.column("lo", rows), grouped.column("hi", rows)
    tokens, mismatches = (np.bincount(key, weights=grouped.column(c, rows))[here] for c in ("n", "pos"))
    at = here % width
    return frame(
        ENTROPY_BINS,
        grouped.group_keys(here // width),
        pl.Series("bin", at + low, dtype=pl.Int32),
        pl.Series("lo", lo[at]),
        pl.Series("hi", hi[at]),
        pl.Series("tokens", tokens.astype(np.int64)),
        pl.Series("mismatches", mismatches.astype(np.int64)),
        pl.Series("mismatch_rate", mismatches / tokens),
    )


def mismatch_predictors(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    predictors: Sequence[str] = tuple(PREDICTORS),
    filters: Filters | None = None,
    exact: bool = False,
) -> pl.DataFrame:
    """Per group and predictor: AUROC, Spearman and point-biserial correlation with mismatch.

        `exact=False` ranks values on a grid (0.01 nats; 0.001 in probability): ties within a cell count half,
        which moves AUROC by about 1e-3 at most and keeps the histogram small on 100M events; the
        point-biserial correlation then uses cell centres (a change of order 1e-5). One query for all
    predictors (`exact`: one scan of the events per predictor).
    """
    names = check_predictors(predictors)
    cols = check_group_by(group_by)
    if exact:
        grouped = fetch_grouped(source, cols, filters, histogram_sql(names, filters), False)
    else:
        grouped = fetch_packed(source, cols, filters, names, False)
    return predictor_table(grouped, names, exact)


def mismatch_by_entropy_bin(
    source: Source, group_by: Sequence[str] = ("run_id",), *, filters: Filters | None = None
) -> pl.DataFrame:
    """Mismatch rate per System 1 entropy bin (the `entropy_profile` view, rolled up by group)."""
    cols = check_group_by(group_by)
    grouped = fetch_grouped(source, cols, filters, None, True)
    return bins_table(grouped)


def uncertainty_tables(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    predictors: Sequence[str] = tuple(PREDICTORS),
    filters: Filters | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`mismatch_predictors` (on the grid) and `mismatch_by_entropy_bin` from one statement."""
    names = check_predictors(predictors)
    cols = check_group_by(group_by)
    grouped = fetch_packed(source, cols, filters, names, True)
    return predictor_table(grouped, names, False), bins_table(grouped)


def entropy_histogram(
    source: Source,
    group_by: Sequence[str] = ("run_id",),
    *,
    filters: Filters | None = None,
    bins: int = 40,
    upper: float | None = None,
) -> pl.DataFrame:
    """Entropy distributions of matched and mismatched tokens as densities over equal-width bins.

    Bins span [0, upper] (default: the largest entropy seen); larger values fall in the last bin.
    """
    if bins < 1:
        raise AnalyticsError("bins must be at least 1")
    cols = check_group_by(group_by)
    out = ", ".join(f'"{c}"' for c in cols)
    ev_where, ev_params = events_where(filters)
    where, params = runs_where(filters)
    with connect(source) as con:
        if upper is None:
            top = query(con, f"SELECT max(e.s1_entropy) AS m FROM token_events e {ev_where}", ev_params)
            upper = float(top["m"][0] or 0.0) or 1.0
        width = upper / bins
        counts = query(
            con,
            f"""WITH h AS (
                    SELECT e.run_id, e.mismatch,
                           least(greatest(CAST(floor(e.s1_entropy / ?) AS INTEGER), 0), ?) AS bin,
                           count(*) AS n
                    FROM token_events e {ev_where} GROUP BY ALL
                )
                SELECT {group_select(cols)}, h.mismatch, h.bin, CAST(sum(h.n) AS BIGINT) AS tokens
                FROM h JOIN runs r ON r.run_id = h.run_id {where}
                GROUP BY ALL ORDER BY {out}, h.mismatch, h.bin""",
            [width, bins - 1, *ev_params, *params],
        )
    return histogram_densities(counts, [*cols, "mismatch"], width)


def histogram_densities(counts: pl.DataFrame, keys: Sequence[str], width: float) -> pl.DataFrame:
    """Add bin edges and the density (count / (class total × width)) to a binned count frame."""
    total = pl.col("tokens").sum().over(list(keys))
    return counts.with_columns(
        (pl.col("bin") * width).alias("lo"),
        ((pl.col("bin") + 1) * width).alias("hi"),
        (pl.col("tokens") / (total * width)).alias("density"),
    )
