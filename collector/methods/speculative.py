"""Speculative decoding: System 1 drafts K tokens, the LLM verifies all K in one forward pass.

Greedy: keep the longest draft prefix that matches argmax l, then the LLM's own token (the correction, or a
bonus token when all K match): the output is the LLM's greedy output. Sampling: accept draft d with
probability min(1, p(d)/q(d)); at the first rejection draw from max(0, p − q) normalised; after K
acceptances draw the bonus from p: the output is distributed as the LLM's (Leviathan et al., 2023).

Batches: every row advances by its own accepted count. Each cycle appends K+1 slots to each model's KV
cache for every row; a row's rejected drafts become holes masked by the attention mask, and each row
carries its own position ids (see `collector.lockstep.Decoder`). No cache is cropped or rebuilt, and the
device is synchronised only every few cycles (to stop when every row is done), never per cycle. The caches
grow (DynamicCache): holes make a cache preallocated for the worst case ((K+1)·max_new_tokens) long.

One cycle, per row, with x the last emitted token (not yet fed to either model):
    SLM:  feed [d_K of the last cycle if it was all accepted, else a hole; x], then d_1 .. d_{K-1}
          (K forward passes in all, drafting d_1 .. d_K)
    LLM:  feed [x, d_1 .. d_K] once: log-probs l_0 .. l_K (K+1 positions)
    emit: d_1 .. d_n, then the LLM's token at position n (n = accepted drafts, 0..K)
The SLM's figures for a bonus token come from the next cycle's first slot (or a last flush pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import torch

from collector.config import RunConfig
from collector.figures import Figures, StepTrace, figures_no_sync
from collector.lockstep import (
    CHECK_EVERY,
    Decoder,
    s1_trace_no_sync,
    stop_rows_on_host,
    trace_fields,
    trace_from_fields,
)
from collector.methods.base import BatchOutput, CollectContext
from collector.sampling import gumbel_no_sync, pick_no_sync, sampling_logp


@dataclass(frozen=True)
class SpecVerdict:
    """One verification: accepted drafts per row [B] (0..K); tokens [B, K+1], the first n+1 emitted."""

    accepted: torch.Tensor
    tokens: torch.Tensor


def accepted_prefix_no_sync(ok: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True in each row of ok [B, K]: [B]."""
    return ok.long().cumprod(dim=-1).sum(dim=-1)


def verify_greedy(draft: torch.Tensor, l_logp: torch.Tensor) -> SpecVerdict:
    """Keep the longest prefix of draft [B, K] equal to argmax l [B, K+1]; then the LLM's token."""
    target = l_logp.argmax(-1)  # [B, K+1]
    return SpecVerdict(accepted_prefix_no_sync(draft == target[:, :-1]), target)


def verify_sampling(
    draft: torch.Tensor, q_logp: torch.Tensor, p_logp: torch.Tensor, generator: torch.Generator | None
) -> SpecVerdict:
    """The accept/resample rule: draft [B, K] drawn from q [B, K, V]; the LLM's p [B, K+1, V] (log-probs)."""
    q, p = q_logp.exp(), p_logp.exp()
    idx = draft.unsqueeze(-1)  # [B, K, 1]
    q_d, p_d = q.gather(-1, idx).squeeze(-1), p[:, :-1].gather(-1, idx).squeeze(-1)  # [B, K]
    u = torch.rand(draft.shape, generator=generator, device=draft.device)
    n = accepted_prefix_no_sync(u * q_d < p_d)  # accept with probability min(1, p/q)
    residual = torch.cat([(p[:, :-1] - q).clamp_min(0.0), p[:, -1:]], dim=1)  # [B, K+1, V]
    noise = gumbel_no_sync(residual.shape, generator, draft.device)
    drawn = (residual.log() + noise).argmax(-1)  # [B, K+1]: one draw from each normalised residual
    j = torch.arange(draft.shape[1] + 1, device=draft.device)
    tokens = torch.where(j < n[:, None], torch.cat([draft, drawn[:, -1:]], dim=1), drawn)
    return SpecVerdict(n, tokens)


def speculative_step(
    draft: torch.Tensor,
    s_logp: torch.Tensor,
    l_logp: torch.Tensor,
    cfg: RunConfig,
    generator: torch.Generator | None = None,
) -> SpecVerdict:
    """Verify draft [B, K] given System 1's log-probs [B, K, V] and the LLM's [B, K+1, V]."""
    if cfg.greedy:
        return verify_greedy(draft, l_logp)
    q = sampling_logp(s_logp, cfg.temperature, cfg.top_p)
    p = sampling_logp(l_logp, cfg.temperature, cfg.top_p)
    return verify_sampling(draft, q, p, generator)


TRACE_FIELDS = (
    "token", "s1_token", "s1_prob", "s1_entropy", "s1_margin", "s2_token",
    "llm_token", "llm_prob", "llm_entropy", "llm_margin", "llm_prob_s1", "consulted",
    "draft_index", "accepted",
)  # fmt: skip


class TraceBuffer:
    """Per-row token slots on the device [B, W]; a cycle scatters its tokens at each row's own offset."""

    def __init__(self, B: int, width: int, device: torch.device) -> None:
        self.dump = width - 1  # writes that must go nowhere land in this last column
        self.data: dict[str, torch.Tensor] = {}
        for name in TRACE_FIELDS:
            dtype = torch.float32 if "prob" in name or name.endswith(("entropy", "margin")) else torch.long
            self.data[name] = torch.zeros(B, width, dtype=dtype, device=device)

    def put(self, idx: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Write values[name] [B, n] at columns idx [B, n]."""
        for name, v in values.items():
            self.data[name].scatter_(1, idx, v.to(self.data[name].dtype))

    def trace(self, T: int) -> tuple[StepTrace, dict[str, torch.Tensor]]:
        """The first T slots as a StepTrace [B, T] and the speculative columns."""
        d = {k: v[:, :T] for k, v in self.data.items()}
        extra = {"draft_index": d["draft_index"].to(torch.int16), "accepted": d["accepted"].bool()}
        return trace_from_fields(d), extra


class SpeculativeBatch:
    """One batch under draft/verify cycles: both decoders, each row's pending tokens, counts and trace."""

    def __init__(self, ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor) -> None:
        cfg, tok = ctx.config, ctx.llm.tokenizer
        self.ctx, self.K, self.T = ctx, cfg.draft_k, cfg.max_new_tokens
        B, device = input_ids.shape[0], input_ids.device
        self.slm, self.llm = Decoder(ctx.system1.model, ctx.vocab), Decoder(ctx.llm.model, ctx.vocab)
        for dec in (self.slm, self.llm):  # the prompt's last token is fed by the first cycle
            dec.prefill(input_ids[:, :-1], mask[:, :-1])
        self.pad, self.eos = tok.pad_token_id, tok.eos_token_id
        self.last = input_ids[:, -1]  # [B] emitted (or prompt) token not yet fed to either model
        self.prev = torch.full_like(self.last, self.pad)  # [B] d_K of an all-accepted cycle
        self.prev_live = torch.zeros(B, dtype=torch.bool, device=device)
        self.prev_l: torch.Tensor | None = None  # [B, V] the LLM's log-probs at each row's bonus position
        self.count = torch.zeros(B, dtype=torch.long, device=device)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.buf = TraceBuffer(B, self.T + self.K + 2, device)
        self.j = torch.arange(self.K + 1, device=device)  # [K+1] slot index within a cycle
        self.cycles: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (accepted, active, start)

    def _noise(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.ctx.config.greedy:
            return None
        return gumbel_no_sync(like.shape, self.ctx.generator, like.device)

    def draft(self) -> tuple[torch.Tensor, torch.Tensor]:
        """System 1's drafts [B, K] and its log-probs before each draft [B, K, V]: K forward passes."""
        live = torch.stack([self.prev_live, torch.ones_like(self.prev_live)], dim=1)
        first = self.slm.feed(torch.stack([self.prev, self.last], dim=1), live)  # [B, 2, V]
        self.fix_bonus(first[:, 0])
        s_logps, drafts = [first[:, 1]], []
        for k in range(self.K):
            drafts.append(pick_no_sync(s_logps[-1], self.ctx.config, self._noise(s_logps[-1])))
            if k + 1 < self.K:
                s_logps.append(self.slm.feed(drafts[-1][:, None])[:, 0])
        return torch.stack(drafts, dim=1), torch.stack(s_logps, dim=1)

    def fix_bonus(self, s_logp: torch.Tensor) -> None:
        """System 1's figures for the last cycle's bonus tokens, from the SLM's log-probs after d_K [B, V]."""
        if self.prev_l is None:
            return
        s1 = figures_no_sync(s_logp)
        s1_token = pick_no_sync(s_logp, self.ctx.config, self._noise(s_logp))
        llm_prob_s1 = self.prev_l.gather(-1, s1_token[:, None]).squeeze(-1).exp()
        idx = torch.where(self.prev_live, self.count - 1, self.buf.dump)[:, None]  # [B, 1]
        values = {"s1_token": s1_token, "s1_prob": s1.prob, "s1_entropy": s1.entropy, "s1_margin": s1.margin}
        self.buf.put(idx, {k: v[:, None] for k, v in {**values, "llm_prob_s1": llm_prob_s1}.items()})

    def cycle(self) -> None:
        """Draft K tokens, verify them in one LLM pass, roll rejected slots back, record what was emitted."""
        draft, s_lp = self.draft()
        l_lp = self.llm.feed(torch.cat([self.last[:, None], draft], dim=1))  # [B, K+1, V]
        verdict = speculative_step(draft, s_lp, l_lp, self.ctx.config, self.ctx.generator)
        n = verdict.accepted[:, None]  # [B, 1]
        self.llm.retract(self.j <= n)  # slots x, d_1..d_K: keep x, d_1..d_n
        self.slm.retract(self.j[:-1] <= n)  # slots x, d_1..d_{K-1}
        self.record(draft, s_lp, l_lp, verdict)

    def record(self, draft: torch.Tensor, s_lp: torch.Tensor, l_lp: torch.Tensor, v: SpecVerdict) -> None:
        """Scatter the emitted tokens [B, ≤K+1] at each row's offset; advance counts and pending tokens."""
        K, j, n = self.K, self.j, v.accepted[:, None]
        active = ~self.finished
        emit = (j <= n) & active[:, None]  # [B, K+1]
        idx = torch.where(emit, self.count[:, None] + j, self.buf.dump)
        s1 = figures_no_sync(s_lp)  # [B, K]; the bonus slot K is filled by fix_bonus next cycle
        pad = torch.zeros_like(s1.prob[:, :1])
        s1 = Figures(
            torch.cat([draft, draft[:, -1:]], dim=1),
            *(torch.cat([f, pad], dim=1) for f in (s1.prob, s1.entropy, s1.margin)),
        )
        consulted = torch.ones_like(emit)
        values = trace_fields(s1_trace_no_sync(v.tokens, s1.token, s1, l_lp, v.tokens, consulted))
        values["draft_index"] = torch.where(j < n, j, K)  # K marks the LLM's correction or bonus token
        values["accepted"] = j < n
        self.buf.put(idx, values)
        self.cycles.append((v.accepted, active, self.count))
        hit_eos = (emit & (v.tokens == self.eos)).any(1) if self.eos is not None else torch.zeros_like(active)
        self.count = self.count + torch.where(active, v.accepted + 1, 0)
        self.finished = self.finished | hit_eos | (self.count >= self.T)
        self.prev, self.prev_live, self.prev_l = draft[:, -1], active & (v.accepted == K), l_lp[:, -1]
        following = v.tokens.gather(1, n).squeeze(1)
        self.last = following.masked_fill(self.finished, self.pad)

    def flush(self) -> None:
        """Give the last cycle's bonus tokens their System 1 figures (one more SLM pass, if any needs it)."""
        if self.prev_l is not None and bool(self.prev_live.any()):
            self.fix_bonus(self.slm.feed(self.prev[:, None], self.prev_live[:, None])[:, 0])

    def next_interval(self) -> int:
        """Cycles that can run before any chance that every row is done by length (1..CHECK_EVERY)."""
        counts = self.count.masked_fill(self.finished, self.T).cpu()
        need = (self.T - int(counts.min()) + self.K) // (self.K + 1)
        return max(1, min(CHECK_EVERY, need))

    def cycles_table(self) -> pa.Table:
        """One row per (batch row, cycle the row took part in): sample_id is the batch row index here."""
        accepted, active, start = (torch.stack(c, dim=1).cpu() for c in zip(*self.cycles, strict=True))
        rows, cols = active.nonzero(as_tuple=True)
        cycle = (active.long().cumsum(1) - 1)[rows, cols]
        return pa.table(
            {
                "sample_id": pa.array(rows.numpy().astype("int32")),
                "cycle": pa.array(cycle.numpy().astype("int32")),
                "drafted": pa.array([self.K] * len(rows), pa.int16()),
                "accepted": pa.array(accepted[rows, cols].numpy().astype("int16")),
                "start": pa.array(start[rows, cols].numpy().astype("int32")),
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
        run.finished, done = stop_rows_on_host(
            run.buf.data["token"], run.count, run.finished, ctx.llm.tokenizer, ctx.stop_strings
        )
        if done:
            break
        interval = run.next_interval()
    run.flush()
    trace, extra = run.buf.trace(run.T)
    return BatchOutput(trace, run.count.clamp(max=run.T), extra, run.cycles_table())


def cycles_for_samples(cycles: pa.Table, sample_ids: list[int], n_tokens: list[int]) -> pa.Table:
    """A batch's cycles with real sample ids, less those that start after a row's cut (EOS, stop string)."""
    rows = cycles.column("sample_id").to_numpy()
    ids = pa.array([sample_ids[r] for r in rows], pa.int32())
    limit = pa.array([n_tokens[r] for r in rows], pa.int32())
    keep = pc.less(cycles.column("start"), limit)
    table = cycles.set_column(0, "sample_id", ids).filter(keep)
    return table.select(["sample_id", "cycle", "drafted", "accepted"])
