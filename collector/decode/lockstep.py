"""The lock-step engine: every model steps together over a batch, KV-cached, with left padding.

Per step and row: System 1's log-probs give its token and figures, the router decides whether System 2 is
consulted, the method's step function gives System 2's token from the LLM's (and any other model's)
log-probs, and the emitted token is System 2's where consulted, else System 1's. The LLM runs every step
so its figures are recorded for every token (analytics can replay any router offline). Rows that emit EOS
keep emitting pad until the next host check; the host cuts them once per batch. The device is synchronised
only every CHECK_EVERY steps: to stop when every row is done (EOS or a stop string), and to drop finished
rows from the batch (their KV-cache rows are cut out), so a few long rows do not keep all rows decoding.
Caches are preallocated for prompt + max_new_tokens where transformers allows (StaticCache), which saves
the per-step concatenation of the whole cache.

`Decoder` is also the cache discipline of speculative decoding: a slot that must be forgotten (a rejected
draft) stays in the KV cache as a hole masked out by the attention mask, with per-row position ids, so
every row of a batch can advance by its own count without a host round trip.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase, StaticCache

from collector.methods import method_spec
from collector.methods.base import BatchOutput, CollectContext, LockstepRule
from collector.modeling import cache_kwarg, forward, last_logits
from collector.routers.threshold import AlwaysRouter
from collector.sampling import gumbel_no_sync, pick_no_sync
from collector.token_stats import Figures, StepTrace, accept_prob_no_sync, figures_no_sync, log_probs

CHECK_EVERY = 8  # steps (or draft/verify cycles) between host checks of "every row done"


def new_cache(model: Any, max_len: int | None, rollback: bool = False) -> Any:
    """A KV cache preallocated for `max_len` slots where transformers allocates it lazily (no per-step
    concatenation of the whole cache: a third of a small model's decode step on CPU), else a DynamicCache
    shaped by the model's config (sliding windows, recurrent states). With `rollback` (speculative
    decoding), a DynamicCache of full layers that keeps every slot: a sliding-window layer would evict
    the slots a rollback needs (attention-only models: `collector.architectures`)."""
    if rollback:
        return DynamicCache()
    if max_len is not None and _lazy_static_cache():
        from transformers import StaticCache

        return StaticCache(config=model.config, max_cache_len=max_len)
    return DynamicCache(config=model.config)


@functools.cache
def _lazy_static_cache() -> bool:
    """True where StaticCache takes (config, max_cache_len) and sizes batch, device and dtype on first use."""
    try:
        from transformers import StaticCache
    except ImportError:
        return False
    params = inspect.signature(StaticCache.__init__).parameters
    return "max_cache_len" in params and not {"max_batch_size", "batch_size", "dtype"} & set(params)


class Decoder:
    """One model's KV-cached state over a left-padded batch: per-row positions, dropped slots as holes."""

    def __init__(self, model: Any, vocab: int, max_len: int | None = None, rollback: bool = False) -> None:
        self.model = model
        self.vocab = vocab
        self.cache = new_cache(model, max_len, rollback)
        self.max_len = max_len
        self.mask = torch.zeros(0)
        self.next_pos = torch.zeros(0)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Run the prompt ids/mask [B, P]; log-probs of the next token [B, V] (None for an empty prompt)."""
        self.mask = mask.long()
        self.next_pos = self.mask.sum(1)  # [B]
        if ids.shape[1] == 0:
            return None
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)  # as generate computes them under left padding
        out = self.model(
            input_ids=ids, attention_mask=self.model_mask(), position_ids=pos, use_cache=True,
            **{cache_kwarg(self.model): self.cache}, **last_logits(self.model, 1),
        )  # fmt: skip
        return log_probs(out.logits[:, -1], self.vocab)

    def feed(self, ids: torch.Tensor, live: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens [B, n] (holes where `live` [B, n] is False); log-probs after each slot [B, n, V]."""
        keep = torch.ones_like(ids) if live is None else live.long()
        pos = self.next_pos[:, None] + keep.cumsum(1) - keep  # [B, n]: holes take the next real position
        self.mask = torch.cat([self.mask, keep], dim=1)
        self.next_pos = self.next_pos + keep.sum(1)
        out = forward(self.model, ids, self.model_mask(), pos, self.cache)
        return log_probs(out.logits, self.vocab)

    def model_mask(self) -> torch.Tensor:
        """The attention mask [B, L] as the model gets it: a preallocated attention cache's free slots
        appended as masked, so models that size their ALiBi bias by the mask (BLOOM) match the cache's
        length (recurrent layers read the mask per input token: theirs stays as it is)."""
        free = (self.max_len or 0) - self.mask.shape[1]
        if free <= 0 or not isinstance(self.cache, StaticCache) or any(self.cache.is_linear):
            return self.mask
        return torch.cat([self.mask, self.mask.new_zeros(self.mask.shape[0], free)], dim=1)

    def can_select(self) -> bool:
        """Whether rows can be cut out of this cache (every layer holds plain key/value tensors and no
        recurrent or conv state, which `select` would leave at the old batch size)."""
        layers = getattr(self.cache, "layers", None)
        if not layers:
            return False
        return all(
            isinstance(getattr(x, "keys", None), torch.Tensor) and not hasattr(x, "recurrent_states")
            for x in layers
        )

    def select(self, rows: torch.Tensor) -> None:
        """Keep only batch rows `rows` [B'] (finished rows leave the batch)."""
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]
            if hasattr(layer, "batch_size"):
                layer.batch_size = len(rows)
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]

    def retract(self, keep: torch.Tensor) -> None:
        """Forget the last n slots where keep [B, n] is False (per row, keep must be a prefix), then move
        every hole to the left end of its row (`compact_no_sync`)."""
        n = keep.shape[1]
        tail = self.mask[:, -n:]  # [B, n]
        kept = tail * keep.long()
        self.next_pos = self.next_pos - (tail - kept).sum(1)
        self.mask = torch.cat([self.mask[:, :-n], kept], dim=1)
        self.compact_no_sync()

    def compact_no_sync(self) -> None:
        """Reorder each row's slots so its holes come first and its live slots stay in order at the right
        end, as under left padding. Attention masks count windows (sliding, chunked) and ALiBi distances in
        slots, not positions: a hole between two live slots would shrink a sliding window by one token."""
        order = torch.argsort(self.mask, dim=1, stable=True)  # [B, L]: holes first, live slots in order
        for layer, name, kv in self._kv():  # kv: [B, H, L, D]
            setattr(layer, name, kv.gather(2, order[:, None, :, None].expand_as(kv)))
        self.mask = self.mask.gather(1, order)

    def drop_last(self) -> None:
        """Remove the last slot of every row (a pass made only for its log-probs)."""
        for layer, name, kv in self._kv():
            setattr(layer, name, kv[:, :, :-1])
        self.next_pos = self.next_pos - self.mask[:, -1]
        self.mask = self.mask[:, :-1]

    def _kv(self) -> Iterator[tuple[Any, str, torch.Tensor]]:
        """(layer, "keys" | "values", tensor) of every cache layer that holds one."""
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                kv = getattr(layer, name, None)
                if isinstance(kv, torch.Tensor):
                    yield layer, name, kv


def s1_trace_no_sync(
    token: torch.Tensor,
    s1_token: torch.Tensor,
    s1: Figures,
    l_logp: torch.Tensor,
    s2_token_id: torch.Tensor,
    consulted: torch.Tensor,
    accept_prob: torch.Tensor,
) -> StepTrace:
    """The trace of emitted `token` [...], with System 1's own (possibly sampled) token and figures."""
    llm = figures_no_sync(l_logp)
    llm_prob_s1 = l_logp.gather(-1, s1_token.unsqueeze(-1)).squeeze(-1).exp()
    s1 = replace(s1, token=s1_token)
    return StepTrace.of(token, s1, llm, s2_token_id, llm_prob_s1, consulted, accept_prob)


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


def lockstep_rule(ctx: CollectContext) -> LockstepRule:
    """The models and step function of the run's method (its spec's rule)."""
    spec = method_spec(ctx.config.method)
    if spec.rule is None:
        raise ValueError(f"method {spec.name} has no lock-step rule (its loop: {spec.loop})")
    return spec.rule(ctx)


def _step_no_sync(
    ctx: CollectContext,
    rule: LockstepRule,
    logps: Sequence[torch.Tensor],
    finished: torch.Tensor,
    step: int | torch.Tensor,
) -> StepTrace:
    """One token for every row: System 1, router, System 2, emitted (pad for finished rows); `step` is the
    token's index, one for all rows or each row's own [B] (rows that joined later: `refill`)."""
    cfg, s_logp = ctx.config, logps[0]  # s_logp: [B, V]
    noise = None if cfg.greedy else gumbel_no_sync(s_logp.shape, ctx.generator, s_logp.device)
    s1 = figures_no_sync(s_logp)
    s1_token = pick_no_sync(s_logp, cfg, noise)
    s2_token = rule.choose(logps, noise).s2_token
    router = ctx.router if ctx.router is not None else AlwaysRouter()
    steps = step if isinstance(step, torch.Tensor) else torch.full_like(s1_token, step)
    consulted = router.consult_no_sync(s1, steps)
    token = torch.where(consulted, s2_token, s1_token).masked_fill(finished, ctx.llm.tokenizer.pad_token_id)
    accept = accept_prob_no_sync(s_logp, logps[1], cfg.temperature, cfg.top_p)
    return s1_trace_no_sync(token, s1_token, s1, logps[1], s2_token, consulted, accept)


class LockstepBatch:
    """One batch under the lock-step loop. Finished rows leave the batch at each host check (their caches
    are cut out), so a few long rows do not keep the whole batch decoding; the trace is reassembled at the
    end from segments of constant rows."""

    def __init__(self, ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.ctx, self.rule = ctx, lockstep_rule(ctx)
        B, self.T = input_ids.shape[0], ctx.config.max_new_tokens
        slots = input_ids.shape[1] + self.T
        self.decoders = [Decoder(m.model, ctx.vocab, slots) for m in self.rule.models]
        self.logps = [_prefill(d, input_ids, mask) for d in self.decoders]  # each [B', V]
        device, tok = input_ids.device, ctx.llm.tokenizer
        self.eos, self.pad = tok.eos_token_id, tok.pad_token_id
        self.rows = torch.arange(B, device=device)  # [B'] the batch row of each row still decoding
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)  # [B']
        self.length = torch.zeros(B, dtype=torch.long, device=device)  # [B] tokens each row generated
        self.history = torch.full((B, self.T), self.pad, dtype=torch.long, device=device)  # [B, T]
        self.segments: list[tuple[torch.Tensor, int, list[StepTrace]]] = [(self.rows, 0, [])]

    def step(self, t: int) -> torch.Tensor:
        """Decide token t of every live row and record it; returns the tokens [B']."""
        trace = _step_no_sync(self.ctx, self.rule, self.logps, self.finished, t)
        self.segments[-1][2].append(trace)
        self.length.index_add_(0, self.rows, (~self.finished).long())
        self.history[self.rows, t] = trace.token_id
        if self.eos is not None:
            self.finished = self.finished | (trace.token_id == self.eos)
        return trace.token_id

    def check(self, t: int) -> tuple[bool, torch.Tensor | None]:
        """Host check after step t: (every row done, the live rows kept when finished rows were dropped)."""
        self.finished, done = stop_rows_on_host(
            self.history[self.rows, : t + 1], self.length[self.rows], self.finished,
            self.ctx.llm.tokenizer, self.ctx.stop_strings,
        )  # fmt: skip
        keep = (~self.finished).nonzero().flatten()  # host-sized: this is the check's sync
        if not done and len(keep) < len(self.rows) and all(d.can_select() for d in self.decoders):
            for d in self.decoders:
                d.select(keep)
            self.rows, self.finished = self.rows[keep], self.finished[keep]
            self.segments.append((self.rows, t + 1, []))
            return done, keep
        return done, None

    def feed(self, token: torch.Tensor) -> None:
        """Give the live rows' tokens [B'] to every model."""
        self.logps = [d.feed(token[:, None])[:, 0] for d in self.decoders]

    def trace(self, steps: int) -> StepTrace:
        """The batch's trace [B, steps], finished rows padded after they left."""
        B = self.length.shape[0]
        full: dict[str, torch.Tensor] = {}
        for rows, start, traces in self.segments:
            if not traces:
                continue
            for name, v in StepTrace.stack(traces).as_dict().items():  # each [B', n]
                if name not in full:
                    fill = self.pad if name == "token_id" else 0
                    full[name] = torch.full((B, steps), fill, dtype=v.dtype, device=v.device)
                full[name][rows, start : start + v.shape[1]] = v
        return StepTrace.from_dict(full)


def _prefill(decoder: Decoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logp = decoder.prefill(ids, mask)
    if logp is None:
        raise ValueError("a batch needs at least one prompt token per row")
    return logp


@torch.inference_mode()
def collect_lockstep_batch(ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor) -> BatchOutput:
    """Decode a batch token by token with every model of the method; the trace stays on the device."""
    run = LockstepBatch(ctx, input_ids, mask)
    steps = run.T
    for t in range(run.T):
        token = run.step(t)
        if t + 1 == run.T:
            break
        if (t + 1) % CHECK_EVERY == 0:
            done, keep = run.check(t)
            if done:
                steps = t + 1
                break
            if keep is not None:  # finished rows left the batch
                token = token[keep]
        run.feed(token)
    return BatchOutput(trace=run.trace(steps), valid=run.length)
