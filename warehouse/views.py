"""The views' SQL as it stands at the head revision: the contract analytics and the API read.

Migrations create and change the views (and each keeps its own copy of the SQL it writes, since a
migration never imports the package); this module is the current text in one place, and
`tests/warehouse/test_views.py` checks that a file migrated to head holds exactly these views. A migration
that changes a view changes it here too.
"""

from __future__ import annotations

from warehouse.summaries import ENTROPY_BIN_WIDTH, ENTROPY_BINS

RUN_COF = """
    SELECT r.run_id,
           CAST(coalesce(a.tokens, 0) AS BIGINT) AS tokens,
           CAST(coalesce(a.consulted, 0) AS BIGINT) AS consulted,
           CAST(coalesce(a.mismatches, 0) AS BIGINT) AS mismatches,
           CAST(a.mismatches AS DOUBLE) / nullif(a.tokens, 0) AS cof,
           CAST(a.consulted AS DOUBLE) / nullif(a.tokens, 0) AS consult_rate,
           r.status
    FROM runs r LEFT JOIN run_sums a ON a.run_id = r.run_id
"""

# Complete runs not excluded, one row per experiment and identity (runs differing in a defining setting
# never pool).
PAIR_COF = """
    SELECT r.experiment, r.setup, r.identity, r.llm, r.slm,
           ml.params AS llm_params, ms.params AS slm_params,
           CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
           r.method, r.router, r.dataset,
           count(*) AS runs,
           CAST(sum(c.tokens) AS BIGINT) AS tokens,
           CAST(sum(c.mismatches) AS BIGINT) AS mismatches,
           CAST(sum(c.mismatches) AS DOUBLE) / nullif(sum(c.tokens), 0) AS cof
    FROM runs r
    JOIN run_cof c ON c.run_id = r.run_id
    JOIN models ml ON ml.name = r.llm
    JOIN models ms ON ms.name = r.slm
    WHERE r.status = 'complete' AND NOT r.excluded
    GROUP BY r.experiment, r.setup, r.identity, r.llm, r.slm, ml.params, ms.params, r.method, r.router,
             r.dataset
"""

POSITION_PROFILE = """
    WITH agg AS (SELECT run_id, bin, tokens, mismatches FROM position_sums)
    SELECT run_id, bin,
           CAST(tokens AS BIGINT) AS tokens,
           CAST(mismatches AS BIGINT) AS mismatches,
           CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate,
           CAST(mismatches AS DOUBLE) / nullif(sum(mismatches) OVER (PARTITION BY run_id), 0)
               AS mismatch_share
    FROM agg
"""

ENTROPY_PROFILE = f"""
    WITH agg AS (SELECT run_id, bin, tokens, mismatches FROM entropy_sums)
    SELECT run_id, bin,
           bin * {ENTROPY_BIN_WIDTH} AS lo,
           CASE WHEN bin = {ENTROPY_BINS - 1} THEN CAST('inf' AS DOUBLE)
                ELSE (bin + 1) * {ENTROPY_BIN_WIDTH} END AS hi,
           CAST(tokens AS BIGINT) AS tokens,
           CAST(mismatches AS BIGINT) AS mismatches,
           CAST(mismatches AS DOUBLE) / tokens AS mismatch_rate
    FROM agg
"""

RUN_ACCURACY = """
    SELECT run_id,
           count(*) AS samples,
           count(correct) AS checked,
           CAST(sum(CAST(correct AS INTEGER)) AS BIGINT) AS correct,
           avg(CAST(correct AS DOUBLE)) AS accuracy
    FROM samples GROUP BY run_id
"""

# name -> SELECT, in an order that creates each view after the views it reads
VIEWS: dict[str, str] = {
    "run_cof": RUN_COF,
    "pair_cof": PAIR_COF,
    "position_profile": POSITION_PROFILE,
    "entropy_profile": ENTROPY_PROFILE,
    "run_accuracy": RUN_ACCURACY,
}
VIEW_NAMES = frozenset(VIEWS)
