"""The oracle's fast path: with the `always` router and greedy decoding the emitted text is the LLM's greedy
output, so no lock-step loop is needed: the LLM generates the batch (batched, cached), then one
teacher-forced SLM pass over the whole sequence yields every System 1 prediction.
"""

from __future__ import annotations

import torch

from collector.methods.base import BatchOutput, CollectContext
from collector.methods.oracle import oracle_step
from collector.modeling import forward
from collector.token_stats import log_probs, trace_no_sync


def valid_lengths_no_sync(generated: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Generated tokens of each row up to and including the first EOS: [B]."""
    B, T = generated.shape
    if eos_id is None:
        return torch.full((B,), T, device=generated.device)
    is_eos = generated == eos_id  # [B, T]
    first = torch.where(
        is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], T, dtype=torch.long)
    )
    return first


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids under left padding, as generate computes them: [B, L]."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def collect_oracle_batch(ctx: CollectContext, input_ids: torch.Tensor, mask: torch.Tensor) -> BatchOutput:
    """LLM greedy generate, then one teacher-forced SLM pass; figures stay on the device."""
    tok = ctx.llm.tokenizer
    out = ctx.llm.model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        max_new_tokens=ctx.config.max_new_tokens,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        stop_strings=list(ctx.stop_strings) or None,
        tokenizer=tok if ctx.stop_strings else None,
    )
    generated = out.sequences[:, input_ids.shape[1] :]  # [B, T]
    l_logp = log_probs(torch.stack(out.logits, dim=1), ctx.vocab)  # [B, T, V]
    valid = valid_lengths_no_sync(generated, tok.eos_token_id)
    return teacher_forced_output(ctx, input_ids, mask, generated, l_logp, valid)


def teacher_forced_output(
    ctx: CollectContext,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    generated: torch.Tensor,
    l_logp: torch.Tensor,
    valid: torch.Tensor,
) -> BatchOutput:
    """The batch's trace from the LLM's tokens [B, T] and log-probs [B, T, V] after left-padded prompts
    [B, P]: one teacher-forced System 1 pass over prompt + tokens gives every System 1 prediction."""
    P, T = input_ids.shape[1], generated.shape[1]
    full_mask = torch.cat([mask, torch.ones_like(generated)], dim=1)[:, : P + T - 1]
    seq = torch.cat([input_ids, generated], dim=1)[:, : P + T - 1]
    s_out = forward(ctx.system1.model, seq, full_mask, positions(full_mask), last=T)  # the prompt's: none
    s_logp = log_probs(s_out.logits[:, -T:], ctx.vocab)  # [B, T, V]: position P-1+t predicts token t
    choice = oracle_step(s_logp, l_logp)
    consulted = torch.ones_like(generated, dtype=torch.bool)
    trace = trace_no_sync(generated, s_logp, l_logp, choice.s2_token, consulted)
    return BatchOutput(trace=trace, valid=valid)
