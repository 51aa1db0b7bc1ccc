"""The lock-step engine: every model steps together over a batch, KV-cached, with left padding.

Per step and row: System 1's log-probs give its token and figures, the router decides whether System 2 is
consulted, the method's step function gives System 2's token from the LLM's (and any other model's)
log-probs, and the emitted token is System 2's where consulted, else System 1's. The LLM runs every step
so its figures are recorded for every token (analytics can replay any router offline). Rows that emit EOS
keep emitting pad; the host cuts them once per batch. The device is synchronised only every CHECK_EVERY
steps, to stop early when every row is done (EOS or a stop string).

`Decoder` is also the cache discipline of speculative decoding: a slot that must be forgotten (a rejected
draft) stays in the KV cache as a hole masked out by the attention mask, with per-row position ids, so
every row of a batch can advance by its own count without a host round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from collector.figures import Figures, StepTrace, figures_no_sync, log_probs
from collector.methods.base import BatchOutput, CollectContext, StepChoice
from collector.modeling import LoadedModel, forward
from collector.routers.threshold import AlwaysRouter
from collector.sampling import gumbel_no_sync, pick_no_sync

CHECK_EVERY = 8  # steps (or draft/verify cycles) between host checks of "every row done"


class Decoder:
    """One model's KV-cached state over a left-padded batch: per-row positions, dropped slots as holes."""

    def __init__(self, model: Any, vocab: int) -> None:
        self.model = model
        self.vocab = vocab
        self.cache = DynamicCache()
        self.mask = torch.zeros(0)
        self.next_pos = torch.zeros(0)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Run the prompt ids/mask [B, P]; log-probs of the next token [B, V] (None for an empty prompt)."""
        self.mask = mask.long()
        self.next_pos = self.mask.sum(1)  # [B]
        if ids.shape[1] == 0:
            return None
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)  # as generate computes them under left padding
        out = forward(self.model, ids, self.mask, pos, self.cache)
        return log_probs(out.logits[:, -1], self.vocab)

    def feed(self, ids: torch.Tensor, live: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens [B, n] (holes where `live` [B, n] is False); log-probs after each slot [B, n, V]."""
        keep = torch.ones_like(ids) if live is None else live.long()
        pos = self.next_pos[:, None] + keep.cumsum(1) - keep  # [B, n]: holes take the next real position
        self.mask = torch.cat([self.mask, keep], dim=1)
        self.next_pos = self.next_pos + keep.sum(1)
        out = forward(self.model, ids, self.mask, pos, self.cache)
        return log_probs(out.logits, self.vocab)

    def retract(self, keep: torch.Tensor) -> None:
        """Make holes of the last n slots where keep [B, n] is False; per row, keep must be a prefix."""
        n = keep.shape[1]
        tail = self.mask[:, -n:]  # [B, n]
        kept = tail * keep.long()
        self.next_pos = self.next_pos - (tail - kept).sum(1)
        self.mask = torch.cat([self.mask[:, :-n], kept], dim=1)


def s1_trace_no_sync(
    token: torch.Tensor,
    s1_token: torch.Tensor,
    s1: Figures,
    l_logp: torch.Tensor,
    s2_token: torch.Tensor,
    consulted: torch.Tensor,
) -> StepTrace:
    """The trace of emitted `token` [...], with System 1's own (possibly sampled) token and figures."""
    llm = figures_no_sync(l_logp)
    llm_prob_s1 = l_logp.gather(-1, s1_token.unsqueeze(-1)).squeeze(-1).exp()
    return StepTrace(token, replace(s1, token=s1_token), llm, s2_token, llm_prob_s1, consulted)


def stop_rows_on_host(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    finished: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    stops: Sequence[str],
) -> tuple[torch.Tensor, bool]:
    """(finished [B] with rows whose text holds a stop string added, whether every row is done): one sync."""
    done = finished.cpu()
    if stops and not bool(done.all()):
        host_tokens, host_len = tokens.cpu(), lengths.cpu()
        for b in (~done).nonzero().flatten().tolist():
            text = tokenizer.decode(host_tokens[b, : int(host_len[b])].tolist(), skip_special_tokens=True)
            if any(s and s in text for s in stops):
                done[b] = True
    return done.to(finished.device), bool(done.all())


@dataclass(frozen=True)
class LockstepRule:
    """A method as the lock-step engine runs it: the models to step and System 2's step function."""

    models: tuple[LoadedModel, ...]  # System 1 first, the LLM second, then any model the rule also reads
    choose: Callable[[Sequence[torch.Tensor], torch.Tensor | None], StepChoice]


def lockstep_rule(ctx: CollectContext) -> LockstepRule:
    """The models and step function of the run's method."""
    from collector.methods.contrastive import contrastive_step
    from collector.methods.oracle import oracle_step
    from collector.methods.proxy import proxy_step

    cfg = ctx.config
    if cfg.method == "oracle":
        return LockstepRule((ctx.slm, ctx.llm), lambda lp, g: oracle_step(lp[0], lp[1], cfg, g))
    if cfg.method == "contrastive":
        return LockstepRule((ctx.slm, ctx.llm), lambda lp, g: contrastive_step(lp[0], lp[1], cfg, g))
    if cfg.method == "proxy":
        if ctx.slm_tuned is None:
            raise ValueError("--method proxy needs --slm-tuned PATH (the tuned small model)")
        # System 1 is the tuned SLM; the base SLM is read for the shift s′ − s.
        return LockstepRule(
            (ctx.slm_tuned, ctx.llm, ctx.slm), lambda lp, g: proxy_step(lp[2], lp[0], lp[1], cfg, g)
        )
    raise ValueError(f"method {cfg.method} has no lock-step rule")


def _step_no_sync(
    ctx: CollectContext, rule: LockstepRule, logps: Sequence[torch.Tensor], finished: torch.Tensor, step: int
) -> StepTrace:
    """One token for every row: System 1, router, System 2, emitted (pad for finished rows)."""
    cfg, s_logp = ctx.config, logps[0]  # s_logp: [B, V]
    noise = None if cfg.greedy else gumbel_no_sync(s_logp.shape, ctx.generator, s_logp.device)
    s1 = figures_no_sync(s_logp)
    s1_token = pick_no_sync(s_logp, cfg, noise)
    s2_token = rule.choose(logps, noise).s2_token
    router = ctx.router if ctx.router is not None else AlwaysRouter()
    consulted = router.consult_no_sync(s1, torch.full_like(s1_token, step))
    token = torch.where(consulted, s2_token, s1_token).masked_fill(finished, ctx.llm.tokenizer.pad_token_id)
    return s1_trace_no_sync(token, s1_token, s1, logps[1], s2_token, consulted)


def _prefill(decoder: Decoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logp = decoder.prefill(ids, mask)
    if logp is None:
        raise ValueError("a batch needs at least one prompt token per row")
    return logp


@torch.inference_mode()
def collect_lockstep_batch(ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor) -> BatchOutput:
    """Decode a batch token by token with every model of the method; the trace stays on the device."""
    rule = lockstep_rule(ctx)
    decoders = [Decoder(m.model, ctx.vocab) for m in rule.models]
    logps = [_prefill(d, input_ids, mask) for d in decoders]
    B, T = input_ids.shape[0], ctx.config.max_new_tokens
    eos = ctx.llm.tokenizer.eos_token_id
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    length = torch.zeros(B, dtype=torch.long, device=input_ids.device)
    steps: list[StepTrace] = []
    for t in range(T):
        trace = _step_no_sync(ctx, rule, logps, finished, t)
        steps.append(trace)
        length += (~finished).long()
        if eos is not None:
            finished = finished | (trace.token == eos)
        if t + 1 == T:
            break
        if (t + 1) % CHECK_EVERY == 0:
            tokens = torch.stack([s.token for s in steps], dim=1)  # [B, t+1]
            finished, done = stop_rows_on_host(tokens, length, finished, ctx.llm.tokenizer, ctx.stop_strings)
            if done:
                break
        logps = [d.feed(trace.token[:, None])[:, 0] for d in decoders]
    return BatchOutput(trace=StepTrace.stack(steps), valid=length)
