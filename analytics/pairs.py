"""The pairs the scaling law is fitted to: per (LLM, SLM) pair and run identity, the pooled CoF of its
complete runs from the `pair_cof` view, for the runs in scope (`analytics.source`)."""

from __future__ import annotations

import polars as pl

from analytics.source import Filters, Source, query, runs_in_scope

# The columns a pair's runs share, by which `pair_cof` keeps runs apart (its rows' key).
PAIR_KEYS = ("experiment", "identity", "llm", "slm", "method", "router", "dataset")
PAIR_ORDER = ["method", "dataset", "setup", "router", "param_ratio", "llm", "slm"]


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

    Two plain queries (the runs in scope; the view's rows of the method, dataset and router) and a
    semi-join on PAIR_KEYS here: one query with the scope as an EXISTS took DuckDB 7 ms to plan."""
    given = {k: v for k, v in (("method", method), ("dataset", dataset), ("router", router)) if v is not None}
    if runs is None:
        runs = runs_in_scope(source, {**(filters or {}), **given}, PAIR_KEYS)
    where = " AND ".join(f'"{k}" = ?' for k in given) or "TRUE"
    pairs = query(
        source,
        "SELECT experiment, setup, identity, llm, slm, llm_params, slm_params, param_ratio, method, router, "
        f"dataset, runs, tokens, mismatches, cof FROM pair_cof WHERE {where}",
        list(given.values()),
    )
    keys = runs.select(PAIR_KEYS).unique()
    return pairs.join(keys, on=list(PAIR_KEYS), how="semi", nulls_equal=True).sort(
        PAIR_ORDER, nulls_last=True
    )
