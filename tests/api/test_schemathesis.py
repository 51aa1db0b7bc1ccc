"""schemathesis against the app's own OpenAPI document: no server error, every response as documented.

Each GET operation gets bounded positive and negative examples (derandomised, so a run is repeatable).
The operations are driven through schemathesis' strategies directly (its pytest plugin needs an older pytest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import CheckContext, GenerationMode
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.app import create_app
from api.settings import ApiSettings

DOCUMENT = create_app(ApiSettings(warehouse=Path("unused.duckdb"))).openapi()
PATHS = sorted(DOCUMENT["paths"])
# negative examples need a parameter to break
CASES = [
    (path, mode)
    for path in PATHS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or DOCUMENT["paths"][path]["get"].get("parameters")
]
EXAMPLES = 8  # per operation and mode: 29 × 8 requests, well under a minute on two busy cores
# The schema cannot say these: a cursor's content, parameters that exclude one another, which experiments
# the file holds.
UNSAYABLE = {"invalid_cursor", "conflicting_parameters", "missing_parameter", "unknown_experiment"}


def valid_data_accepted(ctx: CheckContext, response: Response, case: schemathesis.Case) -> None:
    """A schema-valid request is refused (400) only for what the schema cannot express."""
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code == 400:
        code = response.json()["error"]["code"]
        assert code in UNSAYABLE, f"schema-valid request refused: {response.text}"


@pytest.fixture(scope="module")
def api_schema(rich_warehouse: Path) -> Iterator[OpenApiSchema]:
    app = create_app(ApiSettings(warehouse=rich_warehouse, ingest=False, max_rows=20))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.db.close()


@pytest.mark.parametrize(("path", "mode"), CASES, ids=[f"{p}-{m.value}" for p, m in CASES])
def test_operation_matches_the_document(api_schema: OpenApiSchema, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            excluded_checks=[positive_data_acceptance], additional_checks=[valid_data_accepted]
        )

    check()


def test_every_route_is_in_the_document() -> None:
    expected = {
        "/health", "/v1/models", "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/samples",
        "/v1/runs/{run_id}/samples/{sample_id}", "/v1/runs/{run_id}/events", "/v1/cof", "/v1/scaling",
        "/v1/scaling/predict", "/v1/uncertainty", "/v1/positions", "/v1/routers/replay", "/v1/routers/best",
        "/v1/speculative",
    }  # fmt: skip
    assert expected <= set(PATHS)
