"""`python -m warehouse import vllm|sglang|trtllm FILE.jsonl`: serving engines' per-request acceptance in.

FILE holds one JSON object per line, each a response as the engine's HTTP API returned it. What is read:

- vLLM (docs v0.32 "Per-Request Acceptance Metrics", `--per-request-spec-decode-metrics summary|detailed`):
  the root `metrics.speculative_decoding` object: `num_spec_tokens` (K), `num_draft_tokens`,
  `num_accepted_draft_tokens`, `num_spec_steps`, `acceptance_histogram` (dense: index j = steps that
  accepted exactly j drafts), and with `detailed` `per_step_drafted` / `per_step_accepted`; the model from
  `model`, the output length from `usage.completion_tokens`.
- SGLang (`/generate`'s `meta_info`, or `choices[0].meta_info` of its OpenAI routes; the fields its
  tokenizer manager writes): `spec_verify_ct` (steps), `spec_draft_token_num`, `spec_accept_token_num`
  (newer: `spec_proposed_drafts`, `spec_accepted_drafts`), `spec_accept_histogram` (dense, as vLLM's);
  K = the histogram's length − 1 unless `--k` says.
- TensorRT-LLM (`trtllm-serve` with `return_perf_metrics`: `request_perf_metrics`, at the root or in
  `choices[0]`): `speculative_decoding.total_draft_tokens`, `.total_accepted_draft_tokens`; no histogram
  and no step count, so `--k` is needed and steps = drafted / K where that divides.

The draft model is in no engine's response (`--draft`); SGLang and TensorRT-LLM name no model either
(`--model`). Name both as the warehouse does (`zoo:zoo-l`, a model path) so `analytics.advise --against`
finds the oracle run of the same pair. A line that is not JSON, lacks the fields or contradicts itself is
counted and reported with its number; the rest go in, in one transaction. A line already imported (same
engine and bytes) adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.db import WarehouseError

ENGINES = ("vllm", "sglang", "trtllm")


class Malformed(ValueError):
    """Why one line cannot be imported."""


@dataclass(frozen=True)
class ServedRecord:
    """One request's acceptance, engine-neutral (histogram: index j = steps that accepted exactly j)."""

    model: str | None
    k: int | None
    drafted: int
    accepted: int
    steps: int | None
    completion_tokens: int | None
    histogram: tuple[int, ...] = ()
    per_step: tuple[tuple[int, int], ...] = ()  # (drafted, accepted) per verify step


def _int(obj: dict[str, Any], *names: str) -> int:
    for name in names:
        value = obj.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise Malformed(f"{name} is negative ({value})")
            return value
    raise Malformed(f"no integer {' or '.join(names)}")


def _histogram(value: Any, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise Malformed(f"{name} is not a list of counts")
    return tuple(value)


def parse_vllm(obj: dict[str, Any]) -> ServedRecord:
    """vLLM's `metrics.speculative_decoding` (see the module docstring)."""
    spec = (obj.get("metrics") or {}).get("speculative_decoding")
    if not isinstance(spec, dict):
        raise Malformed("no metrics.speculative_decoding (start vLLM with --per-request-spec-decode-metrics)")
    per_step: tuple[tuple[int, int], ...] = ()
    if spec.get("per_step_drafted") is not None or spec.get("per_step_accepted") is not None:
        drafted, accepted = spec.get("per_step_drafted"), spec.get("per_step_accepted")
        if not isinstance(drafted, list) or not isinstance(accepted, list) or len(drafted) != len(accepted):
            raise Malformed("per_step_drafted and per_step_accepted are not lists of one length")
        per_step = tuple(zip(drafted, accepted, strict=True))
    usage = obj.get("usage") or {}
    return ServedRecord(
        model=obj.get("model"), k=_int(spec, "num_spec_tokens"), drafted=_int(spec, "num_draft_tokens"),
        accepted=_int(spec, "num_accepted_draft_tokens"), steps=_int(spec, "num_spec_steps"),
        completion_tokens=usage.get("completion_tokens"),
        histogram=_histogram(spec.get("acceptance_histogram"), "acceptance_histogram"), per_step=per_step,
    )  # fmt: skip


def parse_sglang(obj: dict[str, Any]) -> ServedRecord:
    """SGLang's `meta_info` (see the module docstring)."""
    meta = obj.get("meta_info")
    if meta is None and isinstance(obj.get("choices"), list) and obj["choices"]:
        meta = obj["choices"][0].get("meta_info")
    if not isinstance(meta, dict):
        raise Malformed("no meta_info (SGLang reports acceptance there)")
    histogram = _histogram(meta.get("spec_accept_histogram"), "spec_accept_histogram")
    return ServedRecord(
        model=None, k=len(histogram) - 1 if histogram else None,
        drafted=_int(meta, "spec_draft_token_num", "spec_proposed_drafts", "spec_num_proposed_drafts"),
        accepted=_int(meta, "spec_accept_token_num", "spec_accepted_drafts", "spec_num_correct_drafts"),
        steps=_int(meta, "spec_verify_ct"), completion_tokens=meta.get("completion_tokens"),
        histogram=histogram,
    )  # fmt: skip


def parse_trtllm(obj: dict[str, Any]) -> ServedRecord:
    """TensorRT-LLM's `request_perf_metrics.speculative_decoding` (see the module docstring)."""
    perf = obj.get("request_perf_metrics")
    if perf is None and isinstance(obj.get("choices"), list) and obj["choices"]:
        perf = obj["choices"][0].get("request_perf_metrics")
    spec = perf.get("speculative_decoding") if isinstance(perf, dict) else None
    if not isinstance(spec, dict):
        raise Malformed(
            "no request_perf_metrics.speculative_decoding (ask trtllm-serve for return_perf_metrics)"
        )
    usage = obj.get("usage") or {}
    return ServedRecord(
        model=obj.get("model"), k=None, drafted=_int(spec, "total_draft_tokens"),
        accepted=_int(spec, "total_accepted_draft_tokens"), steps=None,
        completion_tokens=usage.get("completion_tokens"),
    )  # fmt: skip


PARSERS: dict[str, Callable[[dict[str, Any]], ServedRecord]] = {
    "vllm": parse_vllm,
    "sglang": parse_sglang,
    "trtllm": parse_trtllm,
}


def checked(record: ServedRecord, k: int | None) -> ServedRecord:
    """The record with K from `--k` where the engine gives none (and steps derived from it where the
    engine gives no count); a record whose counts contradict each other raises Malformed."""
    k = record.k if record.k is not None else k
    steps = record.steps
    if steps is None and k and record.drafted % k == 0:
        steps = record.drafted // k
    if record.accepted > record.drafted:
        raise Malformed(f"accepted {record.accepted} > drafted {record.drafted}")
    if record.histogram:
        if steps is not None and sum(record.histogram) != steps:
            raise Malformed(f"the histogram counts {sum(record.histogram)} steps, the response {steps}")
        if sum(j * n for j, n in enumerate(record.histogram)) != record.accepted:
            raise Malformed("the histogram's accepted drafts differ from the accepted count")
    if record.per_step and (sum(d for d, _ in record.per_step), sum(a for _, a in record.per_step)) != (
        record.drafted,
        record.accepted,
    ):
        raise Malformed("the per-step arrays do not add up to the drafted and accepted counts")
    return ServedRecord(record.model, k, record.drafted, record.accepted, steps, record.completion_tokens,
                        record.histogram, record.per_step)  # fmt: skip


@dataclass
class ImportReport:
    """What one import did."""

    import_id: int
    imported: int = 0
    already: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def read_lines(
    path: Path, engine: str, k: int | None
) -> tuple[list[tuple[int, str, ServedRecord]], list[tuple[int, str]]]:
    """(line number, import key, record) of each good line; (line number, why) of each bad one."""
    if engine not in PARSERS:
        raise WarehouseError(f"unknown engine {engine!r}; give one of {', '.join(ENGINES)}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise WarehouseError(f"cannot read {path}: {exc.strerror or exc}") from exc
    good, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise Malformed("not a JSON object")
            record = checked(PARSERS[engine](obj), k)
        except json.JSONDecodeError as exc:
            bad.append((number, f"not JSON ({exc.msg})"))
            continue
        except Malformed as exc:
            bad.append((number, str(exc)))
            continue
        key = hashlib.sha256(f"{engine}\n{line.strip()}".encode()).hexdigest()
        good.append((number, key, record))
    return good, bad


def import_served(
    con: duckdb.DuckDBPyConnection, path: Path, engine: str, *, model: str | None, draft: str, k: int | None
) -> ImportReport:
    """Import FILE's responses in one transaction (see the module docstring)."""
    good, bad = read_lines(path, engine, k)
    if model is None and any(rec.model is None for _, _, rec in good):
        raise WarehouseError(f"{engine} responses name no model: give --model (as the warehouse names it)")
    con.execute("BEGIN")
    try:
        row = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM served_requests").fetchone()
        report = ImportReport(int(row[0]) if row else 1, malformed=bad)
        known = {r[0] for r in con.execute("SELECT import_key FROM served_requests").fetchall()}
        now = datetime.now(UTC).replace(tzinfo=None)
        for number, key, rec in good:
            if key in known:
                report.already += 1
                continue
            name = model or rec.model
            if not name:
                raise WarehouseError(
                    f"{engine} responses name no model: give --model (as the warehouse names it)"
                )
            known.add(key)
            inserted = con.execute(
                """INSERT INTO served_requests (import_id, import_key, engine, model, draft, k, drafted,
                       accepted, steps, completion_tokens, source, line, imported_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING request_id""",
                [report.import_id, key, engine, model or rec.model, draft, rec.k, rec.drafted, rec.accepted,
                 rec.steps, rec.completion_tokens, str(path), number, now],
            ).fetchone()  # fmt: skip
            request_id = int(inserted[0]) if inserted else 0
            hist = [(request_id, j, n) for j, n in enumerate(rec.histogram) if n]
            if hist:
                con.executemany("INSERT INTO served_histogram VALUES (?, ?, ?)", hist)
            if rec.per_step:
                steps = [(request_id, i, d, a) for i, (d, a) in enumerate(rec.per_step)]
                con.executemany("INSERT INTO served_steps VALUES (?, ?, ?, ?)", steps)
            report.imported += 1
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def print_report(report: ImportReport, path: Path, engine: str) -> None:
    """What an import did, each malformed line with its number and why."""
    print(
        f"import {report.import_id}: {report.imported} request(s) from {path} ({engine}); "
        f"{report.already} already imported; {len(report.malformed)} malformed"
    )
    for number, why in report.malformed:
        print(f"  line {number}: {why}")
    if report.imported:
        print(f"compare with the replay: python -m analytics.advise --against {report.import_id}")
