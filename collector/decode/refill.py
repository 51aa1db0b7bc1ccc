"""Continuous batching: a batch stays full. At each host check (every CHECK_EVERY steps) the rows that are
done leave, and the next prompts take their slots: prefilled together as a group, then joined into the
running KV caches (`collector.decode.slots`), each row right-aligned with its own positions, as left padding
lays out a static batch; so under greedy decoding every row's tokens are the ones it gets in a static batch.
Finished rows are handed on per batch of `batch_size` consecutive prompts, in the original order, as the
static loops hand them (`BatchOutput` [B, T] per batch), once every row of that batch is done.

Two loops refill: the lock-step engine (`LockstepRows`, every model of the method stepped together) and the
oracle fast path (`OracleRows`: the LLM alone, then one teacher-forced System 1 pass per finished batch).
Static batches remain where rows cannot join: sampled decoding (a row's noise is drawn per batch row, and a
resumed run must draw what one run would, so batches stay fixed), speculative decoding (its own loop), and
caches that cannot take rows (sliding-window, recurrent, or outside transformers' cache: `slots.joinable`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from collector.architectures import classify
from collector.decode.lockstep import (
    CHECK_EVERY,
    Decoder,
    _prefill,
    _step_no_sync,
    collect_lockstep_batch,
    lockstep_rule,
)
from collector.decode.oracle import collect_oracle_batch, teacher_forced_output
from collector.decode.slots import TRIM_AT, append, leading_holes, place, slot_decoder, trim
from collector.methods.base import BatchOutput, CollectContext
from collector.prompts import left_pad
from collector.token_stats import StepTrace, log_probs

# In the drain (no prompt left), free rows leave the batch once they are 1/DROP_AT of its rows: a smaller
# batch steps faster, but each drop copies every row's KV cache, so they leave a few at a time.
DROP_AT = 8


class RowEngine(Protocol):
    """A batch loop whose rows can be replaced: what the refilling scheduler drives."""

    token_key: str  # the record holding the emitted token

    def joinable(self) -> bool: ...
    def admit(self, ids: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor | None) -> None: ...
    def step(self, pos: torch.Tensor, finished: torch.Tensor) -> dict[str, torch.Tensor]: ...
    def feed(self, token: torch.Tensor) -> None: ...
    def select(self, keep: torch.Tensor) -> None: ...
    def trim(self) -> None: ...
    def output(
        self, record: dict[str, torch.Tensor], valid: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> BatchOutput: ...


class _DecoderRows:
    """Rows of one or more models' decoders, with each model's log-probs of the next token [B', V]."""

    def __init__(self, models: Sequence[torch.nn.Module], names: Sequence[str], vocab: int, capacity: int):
        self.models, self.names, self.vocab, self.capacity = models, names, vocab, capacity
        self.decoders: list[Decoder] = []
        self.logps: list[torch.Tensor] = []

    def joinable(self) -> bool:
        """Every model is an attention model whose cache takes rows (`slots.slot_decoder`)."""
        return all(
            classify(name, m).kind == "attention" and slot_decoder(m, self.vocab, 1) is not None
            for name, m in zip(self.names, self.models, strict=True)
        )

    def admit(self, ids: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor | None) -> None:
        """Prefill prompts [b, P] and write them into rows `slots` [b] (None: as new rows below)."""
        if not self.decoders:
            made = [slot_decoder(m, self.vocab, self.capacity) for m in self.models]
            self.decoders = [d for d in made if d is not None]
        group = [Decoder(m, self.vocab) for m in self.models]
        logps = [_prefill(g, ids, mask) for g in group]
        for running, new in zip(self.decoders, group, strict=True):
            if slots is None:
                append(running, new)
            else:
                place(running, slots, new)
        if slots is None:
            self.logps = (
                [torch.cat([a, b]) for a, b in zip(self.logps, logps, strict=True)] if self.logps else logps
            )
        else:
            for lp, new_lp in zip(self.logps, logps, strict=True):
                lp[slots] = new_lp

    def feed(self, token: torch.Tensor) -> None:
        """Give the rows' tokens [B'] to every model."""
        self.logps = [d.feed(token[:, None])[:, 0] for d in self.decoders]

    def select(self, keep: torch.Tensor) -> None:
        """Keep rows `keep` [B'']."""
        for d in self.decoders:
            d.select(keep)
        self.logps = [lp[keep] for lp in self.logps]

    def trim(self) -> None:
        """Drop columns that are holes in every row (left by rows that are gone), when worth a copy."""
        k = leading_holes(self.decoders[0])  # every decoder was fed alike: one layout
        if k >= TRIM_AT or (k and k == self.decoders[0].mask.shape[1]):
            for d in self.decoders:
                trim(d, k)


class LockstepRows(_DecoderRows):
    """The lock-step engine's rows: System 1, the router, System 2 and the emitted token per step."""

    token_key = "token_id"

    def __init__(self, ctx: CollectContext, capacity: int) -> None:
        self.ctx, self.rule = ctx, lockstep_rule(ctx)
        models = self.rule.models
        super().__init__([m.model for m in models], [m.name for m in models], ctx.vocab, capacity)

    def step(self, pos: torch.Tensor, finished: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step's trace of every row (`pos` [B']: each row's own step, as the router sees it)."""
        return _step_no_sync(self.ctx, self.rule, self.logps, finished, pos).as_dict()

    def output(
        self, record: dict[str, torch.Tensor], valid: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> BatchOutput:
        return BatchOutput(trace=StepTrace.from_dict(record), valid=valid)


class OracleRows(_DecoderRows):
    """The oracle fast path's rows: the LLM alone, greedy over its whole vocabulary as `generate` is; System
    1's predictions come from one teacher-forced pass per finished batch."""

    token_key = "token"

    def __init__(self, ctx: CollectContext, capacity: int) -> None:
        self.ctx = ctx
        # the LLM's whole vocabulary: its greedy token may lie past the shared range, as in `generate`
        super().__init__([ctx.llm.model], [ctx.llm.name], sys.maxsize, capacity)

    def step(self, pos: torch.Tensor, finished: torch.Tensor) -> dict[str, torch.Tensor]:
        logp = self.logps[0]  # [B', V_llm]
        token = logp.argmax(-1).masked_fill(finished, self.ctx.llm.tokenizer.pad_token_id)
        shared = logp if logp.shape[-1] == self.ctx.vocab else log_probs(logp, self.ctx.vocab)
        return {"token": token, "l_logp": shared}

    def output(
        self, record: dict[str, torch.Tensor], valid: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> BatchOutput:
        return teacher_forced_output(self.ctx, ids, mask, record["token"], record["l_logp"], valid)


REFILLING: dict[Callable[..., BatchOutput], Callable[[CollectContext, int], RowEngine]] = {
    collect_lockstep_batch: LockstepRows,
    collect_oracle_batch: OracleRows,
}  # each static batch loop's refilling twin


def refill_rows(
    ctx: CollectContext, collect: Callable[..., BatchOutput], prompts: Sequence[Sequence[int]]
) -> RowEngine | None:
    """The refilling twin of the run's batch loop, or None where batches stay static (see the module)."""
    twin = REFILLING.get(collect)
    if twin is None or not ctx.config.greedy or not prompts:
        return None
    # the widest a batch gets: a prompt, its tokens, steps to the next check, holes not yet worth a trim
    capacity = max(len(p) for p in prompts) + ctx.config.max_new_tokens + CHECK_EVERY + TRIM_AT
    engine = twin(ctx, capacity)
    return engine if engine.joinable() else None


@dataclass
class _Segment:
    """Steps over which the rows stayed the same: row r is prompt samples[r], which generated its first
    token at global step offsets[r]."""

    samples: list[int | None]
    offsets: list[int]
    start: int
    records: list[dict[str, torch.Tensor]] = field(default_factory=list)


def check_every(ctx: CollectContext) -> int:
    """Steps between host checks under refilling: every step on the CPU, where a check costs no device
    synchronisation, so a done row's slot is taken at once; CHECK_EVERY on an accelerator."""
    return 1 if ctx.device.type == "cpu" else CHECK_EVERY


class Refill:
    """The scheduler: keeps `batch` rows decoding while prompts remain; yields each batch of `batch`
    consecutive prompts as one BatchOutput, in order, once all its rows are done."""

    def __init__(
        self,
        ctx: CollectContext,
        engine: RowEngine,
        prompts: Sequence[Sequence[int]],
        batch: int,
        every: int | None = None,
    ) -> None:
        self.ctx, self.engine, self.prompts, self.batch = ctx, engine, prompts, batch
        self.every = every or check_every(ctx)  # steps between host checks
        tok, self.T = ctx.llm.tokenizer, ctx.config.max_new_tokens
        self.eos, self.pad, self.device = tok.eos_token_id, tok.pad_token_id, ctx.device
        self.width = self.T + self.every  # a row steps at most `every` - 1 times past T before it leaves
        self.g = 0  # global step
        self.next = 0  # next prompt to admit
        self.live: list[int | None] = []  # the prompt of each row (None: a free row)
        self.offsets: list[int] = []  # the global step of each row's first token
        self.offset = torch.zeros(0, dtype=torch.long, device=self.device)  # [B']
        self.length = torch.zeros(0, dtype=torch.long, device=self.device)  # [B'] tokens generated
        self.finished = torch.zeros(0, dtype=torch.bool, device=self.device)  # [B'] (free rows too)
        self.history = torch.zeros(0, self.width, dtype=torch.long, device=self.device)  # [B', width]
        self.segment = _Segment([], [], 0)
        self.final: dict[int, int] = {}  # prompt -> generated tokens, once done
        self.buffers: dict[int, dict[str, torch.Tensor]] = {}  # batch index -> records [b, width, ...]
        self.flushed = 0  # batches handed on

    @torch.inference_mode()
    def run(self) -> Iterator[BatchOutput]:
        """Decode every prompt; one BatchOutput per batch, in order."""
        self._admit(min(self.batch, len(self.prompts)), None)
        while self.live:
            token = self._step()
            if self.g % self.every == 0:
                yield from self._check(token)
            else:
                self.engine.feed(token)

    def _step(self) -> torch.Tensor:
        """One token of every row, recorded; returns the tokens [B']."""
        pos = (self.g - self.offset).clamp(max=self.width - 1)  # [B'] each row's own step (free rows: any)
        record = self.engine.step(pos, self.finished)
        token = record[self.engine.token_key]
        self.segment.records.append(record)
        self.length += (~self.finished).long()
        self.history[torch.arange(len(self.live), device=self.device), pos] = token
        if self.eos is not None:
            self.finished = self.finished | (token == self.eos)
        self.finished = self.finished | (self.length >= self.T)
        self.g += 1
        return token

    def _check(self, token: torch.Tensor) -> Iterator[BatchOutput]:
        """Host check: rows that are done free their slots, the next prompts take them; done batches go."""
        done = self._done()
        ended = [r for r, d in enumerate(done) if d and self.live[r] is not None]
        free = [r for r, d in enumerate(done) if d]
        waiting = len(self.prompts) - self.next
        if not ended and not (free and waiting):
            self.engine.feed(token)
            return
        self._close_segment()
        lengths = self.length.cpu().tolist()
        for r in ended:
            self.final[self.live[r]] = lengths[r]  # type: ignore[index]
            self.live[r] = None
        if not waiting and len(free) * DROP_AT >= len(self.live):  # the drain: see DROP_AT
            rows = [r for r, d in enumerate(done) if not d]
            self._keep(rows)
            token = token[torch.tensor(rows, dtype=torch.long, device=self.device)]
        if self.live:
            self.engine.feed(token)
            self.engine.trim()
            self._admit(min(len(free), waiting), free)
        self.segment = _Segment(list(self.live), list(self.offsets), self.g)
        yield from self._flush()

    def _done(self) -> list[bool]:
        """Rows that are done (EOS, the token limit, a stop string in their latest text, or free): the
        check's sync. Only the last tokens are decoded, enough to hold any stop string completed since the
        last check; a stop string missed that way only costs tokens (the host cut finds it in the full
        text), never changes one."""
        done = self.finished.cpu()
        stops = self.ctx.stop_strings
        if stops and not bool(done.all()):
            tok, history, length = self.ctx.llm.tokenizer, self.history.cpu(), self.length.cpu().tolist()
            window = self.every + max(len(s) for s in stops) + 2  # tokens: most hold a character or more
            for r in (~done).nonzero().flatten().tolist():
                recent = history[r, max(0, length[r] - window) : length[r]].tolist()
                text = tok.decode(recent, skip_special_tokens=True)
                done[r] = any(s and s in text for s in stops)
            self.finished = done.to(self.device)
        return [bool(d) for d in done.tolist()]

    def _keep(self, rows: list[int]) -> None:
        """Keep only rows `rows` (the rest are free and no prompt waits for them)."""
        keep = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.engine.select(keep)
        self.live, self.offsets = [self.live[r] for r in rows], [self.offsets[r] for r in rows]
        self.offset, self.length, self.history = self.offset[keep], self.length[keep], self.history[keep]
        self.finished = self.finished[keep]

    def _admit(self, n: int, free: list[int] | None) -> None:
        """Prefill the next n prompts into free rows `free` (None: as new rows)."""
        if n <= 0:
            return
        new = list(range(self.next, self.next + n))
        self.next += n
        ids, mask = left_pad([self.prompts[i] for i in new], self.pad, self.device)
        if free is None:
            self._grow(n)
            rows = list(range(len(self.live) - n, len(self.live)))
            self.engine.admit(ids, mask, None)
        else:
            rows = free[:n]
            self.engine.admit(ids, mask, torch.tensor(rows, dtype=torch.long, device=self.device))
        slots = torch.tensor(rows, dtype=torch.long, device=self.device)
        for r, sample in zip(rows, new, strict=True):
            self.live[r], self.offsets[r] = sample, self.g
        self.offset[slots], self.length[slots], self.finished[slots] = self.g, 0, False
        self.history[slots] = self.pad
        if not self.segment.records:  # nothing recorded yet: the rows join the open segment
            self.segment = _Segment(list(self.live), list(self.offsets), self.g)

    def _grow(self, n: int) -> None:
        """n more (free) rows."""
        dev = self.device
        self.live += [None] * n
        self.offsets += [self.g] * n
        self.offset = torch.cat([self.offset, torch.zeros(n, dtype=torch.long, device=dev)])
        self.length = torch.cat([self.length, torch.zeros(n, dtype=torch.long, device=dev)])
        self.finished = torch.cat([self.finished, torch.ones(n, dtype=torch.bool, device=dev)])
        self.history = torch.cat([self.history, torch.zeros(n, self.width, dtype=torch.long, device=dev)])

    def _close_segment(self) -> None:
        """Move the segment's records into their batches' buffers, at each row's own steps."""
        seg = self.segment
        if not seg.records:
            return
        n = len(seg.records)
        stacked = {k: torch.stack([r[k] for r in seg.records], 1) for k in seg.records[0]}  # [B', n, ...]
        steps = torch.arange(n, device=self.device)
        by_batch: dict[int, list[int]] = {}
        for r, sample in enumerate(seg.samples):
            if sample is not None:
                by_batch.setdefault(sample // self.batch, []).append(r)
        for b, rows in by_batch.items():
            buf = self._buffers(b, stacked)
            r_t = torch.tensor(rows, dtype=torch.long, device=self.device)
            within = [seg.samples[r] - b * self.batch for r in rows]  # type: ignore[operator]
            w_t = torch.tensor(within, dtype=torch.long, device=self.device)
            first = torch.tensor([seg.start - seg.offsets[r] for r in rows], device=self.device)
            cols = (first[:, None] + steps).clamp(max=self.width - 1)  # [b', n] each row's own steps
            for k, v in stacked.items():
                buf[k][w_t[:, None], cols] = v[r_t]
        seg.records = []

    def _buffers(self, b: int, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch b's record buffers [rows, width, ...], made on first use."""
        if b not in self.buffers:
            rows = min(self.batch, len(self.prompts) - b * self.batch)
            self.buffers[b] = {
                k: torch.full(
                    (rows, self.width, *v.shape[2:]),
                    self.pad if k == self.engine.token_key else 0,
                    dtype=v.dtype,
                    device=self.device,
                )
                for k, v in like.items()
            }
        return self.buffers[b]

    def _flush(self) -> Iterator[BatchOutput]:
        """Hand on every leading batch whose rows are all done."""
        while self.flushed * self.batch < len(self.prompts):
            b = self.flushed
            members = range(b * self.batch, min((b + 1) * self.batch, len(self.prompts)))
            if any(i not in self.final for i in members):
                return
            valid = [self.final.pop(i) for i in members]
            width = max(valid)
            record = {k: v[:, :width] for k, v in self.buffers.pop(b).items()}
            ids, mask = left_pad([self.prompts[i] for i in members], self.pad, self.device)
            valid_t = torch.tensor(valid, dtype=torch.long, device=self.device)
            yield self.engine.output(record, valid_t, ids, mask)
            self.flushed += 1


def refill_outputs(
    ctx: CollectContext, engine: RowEngine, prompts: Sequence[Sequence[int]], batch: int
) -> Iterator[BatchOutput]:
    """The BatchOutput of each batch of `batch` consecutive prompts, in order, decoded with refilling."""
    return Refill(ctx, engine, prompts, batch).run()
