"""Summary tables: additive sums of token events per run, sample, position decile, entropy bin, grid cell.

`router_sums` (migration 0011) holds what router replay needs: tokens and replay mismatches per router
kind and cell of its feature's exact grid (see `router_cell_sql`). Migration 0012 gave `sample_sums` a
column pair per early window (`EARLY_WINDOWS`) and added `step_sums`: what the early-share test needs.

Ingest adds a shard's sums in the shard's own transaction (upserts that add), so together with the ingest
ledger they stay equal to an aggregation of `token_events` from scratch; `rebuild` recomputes them from
the events. The views and the analytics read these tables, so their cost does not grow with the number of
tokens. Migration 0004 holds a copy of this SQL (a migration never imports the package). Migration 0013
added `histogram_packs`: each run's predictor rows of `histogram_sums` packed into one BLOB per predictor
(`PackedTable`), which the shard's transaction rewrites for the runs it touched. Migration 0014 added
`window_moments`, the early-share test's sums per run and window (`MOMENT_SUMS`), to which a batch adds
what it changes of its samples' terms (`_moments_select`); migration 0015 `sample_moments`, CoF's interval
sums per run (`SAMPLE_MOMENTS`), kept the same way (`_sample_moments_select`).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from warehouse.vocabulary import PREDICTORS, THRESHOLD_RULES, ThresholdRule

# Entropy bins are 0.5 nats wide; the last one is open above (as in the entropy_profile view).
ENTROPY_BIN_WIDTH = 0.5
ENTROPY_BINS = 12
POSITION_BINS = 10
# Early-share windows: a fraction of each sample on a 0.001 grid of rel_pos, or the first k steps.
REL_POS_CELLS = 1000
# The early windows `sample_sums` counts per sample, `tokens_<window>` and `mismatches_<window>` (other
# windows analytics/positions.py counts from the events): the first k steps for k = 1..EARLY_STEPS, and
# the rel_pos cells below each of EARLY_CELLS (the first 5%, 10%, 20% and 25% of a sample). `step_sums`
# counts each of the first FIRST_STEPS steps per sample and rel_pos cell (the positions a prompt format
# may fix).
EARLY_STEPS = 16
EARLY_CELLS = (50, 100, 200, 250)
FIRST_STEPS = 8

# Histogram features -> (expression over token_events columns, cells per unit): the uncertainty
# predictors (oriented so that larger = less certain) are ranked on this grid; `step` and `rel_pos`
# serve the early-share windows.
PREDICTOR_GRID: dict[str, tuple[str, int]] = {p.name: (p.expression, p.cells) for p in PREDICTORS.values()}
HISTOGRAM_CELLS: dict[str, str] = {
    **{name: f"CAST(({expr}) * {cells} AS INTEGER)" for name, (expr, cells) in PREDICTOR_GRID.items()},
    "step": "step",
    "rel_pos": f"CAST(floor(CAST(rel_pos AS DOUBLE) * {REL_POS_CELLS}) AS INTEGER)",
}


def step_window(k: int) -> str:
    """The name of the window of the first k steps (`step < k`)."""
    return f"step_lt_{k}"


def cell_window(cells: int) -> str:
    """The name of the window of the rel_pos cells below `cells` (the first cells / REL_POS_CELLS)."""
    return f"cell_lt_{cells}"


# window -> its condition over token_events columns
EARLY_WINDOWS: dict[str, str] = {
    **{step_window(k): f"step < {k}" for k in range(1, EARLY_STEPS + 1)},
    **{cell_window(c): f"{HISTOGRAM_CELLS['rel_pos']} < {c}" for c in EARLY_CELLS},
}
EARLY_COLUMNS: tuple[str, ...] = tuple(
    f"{what}_{w}" for w in EARLY_WINDOWS for what in ("tokens", "mismatches")
)


# `window_moments`: per run and early window, the early-share test's sums over the run's samples
# (analytics/window_stats.py): their count, the sums of n, m, e, em (a sample's tokens, mismatches, and those
# in the window), of the product of each two of them (a group's Σψ² is a quadratic form of these, exact in
# integers) and of d = em − m·e/n and d². A group's test is then a few sums over its runs' rows instead of one
# over its samples'.
MOMENT_VALUES: dict[str, str] = {
    "n": "tokens",
    "m": "mismatches",
    "e": "early_tokens",
    "em": "early_mismatches",
}
MOMENT_PRODUCTS: tuple[str, ...] = tuple(
    f"{a}_{b}" for i, a in enumerate(MOMENT_VALUES) for b in list(MOMENT_VALUES)[i:]
)
MOMENT_FLOATS = ("d", "d_d")  # the score test's sums: not integers
MOMENT_SUMS: tuple[str, ...] = ("samples", *MOMENT_VALUES.values(), *MOMENT_PRODUCTS, *MOMENT_FLOATS)


# `sample_moments`: per run, the sums over its samples that CoF's two intervals read (analytics/frequency.py):
# their count; their tokens n, consultations and mismatches m; Σ m², Σ m·n and Σ n² (exact in integers);
# and of each sample's CoF r = m / n, Σ r and Σ r² (floats). A group's intervals are then sums over its runs'
# rows instead of over its samples'.
SAMPLE_MOMENTS: tuple[str, ...] = (
    "samples",
    "tokens",
    "consulted",
    "mismatches",
    "m_m",
    "m_n",
    "n_n",
    "r",
    "r_r",
)
SAMPLE_MOMENT_FLOATS = ("r", "r_r")


def router_cell_sql(rule: ThresholdRule) -> str:
    """The cell of a threshold router's grid (`rule.cells` per unit of its feature) that a token falls in.

    Router replay (analytics/routers.py) reads `router_sums`: per run, router and cell, the tokens and the
    replay mismatches (System 2's recorded choice ≠ System 1's). The grid is exact at its edges: `cells` is
    a power of two, so `value * cells` is exact in floating point and a cell holds exactly the values of
    [c/cells, (c+1)/cells) (floor, for routers that consult below τ) or ((c-1)/cells, c/cells] (ceil, for
    those that consult above τ). At every τ = e/cells, "value < τ" is "cell < e" and "value > τ" is
    "cell > e", so a replay at grid thresholds counts exactly what a scan of the events would.
    """
    rounding = "floor" if rule.direction == "below" else "ceil"
    return f"CAST({rounding}(CAST({rule.feature} AS DOUBLE) * {rule.cells}) AS INTEGER)"


REPLAY_MISMATCHES = "count(*) AS tokens, count_if(s2_token_id <> s1_token_id) AS replay_mismatches"

# The summed columns with token_events' types, so a batch sums exactly as its stored rows would.
AS_STORED = ", ".join(
    f"CAST({c} AS {t}) AS {c}"
    for c, t in [
        ("sample_id", "INTEGER"),
        ("step", "INTEGER"),
        ("s1_token_id", "INTEGER"),
        ("s2_token_id", "INTEGER"),
        ("rel_pos", "REAL"),
        ("s1_prob", "REAL"),
        ("s1_entropy", "REAL"),
        ("s1_margin", "REAL"),
        ("consulted", "BOOLEAN"),
        ("mismatch", "BOOLEAN"),
    ]
)
COUNTS = "count(*) AS tokens, count_if(consulted) AS consulted, count_if(mismatch) AS mismatches"
TOKENS_MISMATCHES = "count(*) AS tokens, count_if(mismatch) AS mismatches"


@dataclass(frozen=True)
class SummaryTable:
    """One summary table: its key columns and the SELECT that sums a relation of events into it."""

    name: str
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    select: str  # `{src}` stands for the events relation
    # Keys a batch mostly brings new (its samples): those rows are inserted apart from the few it adds to.
    # DuckDB's ON CONFLICT insert of sample_sums' 43 sums took 52 ms for a 1,000-event batch, this 11 ms.
    new_keys: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.sums)

    def scratch_sql(self, src: str) -> str:
        """The table's rows computed from the events relation `src` at once (its columns in order)."""
        return f"SELECT {', '.join(self.columns)} FROM ({self.select.format(src=src)})"

    def scratch_rows(self, con: duckdb.DuckDBPyConnection, src: str) -> list[tuple[object, ...]]:
        """The table's rows computed from the events relation `src` at once (its columns in order)."""
        return con.execute(self.scratch_sql(src)).fetchall()

    def add(self, con: duckdb.DuckDBPyConnection, src: str) -> None:
        """Add the relation's sums to the table (the caller owns the transaction)."""
        for statement in self.add_statements(src):
            con.execute(statement)

    def upsert_sql(self, src: str) -> str:
        """INSERT of the relation's sums that adds to rows already there."""
        cols = ", ".join((*self.keys, *self.sums))
        adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in self.sums)
        return (
            f"INSERT INTO {self.name} ({cols}) {self.select.format(src=src)} "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {adds}"
        )

    def add_statements(self, src: str) -> tuple[str, ...]:
        """The statements that add the relation's sums to the table (the caller owns the transaction)."""
        if not self.new_keys:
            return (self.upsert_sql(src),)
        batch, names = f"fsgen_{self.name}_batch", (*self.keys, *self.sums)
        cols, from_batch = ", ".join(names), ", ".join(f"b.{c}" for c in names)
        match = " AND ".join(f"t.{k} = b.{k}" for k in self.keys)
        adds = ", ".join(f"{c} = t.{c} + b.{c}" for c in self.sums)
        return (
            f"CREATE OR REPLACE TEMP TABLE {batch} AS {self.select.format(src=src)}",
            f"UPDATE {self.name} t SET {adds} FROM {batch} b WHERE {match}",
            f"INSERT INTO {self.name} ({cols}) SELECT {from_batch} FROM {batch} b "
            f"ANTI JOIN {self.name} t USING ({', '.join(self.keys)})",
            f"DROP TABLE {batch}",
        )


def _histogram_select() -> str:
    parts = [
        f"SELECT run_id, '{name}' AS feature, {cell} AS cell, {TOKENS_MISMATCHES} FROM {{src}} GROUP BY ALL"
        for name, cell in HISTOGRAM_CELLS.items()
    ]
    return " UNION ALL ".join(parts)


def _router_select() -> str:
    parts = [
        f"SELECT run_id, '{kind}' AS router, {router_cell_sql(rule)} AS cell, {REPLAY_MISMATCHES} "
        "FROM {src} GROUP BY ALL"
        for kind, rule in THRESHOLD_RULES.items()
    ]
    return " UNION ALL ".join(parts)


def _sample_select() -> str:
    windows = ", ".join(
        f"count_if({cond}) AS tokens_{w}, count_if(mismatch AND {cond}) AS mismatches_{w}"
        for w, cond in EARLY_WINDOWS.items()
    )
    return f"SELECT run_id, sample_id, {COUNTS}, {windows} FROM {{src}} GROUP BY run_id, sample_id"


def _moments_select() -> str:
    """Per run and window, what a batch of events adds to `window_moments`: for each sample it touches,
    f(its `sample_sums` row now) − f(its row before the batch). A product of a sample's totals does not add
    over batches as the events' counts do, so the row before is taken off (its row now less the batch's own
    sums; none for a new sample). Reads `sample_sums` after the batch was added to it; over all the events
    at once it is f of every sample."""
    sums = ("tokens", "consulted", "mismatches", *EARLY_COLUMNS)
    before = ", ".join(f"s.{c} - b.{c} AS {c}" for c in sums)
    on = ", ".join(f"(tokens_{w}, mismatches_{w}) AS {w}" for w in EARLY_WINDOWS)
    values = list(MOMENT_VALUES.values())
    names = {v: k for k, v in MOMENT_VALUES.items()}
    products = ", ".join(
        f"sum(sign * {a} * {b}) AS {names[a]}_{names[b]}" for i, a in enumerate(values) for b in values[i:]
    )
    totals = ", ".join(f"sum(sign * {v}) AS {v}" for v in values)
    rate = "CASE WHEN tokens > 0 THEN early_tokens / tokens ELSE 0 END"  # e/n in DOUBLE, as NumPy's
    # The batch's own sums only of samples an earlier batch began (a sample split over shards): counting the
    # windows of every event again cost ingest a fifth of its summary time.
    split = (
        "SELECT e.* FROM {src} e SEMI JOIN (SELECT s.run_id, s.sample_id FROM sample_sums s JOIN "
        "(SELECT run_id, sample_id, count(*) AS n FROM {src} GROUP BY ALL) k USING (run_id, sample_id) "
        "WHERE s.tokens > k.n) p USING (run_id, sample_id)"
    )
    return f"""WITH batch AS ({_sample_select().replace("{src}", f"({split})")}),
        touched AS (
            SELECT 1 AS sign, s.* FROM sample_sums s
            SEMI JOIN (SELECT DISTINCT run_id, sample_id FROM {{src}}) b USING (run_id, sample_id)
            UNION ALL BY NAME
            SELECT -1 AS sign, s.run_id, s.sample_id, {before}
            FROM sample_sums s JOIN batch b USING (run_id, sample_id)
        ),
        per_window AS (
            SELECT *, early_mismatches - mismatches * {rate} AS d
            FROM (UNPIVOT touched ON {on} INTO NAME window_name VALUE early_tokens, early_mismatches)
        )
        SELECT run_id, window_name, sum(sign) AS samples, {totals},
               {products}, sum(sign * d) AS d, sum(sign * d * d) AS d_d
        FROM per_window GROUP BY run_id, window_name"""


def _sample_moments_select() -> str:
    """Per run, what a batch of events adds to `sample_moments`: for each sample it touches, f(its
    `sample_sums` row now) − f(its row before the batch: its row now less the batch's own counts, none for a
    sample the batch begins), as `_moments_select` does per window. Reads `sample_sums` after the batch was
    added to it; over all the events at once it is f of every sample."""
    counts = ("tokens", "consulted", "mismatches")
    now = ", ".join(f"s.{c}" for c in counts)
    before = ", ".join(f"s.{c} - b.{c} AS {c}" for c in counts)
    rate = "(mismatches / tokens)"  # DOUBLE: DuckDB's `/` divides integers exactly as NumPy's
    return f"""WITH batch AS (SELECT run_id, sample_id, {COUNTS} FROM {{src}} GROUP BY run_id, sample_id),
        touched AS (
            SELECT 1 AS sign, s.run_id, {now} FROM sample_sums s SEMI JOIN batch b USING (run_id, sample_id)
            UNION ALL
            SELECT -1 AS sign, s.run_id, {before}
            FROM sample_sums s JOIN batch b USING (run_id, sample_id) WHERE s.tokens > b.tokens
        )
        SELECT run_id, sum(sign) AS samples, sum(sign * tokens) AS tokens, sum(sign * consulted) AS consulted,
               sum(sign * mismatches) AS mismatches, sum(sign * mismatches * mismatches) AS m_m,
               sum(sign * mismatches * tokens) AS m_n, sum(sign * tokens * tokens) AS n_n,
               sum(sign * {rate}) AS r, sum(sign * {rate} * {rate}) AS r_r
        FROM touched GROUP BY run_id"""


# A pack holds one run's histogram of one predictor: its cells lo, lo + 1, ..., hi (empty ones too) as
# big-endian (tokens, mismatches) integer pairs of `width` bytes (4 while every count fits, else 8). Reading
# the packs of 40 runs (~1 MB) costs DuckDB ~0.6 ms where summing their 113,000 `histogram_sums` rows per
# answer cost ~12 ms (analytics/uncertainty.py). NumPy packs (4 ms a batch where the same in SQL took 12);
# migration 0013 holds the same packing in SQL.
PACK_WIDTH_LIMIT = 2**31  # counts below it pack in 4 bytes


def pack_histograms(rows: dict[str, np.ndarray]) -> pa.Table:
    """`histogram_packs` rows from `histogram_sums` rows (NumPy columns run_id, feature, cell, tokens,
    mismatches; any runs, any order)."""
    order = np.lexsort((rows["cell"], rows["feature"], rows["run_id"]))
    run, feature, cell = rows["run_id"][order], rows["feature"][order], rows["cell"][order].astype(np.int64)
    counts = np.stack([rows["tokens"][order], rows["mismatches"][order]], axis=1).astype(np.int64)
    new = np.r_[True, (run[1:] != run[:-1]) | (feature[1:] != feature[:-1])] if len(run) else run == 0
    starts = np.flatnonzero(new).tolist()
    out: dict[str, list[object]] = {"run_id": [], "feature": [], "lo": [], "width": [], "counts": []}
    for start, end in zip(starts, [*starts[1:], len(run)], strict=True):
        lo, width = int(cell[start]), 4 if int(counts[start:end, 0].max()) < PACK_WIDTH_LIMIT else 8
        dense = np.zeros((int(cell[end - 1]) - lo + 1, 2), dtype=f">i{width}")
        dense[cell[start:end] - lo] = counts[start:end]
        for name, value in zip(
            out, (int(run[start]), str(feature[start]), lo, width, dense.tobytes()), strict=True
        ):
            out[name].append(value)
    types = (pa.int64(), pa.string(), pa.int32(), pa.int16(), pa.binary())
    return pa.table(
        {name: pa.array(values, type=t) for (name, values), t in zip(out.items(), types, strict=True)}
    )


@dataclass(frozen=True)
class PackedTable:
    """A summary table packed from another one's rows: a batch rewrites the rows of the runs it touched."""

    name: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    source: SummaryTable  # the table it packs, earlier in TABLES
    features: tuple[str, ...]  # the source's features it packs

    def _rows_sql(self, hist: str, where: str) -> str:
        features = ", ".join(f"'{f}'" for f in self.features)
        cols = "run_id, feature, cell, tokens, mismatches"
        return f"SELECT {cols} FROM {hist} WHERE feature IN ({features}){where}"

    def scratch_rows(self, con: duckdb.DuckDBPyConnection, src: str) -> list[tuple[object, ...]]:
        """The table's rows computed from the events relation `src` at once (its columns in order)."""
        rows = con.execute(self._rows_sql(f"({self.source.scratch_sql(src)})", "")).fetchnumpy()
        return [tuple(r.values()) for r in pack_histograms(dict(rows)).to_pylist()]

    def add(self, con: duckdb.DuckDBPyConnection, src: str) -> None:
        """Repack the runs of the relation from the source's rows (the caller owns the transaction)."""
        runs = [r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {src}").fetchall()]
        if not runs:
            return
        where = f" AND run_id IN ({', '.join('?' for _ in runs)})"
        con.execute(f"DELETE FROM {self.name} WHERE TRUE{where}", runs)
        packs = pack_histograms(dict(con.execute(self._rows_sql(self.source.name, where), runs).fetchnumpy()))
        con.register("fsgen_packs", packs)
        con.execute(f"INSERT INTO {self.name} BY NAME SELECT * FROM fsgen_packs")
        con.unregister("fsgen_packs")


HISTOGRAM_SUMS = SummaryTable(
    "histogram_sums", ("run_id", "feature", "cell"), ("tokens", "mismatches"), _histogram_select()
)
TABLES: tuple[SummaryTable | PackedTable, ...] = (
    SummaryTable(
        "run_sums",
        ("run_id",),
        ("tokens", "consulted", "mismatches"),
        f"SELECT run_id, {COUNTS} FROM {{src}} GROUP BY run_id",
    ),
    SummaryTable(
        "sample_sums",
        ("run_id", "sample_id"),
        ("tokens", "consulted", "mismatches", *EARLY_COLUMNS),
        _sample_select(),
        new_keys=True,
    ),
    # After sample_sums: their selects read the rows the batch just added to.
    SummaryTable("window_moments", ("run_id", "window_name"), MOMENT_SUMS, _moments_select()),
    SummaryTable("sample_moments", ("run_id",), SAMPLE_MOMENTS, _sample_moments_select()),
    SummaryTable(
        "position_sums",
        ("run_id", "bin"),
        ("tokens", "mismatches"),
        f"SELECT run_id, least(CAST(floor(rel_pos * {POSITION_BINS}) AS INTEGER), {POSITION_BINS - 1}) "
        f"AS bin, {TOKENS_MISMATCHES} FROM {{src}} GROUP BY ALL",
    ),
    SummaryTable(
        "entropy_sums",
        ("run_id", "bin"),
        ("tokens", "mismatches"),
        f"SELECT run_id, least(CAST(floor(s1_entropy / {ENTROPY_BIN_WIDTH}) AS INTEGER), {ENTROPY_BINS - 1}) "
        f"AS bin, {TOKENS_MISMATCHES} FROM {{src}} GROUP BY ALL",
    ),
    HISTOGRAM_SUMS,
    PackedTable(
        "histogram_packs",
        ("run_id", "feature"),
        ("run_id", "feature", "lo", "width", "counts"),
        HISTOGRAM_SUMS,
        tuple(PREDICTOR_GRID),
    ),
    SummaryTable(
        "router_sums", ("run_id", "router", "cell"), ("tokens", "replay_mismatches"), _router_select()
    ),
    SummaryTable(
        "step_sums",
        ("run_id", "sample_id", "step", "cell"),
        ("tokens", "mismatches"),
        f"SELECT run_id, sample_id, step, {HISTOGRAM_CELLS['rel_pos']} AS cell, {TOKENS_MISMATCHES} "
        f"FROM {{src}} WHERE step >= 0 AND step < {FIRST_STEPS} GROUP BY ALL",
        new_keys=True,
    ),
)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


def accumulate(con: duckdb.DuckDBPyConnection, src: str) -> None:
    """Add the sums of an events relation (a table or view with run_id) to every summary table.

    The caller owns the transaction: ingest runs this inside the shard's own.
    """
    for table in TABLES:
        table.add(con, src)


def accumulate_arrow(con: duckdb.DuckDBPyConnection, run_id: int, events: pa.Table) -> None:
    """Add the sums of one run's batch of events (Arrow, without run_id); the caller owns the transaction."""
    # No unregister in a `finally`: in a failed transaction it raises too and hides the real error; the
    # next batch's register replaces a view left behind.
    con.register("fsgen_summary_batch", events)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fsgen_summary_events AS "
        f"SELECT CAST({int(run_id)} AS BIGINT) AS run_id, {AS_STORED} FROM fsgen_summary_batch"
    )
    con.unregister("fsgen_summary_batch")
    accumulate(con, "fsgen_summary_events")
    con.execute("DROP TABLE fsgen_summary_events")


def rebuild(con: duckdb.DuckDBPyConnection) -> int:
    """Recompute every summary table from token_events in one transaction; returns the events summed."""
    con.execute("BEGIN TRANSACTION")
    try:
        for table in TABLES:
            con.execute(f"DELETE FROM {table.name}")
        accumulate(con, "token_events")
        row = con.execute("SELECT coalesce(sum(tokens), 0) FROM run_sums").fetchone()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(row[0]) if row else 0
