"""Speculative decoding on tiny real models: greedy equals the LLM (and HF assisted generation), sampling
keeps the LLM's distribution, cycles and per-token draft columns reach the warehouse."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from collector.config import RunConfig
from collector.costs import calibration_batch_sizes
from collector.decode.oracle import collect_oracle_batch
from collector.decode.speculative import collect_speculative_batch, cycles_for_samples
from collector.engine import run_collection
from collector.methods.speculative import (
    speculative_step,
    verify_greedy,
    verify_sampling,
)
from collector.modeling import LoadedModel
from collector.sampling import sampling_logp
from tests.collector.helpers import (
    PROMPTS,
    assert_events_equal,
    collect_events,
    context,
    llm_greedy,
    loaded,
    one_thread,  # noqa: F401  (fixture)
    perturbed_copy,
    run_batches,
    tokens_by_sample,
)
from tests.conftest import TinyModels

MAX_NEW = 12
pytestmark = pytest.mark.usefixtures("one_thread")
_HF: dict[tuple[str, ...], list[int]] = {}  # HF outputs, computed once per (model, draft model, K, prompt)
P_LEVEL = 0.001  # a correct sampler fails a chi-square test at this level once in a thousand runs


@pytest.fixture(scope="module")
def near_llm(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A perturbed copy of the LLM: drafts are accepted often but not always."""
    return perturbed_copy(tiny_models.llm, tmp_path_factory.mktemp("near") / "m", scale=0.1)


def _spec_config(llm: Path, slm: Path, k: int, **kw: object) -> RunConfig:
    base = RunConfig(llm=str(llm), slm=str(slm), prompts="unused", method="speculative", draft_k=k)
    return replace(base, **{"max_new_tokens": MAX_NEW, **kw})  # type: ignore[arg-type]


def _hf_assisted(llm: LoadedModel, slm: LoadedModel, prompt: str, k: int) -> list[int]:
    """transformers' assisted generation (batch 1 only), K drafts per round, greedy."""
    key = (llm.path, slm.path, str(k), prompt)
    if key not in _HF:
        _HF[key] = _hf_assisted_uncached(llm, slm, prompt, k)
    return _HF[key]


def _hf_greedy(llm: LoadedModel, prompt: str) -> list[int]:
    key = (llm.path, prompt)
    if key not in _HF:
        _HF[key] = llm_greedy(llm, prompt, MAX_NEW)
    return _HF[key]


def _hf_assisted_uncached(
    llm: LoadedModel, slm: LoadedModel, prompt: str, k: int, max_new: int = MAX_NEW
) -> list[int]:
    gen = slm.model.generation_config
    gen.num_assistant_tokens, gen.num_assistant_tokens_schedule = k, "constant"
    gen.assistant_confidence_threshold = 0.0
    ids = llm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = llm.model.generate(
        **ids,
        assistant_model=slm.model,
        do_sample=False,
        max_new_tokens=max_new,
        pad_token_id=llm.tokenizer.pad_token_id,
    )
    return out[0, ids["input_ids"].shape[1] :].tolist()


def _pair(tiny_models: TinyModels, near_llm: Path, which: str) -> Path:
    return {"random": tiny_models.slm, "same": tiny_models.llm, "near": near_llm}[which]


@pytest.mark.parametrize("which", ["random", "same", "near"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_equals_llm_greedy_and_hf_assisted(
    tiny_models: TinyModels, near_llm: Path, which: str, k: int, batch: int
) -> None:
    slm_path = _pair(tiny_models, near_llm, which)
    ctx = context(_spec_config(tiny_models.llm, slm_path, k))
    events = collect_events(ctx, collect_speculative_batch, PROMPTS, batch)
    got = tokens_by_sample(events)
    llm, slm = loaded(tiny_models.llm), loaded(slm_path)
    for sid, prompt in enumerate(PROMPTS):
        assert got[sid] == _hf_greedy(llm, prompt), f"prompt {sid}"
        assert got[sid] == _hf_assisted(llm, slm, prompt, k), f"prompt {sid} vs HF assisted"


@pytest.mark.parametrize("which", ["random", "same", "near"])
def test_acceptance_follows_the_pair_and_cycles_add_up(
    tiny_models: TinyModels, near_llm: Path, which: str
) -> None:
    k = 3
    ctx = context(_spec_config(tiny_models.llm, _pair(tiny_models, near_llm, which), k))
    for chunk, out in run_batches(ctx, collect_speculative_batch, PROMPTS, 8):
        assert out.cycles is not None
        acc = out.cycles.column("accepted").to_numpy()
        rows = out.cycles.column("sample_id").to_numpy()
        rate = acc.mean() / k
        expected = {"random": rate < 0.2, "same": rate > 0.9, "near": 0.2 < rate < 0.95}
        assert expected[which], f"acceptance {rate:.2f} for the {which} pair"
        for b in range(len(chunk)):
            mine = acc[rows == b]
            valid = int(out.valid[b])
            assert int((mine + 1).sum()) == valid  # each cycle kept its accepted drafts + 1
            flags = out.extra["accepted"][b, :valid].numpy()
            draft_index = out.extra["draft_index"][b, :valid].numpy()
            assert (draft_index[flags] < k).all() and (draft_index[~flags] == k).all()
            assert flags.sum() == mine.sum()  # events and cycles agree on what was kept


def _starts(accepted: np.ndarray) -> list[tuple[int, int]]:
    """(accepted, first step) of each cycle of one row."""
    starts = np.concatenate([[0], np.cumsum(accepted + 1)[:-1]])
    return [(int(a), int(s)) for a, s in zip(accepted, starts, strict=True)]


def test_batch_1_and_8_give_the_same_events(tiny_models: TinyModels, near_llm: Path) -> None:
    ctx = context(_spec_config(tiny_models.llm, near_llm, 3))
    one = collect_events(ctx, collect_speculative_batch, PROMPTS, 1)
    eight = collect_events(ctx, collect_speculative_batch, PROMPTS, 8)
    assert_events_equal(one, eight)


def _with_eos(model: LoadedModel, token_id: int) -> LoadedModel:
    """The same model with its tokenizer's EOS moved to a token it writes often (to exercise stopping)."""
    tok = copy.deepcopy(model.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(token_id)
    return replace(model, tokenizer=tok)


def test_eos_and_stop_strings_cut_like_the_oracle_path(tiny_models: TinyModels, near_llm: Path) -> None:
    ctx = context(_spec_config(tiny_models.llm, near_llm, 3))
    plain = tokens_by_sample(collect_events(ctx, collect_oracle_batch, PROMPTS, 8))
    common = np.bincount(np.concatenate([v[2:] for v in plain.values()])).argmax()
    ctx = replace(ctx, llm=_with_eos(ctx.llm, int(common)), slm=_with_eos(ctx.slm, int(common)))
    stop = ctx.llm.tokenizer.decode([plain[0][5]])
    for c in (ctx, replace(ctx, stop_strings=(stop,))):
        oracle = collect_events(c, collect_oracle_batch, PROMPTS, 8)
        spec = collect_events(c, collect_speculative_batch, PROMPTS, 8)
        assert tokens_by_sample(spec) == tokens_by_sample(oracle)
        assert len(spec) < len(PROMPTS) * MAX_NEW  # something was cut


def _chi2_ok(samples: np.ndarray, probs: np.ndarray) -> float:
    observed = np.bincount(samples, minlength=len(probs))
    support = probs > 0
    assert observed[~support].sum() == 0, "drew a token the target gives probability 0"
    expected = probs[support].astype(np.float64)
    return float(chisquare(observed[support], expected / expected.sum() * observed.sum()).pvalue)


@pytest.mark.parametrize("k", [1, 3])
def test_accept_resample_rule_keeps_the_target_distribution(k: int) -> None:
    n, vocab = 60_000, 6
    p = torch.tensor(
        [[0.5, 0.2, 0.1, 0.1, 0.1, 0.0], [0.05, 0.05, 0.3, 0.3, 0.2, 0.1], [0.2] * 5 + [0.0], [1 / 6] * 6]
    )[: k + 1]  # [K+1, V]: the LLM's next-token distribution at each draft position
    q = torch.tensor([[0.1, 0.1, 0.1, 0.2, 0.2, 0.3], [0.6, 0.0, 0.1, 0.1, 0.1, 0.1], [0.1] * 5 + [0.5]])[:k]
    gen = torch.Generator().manual_seed(7)
    draft = torch.multinomial(q, n, replacement=True, generator=gen).T  # [n, K] drafts drawn from q
    verdict = verify_sampling(
        draft, q.log().expand(n, k, vocab), p.log().expand(n, k + 1, vocab), generator=gen
    )
    first = verdict.tokens[:, 0].numpy()
    assert _chi2_ok(first, p[0].numpy()) > P_LEVEL
    reached = verdict.accepted >= 1  # rows whose second token is still decided inside this cycle
    second = verdict.tokens[reached, 1].numpy()
    assert _chi2_ok(second, p[1].numpy()) > P_LEVEL


def test_sampling_step_uses_temperature_and_top_p() -> None:
    n, vocab, k = 40_000, 8, 2
    gen = torch.Generator().manual_seed(3)
    l_logits, s_logits = (
        torch.randn(k + 1, vocab, generator=gen) * 2,
        torch.randn(k, vocab, generator=gen) * 2,
    )
    cfg = RunConfig(llm="l", slm="s", prompts="p", method="speculative", temperature=0.7, top_p=0.9)
    q = sampling_logp(s_logits, cfg.temperature, cfg.top_p).exp()
    draft = torch.multinomial(q, n, replacement=True, generator=gen).T  # [n, K]
    verdict = speculative_step(
        draft, s_logits.expand(n, k, vocab), l_logits.expand(n, k + 1, vocab), cfg, gen
    )
    target = sampling_logp(l_logits[0], cfg.temperature, cfg.top_p).exp().numpy()
    assert _chi2_ok(verdict.tokens[:, 0].numpy(), target) > P_LEVEL


def test_sampling_end_to_end_first_token_follows_the_llm(tiny_models: TinyModels) -> None:
    n, temperature = 3000, 0.1  # the tiny models are near uniform: a low temperature gives them shape
    cfg = _spec_config(
        tiny_models.llm, tiny_models.slm, 2, temperature=temperature, seed=11, max_new_tokens=3
    )
    ctx = context(cfg)
    prompt = "the quick brown"
    ids = ctx.llm.tokenizer([prompt] * n, return_tensors="pt", add_special_tokens=False)
    out = collect_speculative_batch(ctx, ids["input_ids"], ids["attention_mask"])
    with torch.inference_mode():
        logits = ctx.llm.model(input_ids=ids["input_ids"][:1]).logits[0, -1, : ctx.vocab]
    target = torch.softmax(logits / temperature, -1).numpy().astype(np.float64)
    keep = target * n >= 5  # chi-square needs expected counts ≥ 5: pool the rare tokens
    first = out.trace.token_id[:, 0].numpy()
    observed = np.bincount(first, minlength=len(target))
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(target[keep], target[~keep].sum()) * n
    assert chisquare(obs, exp / exp.sum() * obs.sum()).pvalue > P_LEVEL
    assert out.cycles is not None and out.cycles.column("accepted").to_numpy().mean() > 0  # drafts were kept


def test_warehouse_holds_draft_columns_and_cycles(
    tiny_models: TinyModels, near_llm: Path, warehouse_path: Path, prompts_file: Path
) -> None:
    cfg = replace(  # near_llm is a same-size perturbed copy of the LLM
        _spec_config(tiny_models.llm, near_llm, 3),
        prompts=str(prompts_file),
        batch_size=4,
        allow_inverted=True,
    )
    summary = run_collection(cfg, warehouse_path, progress=False)
    assert summary.status == "complete" and summary.consulted == summary.tokens
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        nulls = con.execute("SELECT count(*) FROM token_events WHERE draft_index IS NULL OR accepted IS NULL")
        assert nulls.fetchone() == (0,)
        per_sample = con.execute(
            """SELECT s.sample_id, s.n_tokens, e.kept, c.cycles, c.kept, c.max_drafted
               FROM samples s
               JOIN (SELECT sample_id, count(*) FILTER (WHERE accepted) AS kept
                     FROM token_events GROUP BY 1) e USING (sample_id)
               JOIN (SELECT sample_id, count(*) AS cycles, sum(accepted) AS kept, max(drafted) AS max_drafted
                     FROM spec_cycles GROUP BY 1) c USING (sample_id)
               ORDER BY 1"""
        ).fetchall()
        assert len(per_sample) == 6
        for _, n_tokens, kept_events, cycles, kept_cycles, max_drafted in per_sample:
            assert kept_cycles + cycles == n_tokens  # every cycle kept its accepted drafts + 1, no more
            assert kept_events == kept_cycles and max_drafted == 3
        cut = con.execute("SELECT count(*) FROM spec_cycles WHERE drafted <> 3 AND accepted <> drafted")
        assert cut.fetchone() == (0,)  # only a last cycle cut short drafts fewer, all of them kept
        accept = con.execute("SELECT min(accept_prob), max(accept_prob) FROM token_events").fetchone()
        assert accept is not None and 0.0 < accept[0] <= accept[1] <= 1.0 + 1e-5
        costs = con.execute("SELECT kind, tokens, batch_size, seconds FROM run_costs").fetchall()
        kinds = {(k, n, b) for k, n, b, _ in costs}
        assert {("cycle", 8, 1), ("stop_cycle", 8, 1), ("prefill", 0, 1)} <= kinds
        assert not {k for k, _, _ in kinds} & {"s1_forward", "s2_forward"}  # timed by no calibration now
        assert ("decode", summary.tokens, 4) in kinds
        # timed at batch 1 and at the run's own batch size, no other
        sizes = {b for k, _, b, _ in costs if k == "llm_generate"}
        assert sizes == set(calibration_batch_sizes(cfg)) == {1, 4}
        assert all(sec > 0 for *_, sec in costs)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 6), k=st.integers(1, 6), vocab=st.integers(2, 12))
def test_greedy_verdict_is_the_llm_argmax_up_to_the_first_disagreement(
    seed: int, rows: int, k: int, vocab: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    l_logp = torch.log_softmax(torch.randn(rows, k + 1, vocab, generator=gen), -1)
    target = l_logp.argmax(-1)  # [rows, K+1]
    agree = torch.rand(rows, k, generator=gen) < 0.7
    draft = torch.where(agree, target[:, :k], torch.randint(0, vocab, (rows, k), generator=gen))
    verdict = verify_greedy(draft, l_logp)
    for b in range(rows):
        n = int(verdict.accepted[b])
        assert torch.equal(draft[b, :n], target[b, :n]) and (n == k or draft[b, n] != target[b, n])
        assert torch.equal(
            verdict.tokens[b, : n + 1], target[b, : n + 1]
        )  # emitted = the LLM's greedy choice


ZOO_NEW = 40


def _zoo_context(k: int, **kw: object) -> tuple[object, list[str]]:
    """The zoo's zoo-s drafted by zoo-xs on choice prompts whose outputs end on EOS (stop strings off)."""
    from collector.tasks import load_task

    # Seed 10: four items whose zoo-s answers end on EOS within ZOO_NEW tokens (most answers run on instead).
    items = load_task("builtin:choice", samples=4, seed=10).items
    cfg = _spec_config(Path("unused"), Path("unused"), k, max_new_tokens=ZOO_NEW, **kw)
    return replace(cfg, llm="zoo:zoo-s", slm="zoo:zoo-xs"), [it.prompt for it in items]


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("batch", [1, 4])
def test_outputs_that_end_on_eos_equal_generate_and_hf_assisted(k: int, batch: int) -> None:
    cfg, prompts = _zoo_context(k)
    ctx = context(cfg)  # type: ignore[arg-type]
    llm, slm = ctx.llm, ctx.slm
    got = tokens_by_sample(collect_events(ctx, collect_speculative_batch, prompts, batch))
    eos = llm.tokenizer.eos_token_id
    assert sum(v[-1] == eos for v in got.values()) >= 3, "the test wants outputs that end on EOS"
    for sid, prompt in enumerate(prompts):
        assert got[sid] == llm_greedy(llm, prompt, ZOO_NEW), f"prompt {sid}"
        key = (llm.path, slm.path, str(k), prompt, "eos")
        if key not in _HF:
            _HF[key] = _hf_assisted_uncached(llm, slm, prompt, k, max_new=ZOO_NEW)
        assert got[sid] == _HF[key], f"prompt {sid} vs HF assisted"
    for chunk, out in run_batches(ctx, collect_speculative_batch, prompts, batch):
        assert out.cycles is not None
        valid = out.valid.tolist()
        cycles = cycles_for_samples(out.cycles, chunk, valid)
        assert cycles.num_rows == out.cycles.num_rows  # the method cut its own cycles already
        for b, sid in enumerate(chunk):
            mine = cycles.filter(pc.equal(cycles.column("sample_id"), sid))
            accepted = mine.column("accepted").to_numpy()
            assert int(accepted.sum()) + mine.num_rows == valid[b]  # sum(accepted) + cycles = n_tokens
            assert valid[b] == ZOO_NEW or int(out.trace.token_id[b, valid[b] - 1]) == eos
            assert int(out.extra["accepted"][b, : valid[b]].sum()) == int(accepted.sum())


@pytest.mark.parametrize("stop,tau", [("max_prob", 0.6), ("entropy", 1.0)])
def test_draft_stop_rule_keeps_greedy_output_and_each_row_stops_on_its_own(stop: str, tau: float) -> None:
    k = 5
    cfg, prompts = _zoo_context(k, draft_stop=stop, draft_threshold=tau)
    ctx = context(cfg)  # type: ignore[arg-type]
    base = tokens_by_sample(collect_events(context(replace(cfg, draft_stop=None, draft_threshold=None)),
                                           collect_speculative_batch, prompts, 4))  # fmt: skip
    tables = {}
    for batch in (1, 4):
        events = collect_events(ctx, collect_speculative_batch, prompts, batch)
        assert tokens_by_sample(events) == base  # a stop rule changes the work, never the output
        parts = [
            cycles_for_samples(out.cycles, chunk, out.valid.tolist())
            for chunk, out in run_batches(ctx, collect_speculative_batch, prompts, batch)
            if out.cycles is not None
        ]
        tables[batch] = pa.concat_tables(parts).sort_by([("sample_id", "ascending"), ("cycle", "ascending")])
    assert tables[1].equals(tables[4])  # each row drafts as it would alone
    drafted = tables[4].column("drafted").to_numpy()
    accepted = tables[4].column("accepted").to_numpy()
    assert drafted.max() <= k and (accepted <= drafted).all()
    sample = tables[4].column("sample_id").to_numpy()
    last = np.append(sample[1:] != sample[:-1], True)  # a sample's last cycle may only add the LLM's token
    assert (drafted < k).mean() > 0.2 and (drafted[~last] >= 1).all()  # stops happen, ≥ 1 draft a cycle
