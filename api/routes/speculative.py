"""GET /v1/speculative: acceptance by draft position, predicted and measured speed-up (analytics)."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from analytics.served import SERVED, SERVED_POSITIONS, served_tables
from analytics.speculative import ACCEPTANCE, RUN, speculative_tables
from api.convert import frame_model, grouped_answer, records
from api.deps import AnalystDep, DbDep, TimeoutMs
from api.errors import ApiError, error_responses
from api.formats import aggregate_router
from api.params import Filters, FiltersDep, GroupByQuery, groups

router = aggregate_router(prefix="/v1", tags=["speculative"])


SpeculativeRunRow: Any = frame_model(
    "SpeculativeRunRow",
    "One speculative run: K, acceptance, mean accepted length, predicted and measured speed-up.",
    RUN,
    group=False,
)
AcceptanceRow: Any = frame_model(
    "AcceptanceRow",
    "Draft position i of a group: cycles reaching it, accepted there, P(accept | reached), P(kept > i).",
    ACCEPTANCE,
)
ServedRow: Any = frame_model(
    "ServedRow",
    "Requests a serving engine answered, imported (`python -m warehouse import`), per engine, pair and K.",
    SERVED,
    group=False,
)
ServedAcceptanceRow: Any = frame_model(
    "ServedAcceptanceRow",
    "Draft position i of imported requests: steps reaching it, accepted there, P(accept | reached).",
    SERVED_POSITIONS,
    group=False,
)
SpeculativePublic: Any = grouped_answer(
    "SpeculativePublic",
    "Speculative runs and their acceptance by draft position; beside them, imported serving requests.",
    runs=SpeculativeRunRow,
    acceptance=AcceptanceRow,
    served=ServedRow,
    served_acceptance=ServedAcceptanceRow,
)


DEFAULT_GROUP_BY = ("run_id",)


def _both(cur: duckdb.DuckDBPyConnection, group_by: tuple[str, ...],
          filters: Filters) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    spec = {**filters, "method": "speculative"}
    return speculative_tables(cur, group_by, filters=spec)


# Served requests have no run and no dataset: a filter on either answers none (not read at all).
_NO_SERVED = (pl.DataFrame(schema=SERVED.polars()), pl.DataFrame(schema=SERVED_POSITIONS.polars()))


def _served(cur: duckdb.DuckDBPyConnection, filters: Filters) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Imported requests of the pair the filters name (llm = model, slm = draft)."""
    return served_tables(cur, filters.get("llm"), filters.get("slm"))


def _records(frame: pl.DataFrame, keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`records`, skipping its pass over the columns for an empty frame (the served ones of a run filter)."""
    return records(frame, keys) if frame.height else []


@router.get(
    "/speculative", response_model=SpeculativePublic, responses=error_responses(400, 401, 405, 500, 503)
)
def get_speculative(
    analyst: AnalystDep,
    db: DbDep,
    filters: FiltersDep,
    group_by: GroupByQuery = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """Acceptance by draft position, mean accepted length, predicted and measured speed-up."""
    cols = groups(group_by, DEFAULT_GROUP_BY)
    if filters.get("method", "speculative") != "speculative":
        raise ApiError(400, "conflicting_parameters", "this route reads speculative runs only; drop method")
    runs, acceptance = analyst(db.limit_ms(timeout_ms), _both, cols, filters)
    unserved = "run_id" in filters or "dataset" in filters
    served, served_positions = _NO_SERVED if unserved else analyst(db.limit_ms(timeout_ms), _served, filters)
    return SpeculativePublic(
        group_by=list(cols),
        runs=[SpeculativeRunRow(**r) for r in _records(runs)],
        acceptance=[AcceptanceRow(**r) for r in _records(acceptance, cols)],
        served=[ServedRow(**r) for r in _records(served)],
        served_acceptance=[ServedAcceptanceRow(**r) for r in _records(served_positions)],
    )
