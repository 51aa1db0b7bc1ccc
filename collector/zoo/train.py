"""Train the zoo: one tokenizer, four base GPT-NeoX models of growing size, a tuned smallest, a manifest."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

from collector.tasks.base import Task, TaskItem
from collector.tasks.builtin import load_builtin
from collector.tasks.builtin.world import BUILTIN_FAMILIES, STOP_STRINGS
from collector.tasks.checkers import build_program
from collector.zoo.corpus import (
    MAX_LENGTH,
    Corpora,
    build_corpora,
    save_tokenizer,
    token_stream,
    train_tokenizer,
)

SEQ_LEN = 320
BATCH = 4
EVAL_SAMPLES = 800
MAX_NEW_TOKENS = {"arith": 80, "choice": 32, "code": 40}
# Item fields that grade an item's difficulty, per task (accuracy is also reported per level of each; a
# level is named "field=value" where a task has more than one field).
LEVEL_FIELDS = {"arith": ("level",), "choice": ("band",), "code": ("lines", "band")}


@dataclass(frozen=True)
class ModelSpec:
    """Shape and training budget of one base model."""

    name: str
    hidden: int
    layers: int
    heads: int
    tokens: int
    lr: float


@dataclass(frozen=True)
class TunedSpec:
    """A model fine-tuned from a base model on the QA (instruction) format."""

    name: str
    base: str
    tokens: int
    lr: float


# Every base model sees the same BASE_TOKENS tokens in the same order (as the Pythia suite sees the same
# data), so what differs between sizes is capacity: how much of the fact base, the arithmetic and the code
# each holds.
BASE_TOKENS = 5_000_000
BASE_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("zoo-xs", hidden=16, layers=2, heads=1, tokens=BASE_TOKENS, lr=1e-2),
    ModelSpec("zoo-s", hidden=32, layers=3, heads=2, tokens=BASE_TOKENS, lr=8e-3),
    ModelSpec("zoo-m", hidden=64, layers=4, heads=4, tokens=BASE_TOKENS, lr=6e-3),
    ModelSpec("zoo-l", hidden=128, layers=6, heads=4, tokens=BASE_TOKENS, lr=3e-3),
)
TUNED_SPECS: tuple[TunedSpec, ...] = (TunedSpec("zoo-xs-tuned", base="zoo-xs", tokens=400_000, lr=3e-3),)


@dataclass(frozen=True)
class ModelReport:
    """What the manifest records about one trained model."""

    name: str
    params: int
    val_loss: float
    val_loss_qa: float
    accuracy: dict[str, float]
    accuracy_by_level: dict[str, dict[str, float]]
    eval_items: dict[str, int]
    tuned: bool
    base: str | None
    train_tokens: int
    train_seconds: float


def build_model(spec: ModelSpec, vocab_size: int, eos_id: int) -> GPTNeoXForCausalLM:
    """A freshly initialised Pythia-architecture model."""
    cfg = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=4 * spec.hidden,
        max_position_embeddings=MAX_LENGTH,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return GPTNeoXForCausalLM(cfg)


def count_params(model: torch.nn.Module) -> int:
    """Parameters counted from the weights."""
    return sum(p.numel() for p in model.parameters())


def _lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up then cosine decay to a tenth of the peak."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train_on_stream(model: GPTNeoXForCausalLM, stream: torch.Tensor, lr: float, desc: str) -> float:
    """Train in stream order on non-overlapping windows; returns the wall time in seconds."""
    n_windows = stream.numel() // SEQ_LEN
    data = stream[: n_windows * SEQ_LEN].view(n_windows, SEQ_LEN)  # [N, SEQ_LEN]
    steps = n_windows // BATCH
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, unit="step", mininterval=2.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr)
        batch = data[step * BATCH : (step + 1) * BATCH]  # [BATCH, SEQ_LEN]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def eval_loss(model: GPTNeoXForCausalLM, data: torch.Tensor) -> float:
    """Mean next-token loss over validation windows.  # data: [N, SEQ_LEN]"""
    model.eval()
    losses = [
        model(input_ids=data[i : i + 16], labels=data[i : i + 16]).loss for i in range(0, len(data), 16)
    ]
    return float(torch.stack(losses).mean())


def _truncate(text: str, stops: Sequence[str]) -> str:
    """Cut a continuation at the first stop string."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


@torch.no_grad()
def greedy_continuations(
    model: GPTNeoXForCausalLM, tok: PreTrainedTokenizerFast, prompts: Sequence[str], max_new: int
) -> list[str]:
    """Greedy continuations of prompts, batched with left padding."""
    tok.padding_side = "left"
    outs: list[str] = []
    for i in range(0, len(prompts), 32):
        enc = tok(list(prompts[i : i + 32]), return_tensors="pt", padding=True)
        gen = model.generate(
            **enc,
            max_new_tokens=max_new,
            do_sample=False,
            # Rows that reached a stop string only pad; the batch ends when every row has one.
            stop_strings=list(STOP_STRINGS),
            tokenizer=tok,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1] :]  # [B, max_new]
        outs.extend(tok.batch_decode(new, skip_special_tokens=True))
    return outs


# Code checks run in a sandboxed child process: a verdict is cached per (item, output) across models.
_CODE_VERDICTS: dict[tuple[str, str], bool] = {}


def _verdict(task: Task, item: TaskItem, output: str) -> bool:
    """The task's checker on one output (code verdicts cached)."""
    if task.name != "builtin:code":
        return bool(task.check(item, output))
    key = (item.item_id, output)
    if key not in _CODE_VERDICTS:
        try:  # a program that does not compile fails without a sandboxed run
            compile(build_program(item, output), "<answer>", "exec")
        except (SyntaxError, ValueError):
            _CODE_VERDICTS[key] = False
        else:
            _CODE_VERDICTS[key] = bool(task.check(item, output))
    return _CODE_VERDICTS[key]


def task_accuracy(
    model: GPTNeoXForCausalLM, tok: PreTrainedTokenizerFast, samples: int = EVAL_SAMPLES
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
    """Greedy accuracy on a seeded sample of each built-in test split: overall, per level, item count."""
    acc: dict[str, float] = {}
    by_level: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for family in BUILTIN_FAMILIES:
        task = load_builtin(family, samples=samples, seed=0)
        outs = greedy_continuations(model, tok, [it.prompt for it in task.items], MAX_NEW_TOKENS[family])
        right = [
            _verdict(task, it, _truncate(o, task.stop_strings))
            for it, o in zip(task.items, outs, strict=True)
        ]
        acc[task.name] = round(sum(right) / len(right), 4)
        counts[task.name] = len(right)
        fields = LEVEL_FIELDS.get(family, ())
        levels: dict[str, list[bool]] = {}
        for field in fields:
            for it, ok in zip(task.items, right, strict=True):
                value = it.get(field) or "?"
                levels.setdefault(value if len(fields) == 1 else f"{field}={value}", []).append(ok)
        if levels:
            by_level[task.name] = {lv: round(sum(v) / len(v), 4) for lv, v in sorted(levels.items())}
    return acc, by_level, counts


def _report(
    model: GPTNeoXForCausalLM,
    tok: PreTrainedTokenizerFast,
    corpora: Corpora,
    info: tuple[str, str | None, int, float],
    eval_samples: int,
) -> ModelReport:
    """Measure one trained model."""
    name, base, tokens, seconds = info
    accuracy, by_level, counts = task_accuracy(model, tok, eval_samples)
    return ModelReport(
        name=name,
        params=count_params(model),
        val_loss=round(eval_loss(model, corpora.valid), 4),
        val_loss_qa=round(eval_loss(model, corpora.valid_qa), 4),
        accuracy=accuracy,
        accuracy_by_level=by_level,
        eval_items=counts,
        tuned=base is not None,
        base=base,
        train_tokens=tokens,
        train_seconds=round(seconds, 1),
    )


def _save(model: GPTNeoXForCausalLM, tok: PreTrainedTokenizerFast, path: Path) -> None:
    """Save weights (fp32 safetensors), config and tokenizer."""
    model.save_pretrained(str(path), safe_serialization=True)
    save_tokenizer(tok, path)


def write_manifest(reports: Sequence[ModelReport], out: Path) -> None:
    """zoo.json: one object per model, base models by size, tuned last."""
    rows = [asdict(r) for r in reports]
    (out / "zoo.json").write_text(json.dumps(rows, indent=2) + "\n")


def seed_everything(seed: int) -> None:
    """Seed every generator training touches."""
    random.seed(seed)
    torch.manual_seed(seed)


REPORT_NAME = "train_report.json"


def _finished(path: Path, resume: bool) -> ModelReport | None:
    """The report of a model an interrupted run already finished, when resuming."""
    report = path / REPORT_NAME
    if not (resume and report.is_file() and (path / "model.safetensors").is_file()):
        return None
    return ModelReport(**json.loads(report.read_text()))


def _finish(model: GPTNeoXForCausalLM, tok: PreTrainedTokenizerFast, report: ModelReport, out: Path) -> None:
    """Save a trained model and its report (the report last: it marks the model done for --resume)."""
    _save(model, tok, out / report.name)
    (out / report.name / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2) + "\n")


def train_family(
    out: Path,
    seed: int = 0,
    *,
    scale: float = 1.0,
    threads: int = 1,
    eval_samples: int = EVAL_SAMPLES,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> list[ModelReport]:
    """Reproduce the whole zoo from a seed into `out`; `scale` shrinks every budget for quick probes."""
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    tok = train_tokenizer(seed)
    corpora = build_corpora(tok, seed, int(max(s.tokens for s in BASE_SPECS) * scale), SEQ_LEN)
    log(f"tokenizer: {len(tok)} tokens; corpus stream: {corpora.train.numel():,} tokens")
    reports = []
    for spec in BASE_SPECS:
        report = _finished(out / spec.name, resume)
        if report is None:
            seed_everything(seed)
            model = build_model(spec, len(tok), tok.eos_token_id)
            tokens = int(spec.tokens * scale)
            seconds = train_on_stream(model, corpora.train[:tokens], spec.lr, spec.name)
            report = _report(model, tok, corpora, (spec.name, None, tokens, seconds), eval_samples)
            _finish(model, tok, report, out)
        reports.append(report)
        log(f"{spec.name}: {report}")
    for tspec in TUNED_SPECS:
        report = _finished(out / tspec.name, resume)
        if report is None:
            seed_everything(seed)
            model = GPTNeoXForCausalLM.from_pretrained(str(out / tspec.base))
            tokens = int(tspec.tokens * scale)
            seconds = train_on_stream(
                model, token_stream(tok, seed, tokens, tuned=True), tspec.lr, tspec.name
            )
            report = _report(model, tok, corpora, (tspec.name, tspec.base, tokens, seconds), eval_samples)
            _finish(model, tok, report, out)
        reports.append(report)
        log(f"{tspec.name}: {report}")
    write_manifest(reports, out)
    return reports
