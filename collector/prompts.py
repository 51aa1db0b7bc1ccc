"""Prompts from a JSONL file (`{"prompt": ...}` per line) as a Task, prompt-length checks, and a batch of
prompts encoded for the models (left padding)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from collector.methods.base import CollectContext
from collector.modeling import LoadedModel
from collector.tasks.base import Task, TaskItem
from warehouse.errors import UserError


def load_prompts_file(path: str, samples: int | None = None) -> Task:
    """A Task from a JSONL file; optional `id`, `reference` and `stop` fields are used when present."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"prompts file {path} does not exist; pass a JSONL file with a 'prompt' field")
    items: list[TaskItem] = []
    stops: set[str] = set()
    for n, line in enumerate(_lines(file), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path} line {n} is not valid JSON ({exc.msg}); write one JSON object per line"
            ) from exc
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise UserError(
                f"{path} line {n} has no string 'prompt' field; each line needs {{\"prompt\": ...}}"
            )
        ref = row.get("reference")
        items.append(TaskItem(str(row.get("id", n - 1)), row["prompt"], None if ref is None else str(ref)))
        stops.update(_stop_strings(row.get("stop", []), path, n))
    if not items:
        raise UserError(f'prompts file {path} holds no prompts; add lines like {{"prompt": "Once upon"}}')
    if samples is not None:
        items = items[:samples]
    return Task(name=f"prompts:{file.name}", items=tuple(items), stop_strings=tuple(sorted(stops)))


def _lines(file: Path) -> list[str]:
    """The file's lines as text; invalid UTF-8 is named by line and byte."""
    raw = file.read_bytes().splitlines()
    lines = []
    for n, line in enumerate(raw, start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{file} line {n} is not valid UTF-8: byte {exc.start + 1} of the line is "
                f"0x{line[exc.start]:02x} ({exc.reason}); save the file as UTF-8"
            ) from exc
    return lines


def _stop_strings(value: object, path: str, line: int) -> list[str]:
    """A line's `stop` field: a list of non-empty strings (a bare string would stop at each character)."""
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value
    raise UserError(
        f"{path} line {line}: 'stop' must be a list of non-empty strings, got {value!r}; "
        'write e.g. "stop": ["\\n\\n", "Question:"]'
    )


def max_token_chars(tokenizer: PreTrainedTokenizerBase) -> int:
    """The most characters one token can stand for: the longest vocabulary entry (byte-level BPE and
    SentencePiece spell each byte or character of a token with at least one character)."""
    key = id(tokenizer)
    if key not in _MAX_TOKEN_CHARS:
        _MAX_TOKEN_CHARS[key] = max((len(t) for t in tokenizer.get_vocab()), default=1)
    return _MAX_TOKEN_CHARS[key]


_MAX_TOKEN_CHARS: dict[int, int] = {}


def refuse_unfit_by_length(
    text: str, tokenizer: PreTrainedTokenizerBase, room: int, max_new_tokens: int, item_id: str
) -> None:
    """Refuse a prompt that cannot fit in `room` tokens whatever its tokens, before tokenizing it (a 5 MB
    prompt would take gigabytes to tokenize only to be refused)."""
    most = max_token_chars(tokenizer)
    if len(text) > max(room, 0) * most:
        raise UserError(
            f"prompt {item_id} has {len(text)} characters: at most {most} per token, that is over the "
            f"{max(room, 0)} prompt tokens the model leaves beside --max-new-tokens {max_new_tokens}; "
            "shorten it, use a smaller --max-new-tokens, or --truncate-prompt to cut it from the left"
        )


def check_prompt_length(
    n_prompt: int, max_new_tokens: int, context: int, truncate: bool, item_id: str
) -> int:
    """How many prompt tokens to keep; refuses a prompt that does not fit unless truncation is asked for."""
    room = context - max_new_tokens
    if n_prompt <= room:
        return n_prompt
    if truncate and room > 0:
        return room
    raise UserError(
        f"prompt {item_id} has {n_prompt} tokens; with --max-new-tokens {max_new_tokens} it needs "
        f"{n_prompt + max_new_tokens} positions but the model accepts {context}; "
        "use fewer shots, a smaller --max-new-tokens, or --truncate-prompt to cut it from the left"
    )


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, mode: str, model: str) -> bool:
    """Whether prompts go through the model's chat template (`--chat-template auto|on|off`)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise UserError(f"--chat-template on: {model} has no chat template; use --chat-template auto or off")
    return has and mode != "off"


def chat_prompt(tokenizer: PreTrainedTokenizerBase, item: TaskItem) -> str:
    """The item as the model's chat template writes it, up to the assistant's turn, then the item's cue."""
    turns = item.chat or (("user", item.prompt),)
    messages = [{"role": role, "content": text} for role, text in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text) + item.cue


def chat_task(task: Task, tokenizer: PreTrainedTokenizerBase, mode: str, model: str) -> Task:
    """The task with every prompt in the model's chat format when it applies (else the task as it is).

    The template's tokens are part of the prompt (stored as the sample's prompt, counted in its prompt
    tokens), so they never appear in the output.
    """
    if not uses_chat_template(tokenizer, mode, model):
        return task
    items = tuple(replace(item, prompt=chat_prompt(tokenizer, item)) for item in task.items)
    return replace(task, items=items)


def context_length(model: LoadedModel) -> int:
    """Positions the model accepts."""
    cfg = model.model.config
    value = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
    return int(value)


def prompt_ids(ctx: CollectContext, item: TaskItem) -> list[int]:
    """A prompt's token ids, cut from the left with --truncate-prompt; refuses one that cannot fit, by its
    length in characters before tokenizing where that already tells."""
    tok, cfg = ctx.llm.tokenizer, ctx.config
    limit = min(context_length(m) for m in (ctx.llm, ctx.slm))
    room = limit - cfg.max_new_tokens
    text = item.prompt
    if not cfg.truncate_prompt:
        refuse_unfit_by_length(text, tok, room, cfg.max_new_tokens, item.item_id)
    else:  # only the tail can be kept: tokenize no more of it than `room` tokens can cover
        text = text[-(max(room, 0) + 1) * max_token_chars(tok) :]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    keep = check_prompt_length(len(ids), cfg.max_new_tokens, limit, cfg.truncate_prompt, item.item_id)
    return list(ids[len(ids) - keep :]) if keep else [tok.eos_token_id]


def encode_batch(
    ctx: CollectContext, items: Sequence[TaskItem]
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-padded input ids and mask [B, P], and each prompt's token count (after any truncation)."""
    rows = [prompt_ids(ctx, item) for item in items]
    ids, mask = left_pad(rows, ctx.llm.tokenizer.pad_token_id, ctx.device)
    return ids, mask, [len(r) for r in rows]


def left_pad(
    rows: Sequence[Sequence[int]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask [B, P] of token id rows."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids.to(device), mask.to(device)
