"""The speculative decoding loop: System 1 drafts K tokens, the LLM verifies all K in one forward pass
(`collector.methods.speculative.speculative_step`).

Batches: every row advances by its own accepted count. Each cycle appends K+1 slots to each model's KV
cache for every row; a row's rejected drafts become holes masked by the attention mask, and each row
carries its own position ids (see `collector.decode.lockstep.Decoder`). After each cycle the holes move to
the left end of their row (`Decoder.compact_no_sync`, one gather of the cache, no host synchronisation), so
live slots are contiguous as under left padding: attention masks measure sliding windows (Mistral, Gemma 2
and 3), chunks and ALiBi distances in slots, and a hole between live slots would shrink a window. The
cache keeps every slot (a DynamicCache of full layers: a window's evicted tail is still there when a
rollback needs it). The device is synchronised only every few cycles (to stop when every row is done).
No cycle feeds a hole before a live slot: the SLM's first pass re-feeds the token before x.

One cycle, per row, with x the last emitted token (not yet fed to either model) and t the token before it
(d_K of an all-accepted cycle, else the last kept token, dropped from the SLM's cache by the last cycle):
    SLM:  feed [t, x], then d_1 .. d_{K-1} (K forward passes in all, drafting d_1 .. d_K)
    LLM:  feed [x, d_1 .. d_K] once: log-probs l_0 .. l_K (K+1 positions)
    emit: d_1 .. d_n, then the LLM's token at position n (n = accepted drafts, 0..K)
The SLM's figures for a bonus token come from the next cycle's first slot (or a last flush pass).
Recurrent and hybrid models cannot roll a state back: `collector.architectures` refuses them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from collector.batch import row_end
from collector.decode.lockstep import CHECK_EVERY, Decoder, s1_trace_no_sync
from collector.methods.base import BatchOutput, CollectContext
from collector.methods.speculative import SpecVerdict, keeps_drafting_no_sync, speculative_step
from collector.sampling import gumbel_no_sync, pick_no_sync
from collector.token_stats import (
    TRACE_FIELDS,
    Figures,
    StepTrace,
    accept_prob_no_sync,
    device_dtype,
    figures_no_sync,
)

SPEC_COLUMNS = ("draft_index", "accepted")  # per-token columns of speculative decoding beyond the trace


class TraceBuffer:
    """Per-row token slots on the device [B, W]; a cycle scatters its tokens at each row's own offset."""

    def __init__(self, B: int, width: int, device: torch.device) -> None:
        self.dump = width - 1  # writes that must go nowhere land in this last column
        self.data: dict[str, torch.Tensor] = {}
        for name in (*TRACE_FIELDS, *SPEC_COLUMNS):  # dtypes from the warehouse's columns, not the names
            self.data[name] = torch.zeros(B, width, dtype=device_dtype(name), device=device)

    def put(self, rows: torch.Tensor, idx: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Write values[name] [B', n] of batch rows `rows` [B'] at columns idx [B', n]."""
        r = rows[:, None].expand_as(idx)
        for name, v in values.items():
            self.data[name][r, idx] = v.to(self.data[name].dtype)

    def trace(self, T: int) -> tuple[StepTrace, dict[str, torch.Tensor]]:
        """The first T slots as a StepTrace [B, T] and the speculative columns."""
        d = {k: v[:, :T] for k, v in self.data.items()}
        return StepTrace.from_dict(d), {k: d[k] for k in SPEC_COLUMNS}


@dataclass(frozen=True)
class Draft:
    """One cycle's drafting: drafts [B', D] (D ≤ K), System 1's picks and log-probs at each slot
    [B', S] / [B', S, V] (S = D + 1 when drafting stopped early for every row, else K), drafted [B']."""

    tokens: torch.Tensor
    picks: torch.Tensor
    s_logp: torch.Tensor
    drafted: torch.Tensor


class SpeculativeBatch:
    """One batch under draft/verify cycles: both decoders, each live row's pending tokens, counts, trace."""

    def __init__(
        self,
        ctx: CollectContext,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        *,
        max_tokens: int | None = None,
        stop_on_eos: bool = True,
    ) -> None:
        """`max_tokens` (default: the run's max_new_tokens) and `stop_on_eos` False let a timing keep every
        row drafting for as long as it needs (`collector.costs.cycle_seconds`)."""
        cfg, tok = ctx.config, ctx.llm.tokenizer
        self.ctx, self.K = ctx, cfg.draft_k
        self.T = cfg.max_new_tokens if max_tokens is None else max_tokens
        B, device = input_ids.shape[0], input_ids.device
        self.slm, self.llm = (Decoder(m.model, ctx.vocab, rollback=True) for m in (ctx.system1, ctx.llm))
        self.pad, self.eos = tok.pad_token_id, tok.eos_token_id if stop_on_eos else None
        if input_ids.shape[1] < 2:  # one pad column, so the SLM has a token before x to feed
            input_ids = torch.cat([torch.full_like(input_ids, self.pad), input_ids], dim=1)
            mask = torch.cat([torch.zeros_like(mask), mask], dim=1)
        self.llm.prefill(input_ids[:, :-1], mask[:, :-1])  # the prompt's last token: the first cycle's
        self.slm.prefill(input_ids[:, :-2], mask[:, :-2])  # and the one before it, for the SLM
        self.rows = torch.arange(B, device=device)  # [B'] the batch row of each row still in the batch
        self.last = input_ids[:, -1]  # [B'] emitted (or prompt) token not yet fed to either model
        self.prev = input_ids[:, -2]  # [B'] t: the token before it, not in the SLM's cache
        self.prev_real = mask[:, -2].bool()  # [B'] t is a token (not padding): False only before cycle 1
        self.prev_live = torch.zeros(B, dtype=torch.bool, device=device)  # [B'] t is a bonus d_K: figures
        self.prev_l: torch.Tensor | None = None  # [B', V] the LLM's log-probs at each row's bonus position
        self.count = torch.zeros(B, dtype=torch.long, device=device)  # [B] tokens kept per batch row
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)  # [B']
        self.buf = TraceBuffer(B, self.T + self.K + 2, device)
        # per cycle, each [B']: (rows, accepted, drafted, start, kept)
        self.cycles: list[tuple[torch.Tensor, ...]] = []

    def _noise(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.ctx.config.greedy:
            return None
        return gumbel_no_sync(like.shape, self.ctx.generator, like.device)

    def draft(self) -> Draft:
        """System 1 drafts up to K tokens per row; under a stop rule each row stops on its own (≥ 1 token),
        and drafting ends when every row has stopped (one host check per draft token, stop rule only)."""
        cfg = self.ctx.config
        live = torch.stack([self.prev_real, torch.ones_like(self.prev_real)], dim=1)
        first = self.slm.feed(torch.stack([self.prev, self.last], dim=1), live)  # [B', 2, V]
        self.fix_bonus(first[:, 0], self.prev_live)
        s_logps, picks = [first[:, 1]], []
        drafting = ~self.finished  # [B']
        drafted = torch.zeros(len(self.rows), dtype=torch.long, device=self.count.device)
        n_drafts = self.K
        for k in range(self.K):
            lp = s_logps[-1]
            picks.append(pick_no_sync(lp, cfg, self._noise(lp)))
            if k > 0 and cfg.draft_stop is not None:
                assert cfg.draft_threshold is not None
                drafting = drafting & keeps_drafting_no_sync(lp, cfg.draft_stop, cfg.draft_threshold)
                if not bool(drafting.any()):
                    n_drafts = k
                    break
            drafted = drafted + drafting.long()
            if k + 1 < self.K:
                s_logps.append(self.slm.feed(picks[-1][:, None], drafting[:, None])[:, 0])
        return Draft(
            torch.stack(picks[:n_drafts], dim=1),
            torch.stack(picks, dim=1),
            torch.stack(s_logps, dim=1),
            drafted,
        )

    def fix_bonus(self, s_logp: torch.Tensor, which: torch.Tensor) -> None:
        """System 1's figures for the last cycle's bonus tokens of rows `which` [B'], from the SLM's
        log-probs after d_K [B', V]."""
        if self.prev_l is None:
            return
        cfg = self.ctx.config
        s1 = figures_no_sync(s_logp)
        s1_token = pick_no_sync(s_logp, cfg, self._noise(s_logp))
        values = {
            "s1_token_id": s1_token, "s1_prob": s1.prob, "s1_entropy": s1.entropy, "s1_margin": s1.margin,
            "llm_prob_s1_token": self.prev_l.gather(-1, s1_token[:, None]).squeeze(-1).exp(),
            "accept_prob": accept_prob_no_sync(s_logp, self.prev_l, cfg.temperature, cfg.top_p),
        }  # fmt: skip
        idx = torch.where(which, self.count[self.rows] - 1, self.buf.dump)[:, None]  # [B', 1]
        self.buf.put(self.rows, idx, {k: v[:, None] for k, v in values.items()})

    def cycle(self) -> None:
        """Draft, verify in one LLM pass, roll rejected slots back, record what was kept."""
        d = self.draft()
        D = d.tokens.shape[1]
        j = torch.arange(D + 1, device=d.tokens.device)
        live = j[None, 1:] <= d.drafted[:, None]  # [B', D]: slots past a row's own stop are holes
        l_lp = self.llm.feed(
            torch.cat([self.last[:, None], d.tokens], dim=1),
            torch.cat([torch.ones_like(live[:, :1]), live], 1),
        )  # [B', D+1, V]
        cfg = self.ctx.config
        verdict = speculative_step(d.tokens, d.s_logp[:, :D], l_lp, cfg, self.ctx.generator, d.drafted)
        n = verdict.accepted[:, None]  # [B', 1]
        self.llm.retract(j <= n)  # slots x, d_1..d_D: keep x, d_1..d_n
        self.slm.retract(torch.arange(d.s_logp.shape[1] + 1, device=j.device) <= n)  # t, x, d_1..d_{S-1}
        self.record(d, l_lp, verdict)

    def _kept_no_sync(self, v: SpecVerdict, active: torch.Tensor) -> torch.Tensor:
        """Tokens each row keeps of this cycle [B']: n + 1, cut after an EOS and at max_new_tokens."""
        j = torch.arange(v.tokens.shape[1], device=v.tokens.device)
        kept = v.accepted + 1
        if self.eos is not None:
            is_eos = (v.tokens == self.eos) & (j <= v.accepted[:, None])
            kept = torch.where(is_eos.any(1), is_eos.long().argmax(1) + 1, kept)
        kept = torch.minimum(kept, self.T - self.count[self.rows])
        return torch.where(active, kept, 0)

    def record(self, d: Draft, l_lp: torch.Tensor, v: SpecVerdict) -> None:
        """Scatter the kept tokens [B', ≤ D+1] at each row's offset; advance counts and pending tokens."""
        cfg, K, n = self.ctx.config, self.K, v.accepted
        W, S = l_lp.shape[1], d.s_logp.shape[1]
        j = torch.arange(W, device=l_lp.device)
        active = ~self.finished
        kept = self._kept_no_sync(v, active)
        start = self.count[self.rows]
        idx = torch.where(j < kept[:, None], start[:, None] + j, self.buf.dump)
        s1 = figures_no_sync(d.s_logp)  # [B', S]; a bonus slot S = K is filled by fix_bonus next cycle
        accept = accept_prob_no_sync(d.s_logp, l_lp[:, :S], cfg.temperature, cfg.top_p)
        picks = d.picks
        if S < W:
            pad = torch.zeros_like(s1.prob[:, :1])
            s1 = Figures(picks, *(torch.cat([f, pad], dim=1) for f in (s1.prob, s1.entropy, s1.margin)))
            accept, picks = torch.cat([accept, pad], dim=1), torch.cat([picks, picks[:, -1:]], dim=1)
        trace = s1_trace_no_sync(
            v.tokens, picks, s1, l_lp, v.tokens, torch.ones_like(idx, dtype=torch.bool), accept
        )
        values = trace.as_dict()
        values["draft_index"] = torch.where(j < n[:, None], j, K)  # K marks the LLM's correction or bonus
        values["accepted"] = j < n[:, None]
        self.buf.put(self.rows, idx, values)
        self.cycles.append((self.rows, n, d.drafted, start, kept))
        self.count = self.count.index_add(0, self.rows, kept)
        ended = kept < n + 1  # cut inside the cycle: EOS among the drafts, or max_new_tokens
        if self.eos is not None:
            ended = ended | (v.tokens.gather(1, (kept - 1).clamp(min=0)[:, None]).squeeze(1) == self.eos)
        self.finished = self.finished | (active & (ended | (self.count[self.rows] >= self.T)))
        self.prev = torch.cat([self.last[:, None], d.tokens], dim=1).gather(1, n[:, None]).squeeze(1)
        self.prev_real = torch.ones_like(self.prev_real)
        self.prev_live = active & (kept == K + 1)
        self.prev_l = l_lp[:, -1]
        self.last = v.tokens.gather(1, n[:, None]).squeeze(1).masked_fill(self.finished, self.pad)

    def check(self) -> bool:
        """Host check: cut rows at stop strings, drop finished rows from the batch; True when all are done."""
        stops = self.ctx.stop_strings
        finished, count = self.finished.cpu(), self.count.cpu()
        rows = self.rows.cpu().tolist()
        if stops and not bool(finished.all()):
            tokens = self.buf.data["token_id"][self.rows].cpu().numpy()
            cut = self.count.clone()
            for b in (~finished).nonzero().flatten().tolist():
                end = row_end(tokens[b], int(count[rows[b]]), self.ctx.llm.tokenizer, stops)
                if end.stop_reason == "stop_string":
                    finished[b] = True
                    cut[rows[b]] = end.n_tokens
            self.prev_live = self.prev_live & (cut == self.count)[self.rows]  # no bonus past a cut
            self.count, self.finished = cut, finished.to(self.finished.device)
        if bool(finished.all()):
            return True
        keep = (~finished).nonzero().flatten().to(self.rows.device)
        if len(keep) < len(rows) and self.slm.can_select() and self.llm.can_select():
            self.drop(keep)
        return False

    def drop(self, keep: torch.Tensor) -> None:
        """Finished rows leave the batch (their bonus figures first); keep [B''] indexes the live rows."""
        leaving = self.prev_live & self.finished
        if bool(leaving.any()):
            self.fix_bonus(self.slm.feed(self.prev[:, None], leaving[:, None])[:, 0], leaving)
            self.slm.drop_last()
        for dec in (self.slm, self.llm):
            dec.select(keep)
        self.rows, self.last, self.prev = self.rows[keep], self.last[keep], self.prev[keep]
        self.prev_real = self.prev_real[keep]
        self.prev_live, self.finished = self.prev_live[keep], self.finished[keep]
        self.prev_l = None if self.prev_l is None else self.prev_l[keep]

    def flush(self) -> None:
        """Give the last cycle's bonus tokens their System 1 figures (one more SLM pass, if any needs it)."""
        if self.prev_l is not None and bool(self.prev_live.any()):
            self.fix_bonus(self.slm.feed(self.prev[:, None], self.prev_live[:, None])[:, 0], self.prev_live)

    def mark_last(self) -> None:
        """Each row's last kept token counts as the LLM's (draft index K, not an accepted draft), as in
        its cycles: a cycle cut inside its drafts (EOS, stop string, length) ends on a token the LLM agreed
        with, and `sum(accepted) + cycles = n_tokens` holds for the events too."""
        rows = torch.arange(len(self.count), device=self.count.device)
        last = (self.count - 1).clamp(min=0)
        self.buf.data["draft_index"][rows, last] = self.K
        self.buf.data["accepted"][rows, last] = 0

    def next_interval(self) -> int:
        """Cycles that can run before any chance that every row is done by length (1..CHECK_EVERY); a lone
        row is checked after every cycle, else its cycles would run on past its EOS (a third more cycles
        at batch 1 on the zoo)."""
        if len(self.rows) == 1:
            return 1
        counts = self.count[self.rows].masked_fill(self.finished, self.T).cpu()
        need = (self.T - int(counts.min()) + self.K) // (self.K + 1)
        return max(1, min(CHECK_EVERY, need))

    def cycles_table(self) -> pa.Table:
        """One row per (batch row, cycle it kept tokens of): sample_id is the batch row index here."""
        flat = [torch.cat(parts) for parts in zip(*self.cycles, strict=True)]
        seq = torch.cat([torch.full_like(c[0], i) for i, c in enumerate(self.cycles)])
        rows, accepted, drafted, start, kept = (t.cpu().numpy() for t in flat)
        table = pa.table(
            {
                "sample_id": pa.array(rows.astype("int32")),
                "seq": pa.array(seq.cpu().numpy().astype("int32")),
                "drafted": pa.array(drafted.astype("int16")),
                "accepted": pa.array(accepted.astype("int16")),
                "start": pa.array(start.astype("int32")),
                "kept": pa.array(kept.astype("int32")),
            }
        )
        return trim_cycles(table, self.count.cpu().tolist())


def trim_cycles(cycles: pa.Table, n_tokens: list[int]) -> pa.Table:
    """Cycles as a sample kept them: none past its cut, the last one cut to the tokens kept (a cycle that
    keeps m < accepted + 1 tokens records m − 1 accepted of m − 1 drafted: the LLM wrote the last one), so
    sum(accepted) + cycles = n_tokens. Cycles are numbered 0, 1, ... within each sample."""
    rows = cycles.column("sample_id").to_numpy()
    start = cycles.column("start").to_numpy().astype(np.int64)
    accepted = cycles.column("accepted").to_numpy().astype(np.int64)
    drafted = cycles.column("drafted").to_numpy().astype(np.int64)
    limit = np.asarray(n_tokens, dtype=np.int64)[rows] - start
    kept = np.minimum(np.minimum(cycles.column("kept").to_numpy(), accepted + 1), limit)
    cut = kept < accepted + 1
    accepted = np.where(cut, kept - 1, accepted)
    drafted = np.where(cut, kept - 1, drafted)
    order = np.lexsort((cycles.column("seq").to_numpy(), rows))
    order = order[kept[order] > 0]
    r = rows[order]
    first = np.r_[True, r[1:] != r[:-1]] if len(r) else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(r)), 0)) if len(r) else r
    return pa.table(
        {
            "sample_id": pa.array(r.astype("int32")),
            "cycle": pa.array((np.arange(len(r)) - group_start).astype("int32")),
            "drafted": pa.array(drafted[order].astype("int16")),
            "accepted": pa.array(accepted[order].astype("int16")),
            "start": pa.array(start[order].astype("int32")),
            "seq": pa.array(cycles.column("seq").to_numpy()[order]),
            "kept": pa.array(kept[order].astype("int32")),
        }
    )


@torch.inference_mode()
def collect_speculative_batch(
    ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor
) -> BatchOutput:
    """Draft/verify cycles over a batch until every row is done; the trace stays on the device."""
    run = SpeculativeBatch(ctx, input_ids, mask)
    interval = run.next_interval()
    while True:
        for _ in range(interval):
            run.cycle()
        if run.check():
            break
        interval = run.next_interval()
    run.flush()
    run.mark_last()
    trace, extra = run.buf.trace(run.T)
    return BatchOutput(trace, run.count.clamp(max=run.T), extra, run.cycles_table())


def cycles_for_samples(cycles: pa.Table, sample_ids: list[int], n_tokens: list[int]) -> pa.Table:
    """A batch's cycles with real sample ids, cut where each row's stored tokens end (EOS, stop string)."""
    table = trim_cycles(cycles, n_tokens)
    ids = pa.array([sample_ids[r] for r in table.column("sample_id").to_pylist()], pa.int32())
    return table.set_column(0, "sample_id", ids).select(["sample_id", "cycle", "drafted", "accepted"])
