"""The pairs the scaling law is fitted to: per (LLM, SLM) pair and run identity, the pooled CoF of its
complete runs from the `pair_cof` view, for the runs in scope (`analytics.source`)."""

from __future__ import annotations

import polars as pl

from analytics.source import Filters, Source, query, runs_in_scope, runs_where

# The columns a pair's runs share, by which `pair_cof` keeps runs apart (its rows' key).
PAIR_KEYS = ("experiment", "identity", "llm", "slm", "method", "router", "dataset")
PAIR_ORDER = ["method", "dataset", "setup", "router", "param_ratio", "llm", "slm", "experiment", "identity"]
COLUMNS = (
    "experiment, setup, identity, llm, slm, llm_params, slm_params, param_ratio, method, router, dataset, "
    "runs, tokens, mismatches, cof"
)
# Filters that keep or drop whole rows of `pair_cof` (its key columns; setup, which identity fixes; the
# scope's experiment and baselines): with only these the scope applies to the view itself, since each of
# its rows holds complete runs not excluded, which match them exactly when the row does.
WHOLE_ROWS = frozenset((*PAIR_KEYS, "setup", "baseline"))


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

    Filters on WHOLE_ROWS alone are the view's WHERE; any other (a run's seed, its exclusion) selects the
    pairs whose key some run in scope has: two plain queries (those runs; the view's rows of the method,
    dataset and router) and a semi-join on PAIR_KEYS here (as one query with an EXISTS, DuckDB took 7 ms
    to plan it)."""
    given = {k: v for k, v in (("method", method), ("dataset", dataset), ("router", router)) if v is not None}
    wanted = {**(filters or {}), **given}
    order = ", ".join(PAIR_ORDER)
    if runs is None and set(wanted) <= WHOLE_ROWS:
        where, params = runs_where({**wanted, "excluded": None}, alias="p")  # the view holds none excluded
        return query(source, f"SELECT {COLUMNS} FROM pair_cof p {where} ORDER BY {order}", params)
    if runs is None:
        runs = runs_in_scope(source, wanted, PAIR_KEYS)
    where = " AND ".join(f'"{k}" = ?' for k in given) or "TRUE"
    pairs = query(source, f"SELECT {COLUMNS} FROM pair_cof WHERE {where}", list(given.values()))
    keys = runs.select(PAIR_KEYS).unique()
    points = pairs.join(keys, on=list(PAIR_KEYS), how="semi", nulls_equal=True)
    return points.sort(PAIR_ORDER, nulls_last=True)
