"""The pairs the scaling law is fitted to: per (LLM, SLM) pair and run identity, the pooled CoF of its
complete runs (the `pair_cof` view's rows), for the runs in scope (`analytics.source`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from analytics.source import Filters, Source, query, query_rows, runs_in_scope, runs_where

# The columns a pair's runs share, by which `pair_cof` keeps runs apart (its rows' key).
PAIR_KEYS = ("experiment", "identity", "llm", "slm", "method", "router", "dataset")
PAIR_ORDER = ["method", "dataset", "setup", "router", "param_ratio", "llm", "slm", "experiment", "identity"]
# The pair_cof view's columns and the types they arrive as.
SCHEMA: dict[str, pl.DataType] = {
    **{c: pl.Utf8() for c in ("experiment", "setup", "identity", "llm", "slm")},
    "llm_params": pl.Int64(),
    "slm_params": pl.Int64(),
    "param_ratio": pl.Float64(),
    **{c: pl.Utf8() for c in ("method", "router", "dataset")},
    **{c: pl.Int64() for c in ("runs", "tokens", "mismatches")},
    "cof": pl.Float64(),
}
COLUMNS = ", ".join(SCHEMA)
# Filters that keep or drop whole rows of `pair_cof` (its key columns; setup, which identity fixes; the
# scope's experiment and baselines): with only these the scope applies to the view itself, since each of
# its rows holds complete runs not excluded, which match them exactly when the row does.
WHOLE_ROWS = frozenset((*PAIR_KEYS, "setup", "baseline"))
# Per run in scope: what `pair_cof` groups by (the key, setup and the two models), what it pools (the run's
# status and its `run_cof` sums: run_sums', 0 where a run has none yet; joined here directly, a millisecond
# less to plan than through the view) and its settings (for `setting_labels`); then, in the same statement,
# every model's size (the models table is a few rows: read whole, the two joins by name it replaces cost
# DuckDB about a millisecond more to plan than they save). `kind` tells the two parts apart.
_GROUP = ("experiment", "setup", "identity", "llm", "slm", "llm_params", "slm_params", "method", "router",
          "dataset")  # fmt: skip
RUN_ROWS = (
    "SELECT 'run' AS kind, r.experiment, r.setup, r.identity, r.llm, r.slm, r.method, r.router, r.dataset, "
    "r.status, coalesce(a.tokens, 0), coalesce(a.mismatches, 0), r.settings, NULL::BIGINT AS params "
    "FROM runs r LEFT JOIN run_sums a ON a.run_id = r.run_id"
)
MODEL_ROWS = (
    "SELECT 'model', NULL, NULL, NULL, name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, params "
    "FROM models"
)


@dataclass(frozen=True)
class PairScope:
    """The pairs of the runs in scope (`pair_points`' frame) and those runs' setup, identity and settings
    (for `setting_labels`; made into a frame when read: `pair_points` never reads it), both from one query."""

    points: pl.DataFrame
    labelled: list[tuple[Any, ...]]  # per run in scope: (setup, identity, settings)

    @property
    def runs(self) -> pl.DataFrame:
        """setup, identity and settings of each run in scope."""
        schema = dict.fromkeys(("setup", "identity", "settings"), pl.Utf8)
        return pl.DataFrame(self.labelled, schema=schema, orient="row")


def pairs_in_scope(source: Source, filters: Filters) -> PairScope:
    """The `pair_cof` rows of the runs in scope matching `filters` (keys of WHOLE_ROWS only), pooled here
    from one query of those runs (DuckDB took 6-9 ms to plan the view's GROUP BY of a few rows; reading the
    runs and pooling them takes under 5 ms): a pair's complete runs, counted, their tokens and mismatches
    summed, CoF their ratio, ordered as PAIR_ORDER with nulls last. Equal to the view's rows (a test checks
    it on a real warehouse)."""
    if not set(filters) <= WHOLE_ROWS:
        raise ValueError(f"pairs_in_scope takes filters on whole pairs only ({sorted(WHOLE_ROWS)})")
    where, params = runs_where(filters)
    rows = query_rows(source, f"{RUN_ROWS} {where} UNION ALL {MODEL_ROWS}", params)
    sizes = {r[4]: r[13] for r in rows if r[0] == "model"}
    in_scope = [r[1:13] for r in rows if r[0] == "run"]
    pooled: dict[tuple[Any, ...], list[int]] = {}
    for *names, status, tokens, mismatches, _ in in_scope:  # names: _GROUP without the sizes
        llm_params, slm_params = sizes.get(names[3]), sizes.get(names[4])
        if status == "complete" and llm_params is not None and slm_params is not None:  # pair_cof's WHERE
            sums = pooled.setdefault((*names[:5], llm_params, slm_params, *names[5:]), [0, 0, 0])
            sums[0] += 1
            sums[1] += tokens
            sums[2] += mismatches
    points = [_pair_row(key, *sums) for key, sums in pooled.items()]
    points.sort(key=lambda p: tuple(_nulls_last(p[c]) for c in PAIR_ORDER))
    frame = pl.DataFrame([tuple(p.values()) for p in points], schema=SCHEMA, orient="row")
    return PairScope(frame, [(r[1], r[2], r[11]) for r in in_scope])


def _pair_row(key: Sequence[Any], runs: int, tokens: int, mismatches: int) -> dict[str, Any]:
    """One pair_cof row from its group key and sums, with the view's arithmetic (doubles, CoF null without
    tokens)."""
    row = dict(zip(_GROUP, key, strict=True))
    ratio = float(row["llm_params"]) / float(row["slm_params"])
    cof = float(mismatches) / float(tokens) if tokens else None
    row |= {"param_ratio": ratio, "runs": runs, "tokens": tokens, "mismatches": mismatches, "cof": cof}
    return {c: row[c] for c in SCHEMA}  # in the view's column order


def _nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def pair_points(
    source: Source,
    *,
    method: str | None = None,
    dataset: str | None = None,
    router: str | None = "always",
    filters: Filters | None = None,
    runs: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-pair CoF with parameter ratio from the `pair_cof` view (complete runs only), one row per pair and
    identity of the runs in scope (one experiment, no baselines: `analytics.source`). `runs`: the caller's
    `runs_in_scope` frame of the same filters (with PAIR_KEYS), read instead of querying again.

    Filters on WHOLE_ROWS alone are the view's rows pooled from one query of the runs (`pairs_in_scope`);
    any other (a run's seed, its exclusion) selects the pairs whose key some run in scope has: two plain
    queries (those runs; the view's rows of the method, dataset and router) and a semi-join on PAIR_KEYS
    here (as one query with an EXISTS, DuckDB took 7 ms to plan it)."""
    given = {k: v for k, v in (("method", method), ("dataset", dataset), ("router", router)) if v is not None}
    wanted = {**(filters or {}), **given}
    if runs is None and set(wanted) <= WHOLE_ROWS:
        return pairs_in_scope(source, wanted).points
    if runs is None:
        runs = runs_in_scope(source, wanted, PAIR_KEYS)
    where = " AND ".join(f'"{k}" = ?' for k in given) or "TRUE"
    pairs = query(source, f"SELECT {COLUMNS} FROM pair_cof WHERE {where}", list(given.values()))
    keys = runs.select(PAIR_KEYS).unique()
    points = pairs.join(keys, on=list(PAIR_KEYS), how="semi", nulls_equal=True)
    return points.sort(PAIR_ORDER, nulls_last=True)
