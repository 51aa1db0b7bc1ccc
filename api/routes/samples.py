"""GET /v1/runs/{run_id}/samples and /v1/runs/{run_id}/samples/{sample_id}: what was written, by token."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field, create_model

from api.convert import list_of, table_model
from api.db import select
from api.deps import CursorDep, DbDep, Keyset, Limit, PageCursor, SettingsDep, TimeoutMs
from api.errors import ApiError, error_responses
from api.routes.runs import RunId, require_run
from api.tokens import load_tokenizer, token_texts

router = APIRouter(prefix="/v1", tags=["samples"])
MAX_SAMPLE_TOKENS = 100_000  # a sample longer than this is cut (and says so)


# The stored columns of a sample (every `samples` column but the run the route names).
SampleColumns: Any = table_model(
    "samples", "SampleColumns", "A sample's row of `samples`.", exclude=("run_id",)
)
SamplePublic: Any = create_model(
    "SamplePublic",
    __doc__="One prompt of a run and what the collaboration wrote for it.",
    __base__=SampleColumns,
    mismatches=(int, Field(description="tokens System 2 changed")),
    cof=(float | None, Field(description="mismatches / generated tokens")),
)
SamplesPublic: Any = create_model(
    "SamplesPublic",
    __doc__="A page of samples; `next_cursor` fetches the next one.",
    run_id=(int, ...),
    data=(list_of(SamplePublic), ...),
    next_cursor=(str | None, ...),
    truncated=(bool, ...),
)


WrittenBy: Any = Literal["s1", "s2"]
# The stored columns of a token (every `token_events` column but the keys the sample already names).
TokenColumns: Any = table_model(
    "token_events", "TokenColumns", "A token's row of `token_events`.", exclude=("run_id", "sample_id")
)
TokenPublic: Any = create_model(
    "TokenPublic",
    __doc__="One generated token: its text, who wrote it, and both systems' view of it.",
    __base__=TokenColumns,
    text=(
        str | None,
        Field(description="the token's text (null when the run's tokenizer is not on this host)"),
    ),
    written_by=(WrittenBy, Field(description="s2 when System 2 changed System 1's choice")),
    s1_text=(str | None, ...),
    llm_text=(str | None, ...),
)
SampleDetailPublic: Any = create_model(
    "SampleDetailPublic",
    __doc__="A sample with its token events in order.",
    __base__=SamplePublic,
    run_id=(int, ...),
    tokenizer=(str | None, Field(description="the model path whose tokenizer decoded the text, if found")),
    tokens=(list_of(TokenPublic), ...),
    truncated=(bool, ...),
)


SAMPLE_COLUMNS = ", ".join(f"s.{c}" for c in SampleColumns.model_fields)
# per-sample sums are written at ingest (`sample_sums`), so a page costs the same at any size
LISTED = (
    f"{SAMPLE_COLUMNS}, CAST(coalesce(ss.mismatches, 0) AS BIGINT) AS mismatches, "
    "CAST(ss.mismatches AS DOUBLE) / nullif(ss.tokens, 0) AS cof"
)
SAMPLE_PAGES = Keyset(("after",), ("s.sample_id",))
SAMPLES_FROM = "samples s LEFT JOIN sample_sums ss ON ss.run_id = s.run_id AND ss.sample_id = s.sample_id"
EVENT_COLUMNS = ", ".join(TokenColumns.model_fields)
SampleId = Annotated[int, Path(ge=0, le=2**31 - 1, description="a sample_id of the run")]
_ERRORS = error_responses(400, 401, 404, 405, 500, 503)


@router.get("/runs/{run_id}/samples", response_model=SamplesPublic, responses=_ERRORS)
def list_samples(
    run_id: RunId,
    cur: CursorDep,
    db: DbDep,
    settings: SettingsDep,
    limit: Limit = 100,
    cursor: PageCursor = None,
    timeout_ms: TimeoutMs = None,
) -> Any:
    """The run's samples in id order: prompt, output, tokens, CoF, correct, stop reason."""
    limit_ms = db.limit_ms(timeout_ms)
    require_run(cur, run_id, limit_ms)
    after, params = SAMPLE_PAGES.after(cursor)
    page = min(limit, settings.max_rows)
    rows = select(
        cur,
        f"SELECT {LISTED} FROM {SAMPLES_FROM} WHERE s.run_id = ? AND {after} "
        f"ORDER BY {SAMPLE_PAGES.order_by} LIMIT ?",
        [run_id, *params, page + 1],
        limit_ms,
    )
    shown = SAMPLE_PAGES.page(rows, page, lambda r: (r["sample_id"],))
    data = [SamplePublic(**r) for r in shown.rows]
    return SamplesPublic(run_id=run_id, data=data, next_cursor=shown.next_cursor, truncated=shown.truncated)


def _tokens(rows: list[dict[str, object]], model_path: str | None) -> list[Any]:
    tok = load_tokenizer(model_path) if model_path else None
    texts = token_texts(tok, [int(r["token_id"]) for r in rows])  # type: ignore[call-overload]
    s1 = token_texts(tok, [int(r["s1_token_id"]) for r in rows])  # type: ignore[call-overload]
    llm = token_texts(tok, [int(r["llm_token_id"]) for r in rows])  # type: ignore[call-overload]
    return [
        TokenPublic(
            **r,
            text=t,
            s1_text=a,
            llm_text=b,
            written_by="s2" if r["mismatch"] else "s1",
        )
        for r, t, a, b in zip(rows, texts, s1, llm, strict=True)
    ]


@router.get("/runs/{run_id}/samples/{sample_id}", response_model=SampleDetailPublic, responses=_ERRORS)
def get_sample(
    run_id: RunId, sample_id: SampleId, cur: CursorDep, db: DbDep, timeout_ms: TimeoutMs = None
) -> Any:
    """One sample with every token event in order, each with its text and who wrote it."""
    limit_ms = db.limit_ms(timeout_ms)
    found = select(
        cur,
        f"SELECT {SAMPLE_COLUMNS}, m.path AS model_path FROM samples s JOIN runs r ON r.run_id = s.run_id "
        "LEFT JOIN models m ON m.name = r.llm WHERE s.run_id = ? AND s.sample_id = ?",
        [run_id, sample_id],
        limit_ms,
    )
    if not found:
        raise ApiError(
            404,
            "not_found",
            f"run {run_id} has no sample {sample_id}; list them at /v1/runs/{run_id}/samples",
        )
    sample = found[0]
    model_path = sample.pop("model_path")
    events = select(
        cur,
        f"SELECT {EVENT_COLUMNS} FROM token_events WHERE run_id = ? AND sample_id = ? ORDER BY step LIMIT ?",
        [run_id, sample_id, MAX_SAMPLE_TOKENS + 1],
        limit_ms,
    )
    truncated = len(events) > MAX_SAMPLE_TOKENS
    tokens = _tokens(events[:MAX_SAMPLE_TOKENS], model_path)
    tok_found = model_path if model_path and load_tokenizer(model_path) else None
    mismatches = sum(t.mismatch for t in tokens)
    n = int(sample["n_tokens"])
    return SampleDetailPublic(
        **sample,
        run_id=run_id,
        mismatches=mismatches,
        cof=mismatches / n if n else None,
        tokenizer=tok_found,
        tokens=tokens,
        truncated=truncated,
    )
