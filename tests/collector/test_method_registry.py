"""The method registry and the vocabulary end to end: every method of the vocabulary has its spec, and a
threshold router and a lock-step method added through their one place each (a row of the vocabulary; a
spec) run through the collector into a real warehouse, and the router is replayed offline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
import torch

from analytics.routers import replay
from collector import methods
from collector.config import RunConfig
from collector.engine import run_collection
from collector.methods import method_spec, method_specs
from collector.methods.base import CollectContext, LockstepRule, MethodSpec, StepChoice
from collector.modeling import shared_vocab_size
from collector.token_stats import log_probs
from tests.collector.helpers import loaded, one_thread  # noqa: F401  (fixture)
from tests.conftest import TinyModels
from warehouse import vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")
TAU = 0.00427  # System 1's top probability on the tiny random models lies around it (both sides)


def test_every_method_of_the_vocabulary_has_its_spec() -> None:
    specs = method_specs()
    assert tuple(s.name for s in specs) == vocabulary.methods()
    for spec in specs:
        assert spec.term is vocabulary.METHOD_TERMS[spec.name]
        assert (spec.rule is None) == spec.drafts, spec.name  # a lock-step method has its step rule
    with pytest.raises(LookupError, match="unknown method 'telepathy'"):
        method_spec("telepathy")


def product_step(s_logp: torch.Tensor, l_logp: torch.Tensor) -> StepChoice:
    """System 2's token [B]: the argmax of s + l (a product of the two models' distributions)."""
    return StepChoice(s2_token=(s_logp + l_logp).argmax(-1))


def _product_rule(ctx: CollectContext) -> LockstepRule:
    return LockstepRule((ctx.slm, ctx.llm), lambda lp, noise: product_step(lp[0], lp[1]))


def test_a_router_and_a_method_added_in_one_place_each(
    tiny_models: TinyModels, warehouse_path: Path, prompts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = vocabulary.ThresholdRule("confident", "s1_prob", "above", 4096)  # consult where System 1 is sure
    monkeypatch.setitem(vocabulary.THRESHOLD_RULES, rule.name, rule)
    monkeypatch.setitem(vocabulary.METHOD_TERMS, "product", vocabulary.MethodTerm("product"))
    monkeypatch.setitem(methods.SPECS, "product", MethodSpec("product", "lockstep", rule=_product_rule))
    cfg = RunConfig(
        llm=str(tiny_models.llm), slm=str(tiny_models.slm), prompts=str(prompts_file), method="product",
        router="confident", threshold=TAU, max_new_tokens=8, batch_size=3, calibrate=False,
    )  # fmt: skip
    summary = run_collection(cfg, warehouse_path, progress=False)
    assert summary.status == "complete" and 0 < summary.consulted < summary.tokens
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        (run_id, method, router), *_ = con.execute("SELECT run_id, method, router FROM runs").fetchall()
        prompts = dict(con.execute("SELECT sample_id, prompt FROM samples").fetchall())
        events = con.execute(
            "SELECT sample_id, token_id, s1_token_id, s2_token_id, consulted, s1_prob FROM token_events "
            "ORDER BY sample_id, step"
        ).fetchall()
        replayed = replay(con, run_id, rule.name, [TAU]).row(0, named=True)
    assert (method, router) == ("product", "confident") and len(events) == summary.tokens
    for _, token, s1, s2, consulted, s1_prob in events:  # the router: consulted where s1_prob > τ
        assert consulted == (s1_prob > TAU) and token == (s2 if consulted else s1)
    assert (replayed["consulted"], replayed["tokens"]) == (summary.consulted, summary.tokens)
    _assert_product_choices(tiny_models, prompts, events)


def _assert_product_choices(
    models: TinyModels, prompts: dict[int, str], events: list[tuple[int, int, int, int, bool, float]]
) -> None:
    """Each event's System 2 token is argmax(s + l) given the emitted prefix (teacher-forced here)."""
    llm, slm = loaded(models.llm), loaded(models.slm)
    vocab = shared_vocab_size(llm, slm)
    for sid, prompt in prompts.items():
        rows = [e for e in events if e[0] == sid]
        ids = llm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        seq = torch.tensor([ids + [e[1] for e in rows]])
        cut = slice(len(ids) - 1, seq.shape[1] - 1)  # the positions that predict each emitted token
        with torch.inference_mode():
            s_logp, l_logp = (log_probs(m.model(input_ids=seq).logits[0, cut], vocab) for m in (slm, llm))
        assert product_step(s_logp, l_logp).s2_token.tolist() == [e[3] for e in rows], sid


def test_runconfig_and_the_cli_read_the_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.run import build_parser

    rule = vocabulary.ThresholdRule("confident", "s1_prob", "above", 4096)
    monkeypatch.setitem(vocabulary.THRESHOLD_RULES, rule.name, rule)
    base = RunConfig(llm="l", slm="s", prompts="p")
    with pytest.raises(ValueError, match="--router confident needs --threshold T"):
        replace(base, router="confident").validate()
    help_text = " ".join(build_parser().format_help().split())
    assert "confident > τ" in help_text and "{" + ",".join(vocabulary.routers()) + "}" in help_text
    assert "confident" in vocabulary.routers()
