"""The architecture matrix: every method on tiny random models of many transformers architectures (built
from configs, the zoo's tokenizer), at batch 1 and 4, against the LLM's own greedy `generate`; windows of 8
tokens, shorter than prompt + output; calibration on. Sampled and routed runs, whose text is not the LLM's
greedy text, are checked token by token against teacher-forced passes of both models over that text.
Recurrent and hybrid models run every method but speculative, which is refused before any model runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from collector.architectures import ArchitectureError, classify
from collector.calibration import calibrate
from collector.config import RunConfig
from collector.decode import batch_collector
from collector.modeling import LoadedModel, ModelLoadError
from tests.arch_models import ATTENTION, NOT_CAUSAL, RECURRENT, WINDOWED, make_arch_model, zoo_tokenizer
from tests.collector.helpers import (
    PROMPTS,
    collect_events,
    context,
    llm_greedy,
    loaded,
    one_thread,  # noqa: F401  (fixture)
    task_of,
    tokens_by_sample,
)
from tests.models import make_model, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
MAX_NEW = 10
PROMPTS_4 = PROMPTS[:4]  # 3 to 10 tokens: with 10 new ones every sequence outgrows an 8-token window
BATCHES = ((4, PROMPTS_4), (1, PROMPTS_4[3:]))  # batch 4 (left padded), batch 1 on the longest prompt
# method name -> RunConfig settings; each one's text is the LLM's greedy text unless it samples or routes
METHODS: dict[str, dict[str, Any]] = {
    "oracle": {},
    "speculative": {"method": "speculative", "draft_k": 3},
    "speculative-sampling": {"method": "speculative", "draft_k": 3, "temperature": 1.0, "seed": 7},
    "contrastive": {"method": "contrastive", "lam": 1.0},
    "proxy": {"method": "proxy", "weight": 0.0},
    "router": {"router": "entropy"},  # threshold: the median System 1 entropy of the oracle run
}
FOLLOWS_GREEDY = ("oracle", "speculative", "contrastive", "proxy")


@pytest.fixture(scope="module")
def arch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("architectures")


def _model(root: Path, name: str, seed: int) -> Path:
    return make_arch_model(root / f"{name}-{seed}", name, zoo_tokenizer(), seed)


def _reference(llm: LoadedModel, prompts: tuple[str, ...]) -> dict[int, list[int]]:
    """The LLM's greedy `generate` at batch 1, cut after its first EOS (where the collector stops)."""
    eos, out = llm.tokenizer.eos_token_id, {}
    for i, prompt in enumerate(prompts):
        tokens = llm_greedy(llm, prompt, MAX_NEW)
        out[i] = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens
    return out


def _teacher_forced(model: LoadedModel, prompt: str, emitted: list[int], vocab: int) -> list[int]:
    """The model's argmax after each prefix of `emitted`, from one uncached pass over prompt + emitted."""
    ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model.model(input_ids=torch.tensor([ids + emitted])).logits[0, :, :vocab]
    return logits[len(ids) - 1 : len(ids) - 1 + len(emitted)].argmax(-1).tolist()  # type: ignore[no-any-return]


def _column(events: pa.Table, name: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for sid, v in zip(events.column("sample_id").to_pylist(), events.column(name).to_pylist(), strict=True):
        out.setdefault(sid, []).append(v)
    return out


def _check_run(
    name: str, config: RunConfig, reference: dict[int, list[int]], batches: tuple[Any, ...] = BATCHES
) -> tuple[list[str], pa.Table]:
    """Failures of one method at batch 4 and 1 (texts against the reference or teacher-forced passes), and
    the events of the first batch size."""
    ctx, failures, first = context(config), [], None
    llm, slm = ctx.llm, ctx.system1
    for batch, prompts in batches:
        events = collect_events(ctx, batch_collector(config), prompts, batch)
        first = events if first is None else first
        got, consulted = tokens_by_sample(events), _column(events, "consulted")
        llm_top = _column(events, "llm_token_id")
        for i, prompt in enumerate(prompts):
            tokens, sid = got[i], PROMPTS_4.index(prompt)
            if name in FOLLOWS_GREEDY:
                ok = tokens == reference[sid]
            else:  # every token the LLM's argmax where System 2 chose it, else System 1's (router)
                l_tf = _teacher_forced(llm, prompt, tokens, ctx.vocab)
                ok = llm_top[i] == l_tf and len(tokens) == len(reference[sid])
                if name == "router":
                    s_tf = _teacher_forced(slm, prompt, tokens, ctx.vocab)
                    want = [lt if c else st for lt, st, c in zip(l_tf, s_tf, consulted[i], strict=True)]
                    ok = ok and tokens == want
            if not ok:
                failures.append(f"{name} batch {batch} prompt {sid}: {tokens} vs {reference[sid]}")
    assert first is not None
    if name == "router":  # both systems wrote some tokens
        n_consulted = sum(first.column("consulted").to_pylist())
        failures += [] if 0 < n_consulted < first.num_rows else [f"router consulted {n_consulted} tokens"]
    return failures, first


def _check_refused(config: RunConfig, model_type: str) -> None:
    with pytest.raises(ArchitectureError) as refused:
        context(config)
    line = str(refused.value)
    assert "\n" not in line and f"--method {config.method}" in line and model_type in line, line
    assert "use a method that never rolls back: oracle" in line or "use --method oracle" in line, line


def _base(llm: Path, slm: Path) -> RunConfig:
    return RunConfig(llm=str(llm), slm=str(slm), slm_tuned=str(slm), prompts="unused", max_new_tokens=MAX_NEW)


def _state(config: RunConfig) -> tuple[str, str] | None:
    """(kind, model type) of the pair's first model that carries a state, if any."""
    for path in (config.llm, config.slm):
        kind = classify(path, loaded(path).model).kind
        if kind != "attention":
            return kind, str(loaded(path).model.config.model_type)
    return None


def _refused(config: RunConfig, state: tuple[str, str] | None) -> bool:
    """What must be refused: speculative decoding on a recurrent state, and on a state kept outside the
    cache (RWKV) everything but the oracle's generate at batch 1."""
    if state is None:
        return False
    if state[0] == "own_state":
        return not (config.method == "oracle" and config.router == "always" and config.batch_size == 1)
    return config.method == "speculative"


def check_pair(llm: Path, slm: Path) -> None:
    """Every method on the pair at batch 4 and 1: identical to the LLM's greedy text, or refused."""
    base = _base(llm, slm)
    state = _state(base)
    if state is not None and state[0] == "own_state":  # RWKV: the oracle's generate, one prompt at a time
        base = replace(base, batch_size=1)
    reference = _reference(loaded(llm), PROMPTS_4)
    failures: list[str] = []
    entropy: pa.Table | None = None
    for name, settings in METHODS.items():
        config = replace(base, **settings)
        if name == "router" and entropy is not None:  # about half the tokens consulted
            config = replace(config, threshold=float(np.median(entropy.column("s1_entropy").to_numpy())))
        if _refused(config, state):
            assert state is not None
            _check_refused(config, state[1])
            continue
        more, events = _check_run(name, config, reference, BATCHES[1:] if config.batch_size == 1 else BATCHES)
        failures += more
        entropy = events if entropy is None else entropy
    assert not failures, "\n".join(failures)


def _slow_if(names: dict[str, Any], slow: set[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


@pytest.mark.parametrize("name", [*ATTENTION, *WINDOWED])
def test_attention_architectures_are_token_identical(arch_dir: Path, name: str) -> None:
    check_pair(_model(arch_dir, name, 1), _model(arch_dir, name, 2))


@pytest.mark.parametrize("name", list(RECURRENT))
def test_recurrent_architectures_run_or_refuse_speculative(arch_dir: Path, name: str) -> None:
    check_pair(_model(arch_dir, name, 1), _model(arch_dir, name, 2))


@pytest.mark.parametrize(
    ("llm", "slm"), [("llama", "qwen2"), ("gemma2", "mistral"), ("gpt_neox", "mamba"), ("jamba", "llama")]
)
def test_mixed_architecture_pairs_share_a_tokenizer(arch_dir: Path, llm: str, slm: str) -> None:
    check_pair(_model(arch_dir, llm, 1), _model(arch_dir, slm, 2))


@pytest.mark.parametrize(
    ("name", "method"), [("gemma2", "speculative"), ("mamba", "oracle"), ("jamba", "oracle")]
)
def test_calibration_times_cycles_only_where_speculative_runs(arch_dir: Path, name: str, method: str) -> None:
    """Calibration (on in every run) times speculative cycles for an oracle or speculative run; on a
    recurrent pair it times the rest and no cycle, and the run after it is still token-identical."""
    base = replace(_base(_model(arch_dir, name, 1), _model(arch_dir, name, 2)), method=method, draft_k=2)
    costs = calibrate(context(base), task_of(PROMPTS_4[:1]).items, None, f"calibration-{name}").costs
    kinds = {c.kind for c in costs}
    assert ("cycle" in kinds) == (_state(base) is None) and "llm_generate" in kinds, kinds
    failures, _ = _check_run(method, base, _reference(loaded(base.llm), PROMPTS_4))
    assert not failures, failures


@pytest.mark.parametrize("name", list(NOT_CAUSAL))
def test_models_that_are_not_causal_lms_are_refused(arch_dir: Path, name: str) -> None:
    path = _model(arch_dir, name, 1)
    for method in ("oracle", "speculative"):
        config = RunConfig(llm=str(path), slm=str(path), prompts="unused", method=method)
        with pytest.raises(ArchitectureError, match="is not a causal language model") as refused:
            context(config)
        assert "\n" not in str(refused.value) and name in str(refused.value)


def test_mixed_architectures_with_other_tokenizers_are_refused(arch_dir: Path) -> None:
    other = make_tokenizer(arch_dir / "tok2", seed_text="zebra quilt xylophone jukebox ")
    foreign = make_model(arch_dir / "foreign-neox", other, hidden=32, layers=2, seed=3)
    config = RunConfig(llm=str(_model(arch_dir, "llama", 1)), slm=str(foreign), prompts="unused")
    with pytest.raises(ModelLoadError, match="tokenizers differ at id"):
        context(config)
