"""The GPU check: every method on a pair large enough that the GPU matters, in bf16 and fp32.

    python -m bench.bench_gpu                         # CUDA: random ~1B and ~100M Llama models + the zoo
    python -m bench.bench_gpu --device cpu --tiny     # the CPU dry run (in the test suite)
    python -m bench.bench_gpu --out bench/gpu_results --batches 1 16 64

Models are built from configs (random weights, the zoo's tokenizer, nothing downloaded). Per dtype and
pair it records: speculative (greedy, K 4) against the LLM's greedy `generate` at batch 1, token by token
(the count of identical samples, and where bf16 ties made them part); tokens/s of each method and of
`generate` at each batch size; peak GPU memory; the advisor's predicted speed-up of speculative K 4 (from
a calibrated oracle run) beside a real run's. Writes `results.json` and `results.md` under --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from collector.architectures import check_models
from collector.config import RunConfig
from collector.decode import batch_collector
from collector.methods.base import CollectContext
from collector.modeling import LoadedModel, load_model, shared_vocab_size
from collector.prompts import encode_batch
from collector.routers import build_router
from collector.tasks import load_task
from collector.zoo import resolve_model_path
from warehouse.migrate import upgrade

# name -> Llama config sizes (hidden, layers, heads, intermediate); ~1.0B and ~0.1B with a 1,024-id vocab
SIZES = {"llama-1b": (2048, 20, 16, 5632), "llama-100m": (768, 12, 12, 2048)}
TINY = {"llama-1b": (64, 2, 4, 128), "llama-100m": (32, 2, 2, 64)}
METHODS: dict[str, dict[str, Any]] = {
    "oracle": {},
    "speculative": {"method": "speculative", "draft_k": 4},
    "contrastive": {"method": "contrastive", "lam": 1.0},
    "proxy": {"method": "proxy", "weight": 0.0},
}


@dataclass(frozen=True)
class Row:
    """One timed (pair, dtype, method, batch size)."""

    pair: str
    dtype: str
    method: str
    batch: int
    tokens: int
    seconds: float
    peak_mib: float | None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def build(root: Path, name: str, sizes: tuple[int, int, int, int]) -> Path:
    """A random Llama of `sizes` with the zoo's tokenizer, saved under root/name."""
    tok = AutoTokenizer.from_pretrained(resolve_model_path("zoo:zoo-xs"))
    hidden, layers, heads, inter = sizes
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=2048, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(len(name))
    AutoModelForCausalLM.from_config(config).save_pretrained(root / name)
    tok.save_pretrained(root / name)
    return root / name


def context(llm: LoadedModel, slm: LoadedModel, config: RunConfig) -> CollectContext:
    """What `engine.build_context` builds, from loaded models (refusals included)."""
    check_models(config, ((m.name, m.model) for m in (llm, slm)))
    generator = torch.Generator(device=next(llm.model.parameters()).device).manual_seed(config.seed)
    vocab = shared_vocab_size(llm, slm)
    return CollectContext(llm, slm, vocab, config, (), slm, build_router(config), generator)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(ctx: CollectContext, prompts: list[str], batch: int, method: str) -> tuple[int, float]:
    """(generated tokens, seconds) of `method` ('generate': the LLM's own) over one batch of prompts."""
    from collector.tasks.base import TaskItem

    items = [TaskItem(str(i), p) for i, p in enumerate((prompts * batch)[:batch])]
    ids, mask, _ = encode_batch(ctx, items)
    T = ctx.config.max_new_tokens
    _sync(ctx.device)
    start = time.perf_counter()
    with torch.inference_mode():
        if method == "generate":
            tok = ctx.llm.tokenizer
            out = ctx.llm.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=T, do_sample=False,
                pad_token_id=tok.pad_token_id, eos_token_id=None,
            )  # fmt: skip
            tokens = int(out[:, ids.shape[1] :].numel())
        else:
            tokens = int(batch_collector(ctx.config)(ctx, ids, mask).valid.sum())
    _sync(ctx.device)
    return tokens, time.perf_counter() - start


def identity(ctx: CollectContext, prompts: list[str]) -> dict[str, Any]:
    """Speculative (greedy) against the LLM's generate, batch 1, per prompt: identical count, first
    differing step of the others (bf16 ties: the top two LLM log-probs within 1e-2 there)."""
    from collector.tasks.base import TaskItem

    cfg = replace(ctx.config, **METHODS["speculative"])
    spec = replace(ctx, config=cfg)
    same, differ = 0, []
    for i, prompt in enumerate(prompts):
        ids, mask, _ = encode_batch(ctx, [TaskItem(str(i), prompt)])
        with torch.inference_mode():
            ref = ctx.llm.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                pad_token_id=ctx.llm.tokenizer.pad_token_id, eos_token_id=None, output_logits=True,
                return_dict_in_generate=True,
            )  # fmt: skip
            out = batch_collector(cfg)(spec, ids, mask)
        want = ref.sequences[0, ids.shape[1] :].tolist()
        got = out.trace.token_id[0, : int(out.valid[0])].tolist()
        if got == want[: len(got)]:
            same += 1
            continue
        step = next(t for t, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
        top2 = torch.log_softmax(ref.logits[step][0].float(), -1).topk(2).values
        differ.append({"prompt": i, "step": step, "top2_gap": float(top2[0] - top2[1])})
    ties = sum(d["top2_gap"] < 1e-2 for d in differ)
    return {"samples": len(prompts), "identical": same, "differ": differ, "differ_at_ties": ties}


def advisor_check(
    llm: str, slm: str, dtype: str, args: argparse.Namespace, warehouse: Path
) -> dict[str, Any]:
    """The advisor's predicted speed-up of speculative K 4 (replayed from a calibrated oracle run) beside
    a real speculative K 4 run at batch 1 (its decode against the LLM's generate on the same prompts)."""
    from analytics.advise import advise, measured
    from collector.engine import run_collection

    base = RunConfig(
        llm=llm, slm=slm, dataset="builtin:arith", samples=args.samples, max_new_tokens=args.tokens,
        batch_size=1, device=args.device, dtype=dtype,
    )  # fmt: skip
    oracle = run_collection(base, warehouse, progress=False)
    k = METHODS["speculative"]["draft_k"]
    rows = advise(warehouse).candidates.filter(
        (pl.col("oracle_run_id") == oracle.run_id) & (pl.col("draft_k") == k) & pl.col("draft_stop").is_null()
    )
    spec = run_collection(replace(base, **METHODS["speculative"]), warehouse, progress=False)
    assert spec.run_id is not None
    acceptance, _, tps, baseline = measured(warehouse, spec.run_id)
    predicted = rows.row(0, named=True)
    return {
        "draft_k": k, "predicted_speedup": predicted["predicted_speedup"], "measured_speedup": tps / baseline,
        "predicted_acceptance": predicted["acceptance"], "measured_acceptance": acceptance,
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every pair × dtype × method × batch size; the JSON the Markdown table is made from."""
    device = torch.device(args.device)
    sizes = TINY if args.tiny else SIZES
    prompts = [it.prompt for it in load_task("builtin:arith", samples=args.samples, seed=0).items]
    rows: list[Row] = []
    ids: dict[str, Any] = {}
    advisor: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "bench.duckdb"
        upgrade(warehouse)
        llm_path, slm_path = (build(Path(tmp), n, s) for n, s in sizes.items())
        pairs = {
            "llama-1b/llama-100m": (str(llm_path), str(slm_path)),
            "zoo-l/zoo-xs": ("zoo:zoo-l", "zoo:zoo-xs"),
        }
        for dtype in args.dtypes:
            for pair, (llm_spec, slm_spec) in pairs.items():
                llm, slm = (load_model(s, device, getattr(torch, dtype)) for s in (llm_spec, slm_spec))
                base = RunConfig(
                    llm=llm_spec, slm=slm_spec, slm_tuned=slm_spec, prompts="-", max_new_tokens=args.tokens
                )
                ctx = context(llm, slm, base)
                ids[f"{pair} {dtype}"] = identity(ctx, prompts[: args.samples])
                if not args.tiny or not advisor:  # the dry run: one pair and dtype (a calibration each)
                    advisor[f"{pair} {dtype}"] = advisor_check(llm_spec, slm_spec, dtype, args, warehouse)
                for batch in args.batches:
                    for method in ("generate", *METHODS):
                        mctx = (
                            ctx
                            if method == "generate"
                            else context(llm, slm, replace(base, **METHODS[method]))
                        )
                        timed(mctx, prompts, batch, method)  # warm-up
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        tokens, seconds = timed(mctx, prompts, batch, method)
                        peak = (
                            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                        )
                        rows.append(Row(pair, dtype, method, batch, tokens, seconds, peak))
                del llm, slm, ctx
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": card,
        "tiny": args.tiny,
        "identity": ids,
        "advisor": advisor,
        "rows": [{**asdict(r), "tokens_per_s": r.tokens_per_s} for r in rows],
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown: identity per pair and dtype, then tokens/s against generate."""
    head = f"Device: {result['device']}{' (tiny dry run)' if result['tiny'] else ''}"
    lines = [head, "", "| pair, dtype | speculative = generate | differ (at ties) |", "| --- | --- | --- |"]
    for key, v in result["identity"].items():
        lines.append(
            f"| {key} | {v['identical']}/{v['samples']} | {len(v['differ'])} ({v['differ_at_ties']}) |"
        )
    lines += [
        "",
        "| pair, dtype | advisor's predicted speed-up (K 4) | measured | acceptance predicted / measured |",
    ]
    lines += ["| --- | --- | --- | --- |"]
    for key, v in result["advisor"].items():
        accept = f"{v['predicted_acceptance']:.2f} / {v['measured_acceptance']:.2f}"
        lines.append(f"| {key} | {v['predicted_speedup']:.2f}× | {v['measured_speedup']:.2f}× | {accept} |")
    lines += ["", "| pair | dtype | batch | method | tokens/s | vs generate | peak MiB |", "| --- " * 7 + "|"]
    gen = {
        (r["pair"], r["dtype"], r["batch"]): r["tokens_per_s"]
        for r in result["rows"]
        if r["method"] == "generate"
    }
    for r in result["rows"]:
        ratio = r["tokens_per_s"] / max(gen[r["pair"], r["dtype"], r["batch"]], 1e-9)
        peak = "—" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        cells = (
            r["pair"],
            r["dtype"],
            r["batch"],
            r["method"],
            f"{r['tokens_per_s']:.0f}",
            f"{ratio:.2f}×",
            peak,
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python -m bench.bench_gpu\n  python -m bench.bench_gpu --device cpu --tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models, few tokens: the CPU dry run")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default 1 16 64 (tiny: 1 4)")
    parser.add_argument("--samples", type=int, default=None, help="prompts for the identity check")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per sample")
    parser.add_argument("--out", type=Path, default=Path("bench/gpu_results"))
    args = parser.parse_args(argv)
    args.batches = args.batches or ([1, 4] if args.tiny else [1, 16, 64])
    args.samples = args.samples or (4 if args.tiny else 16)
    args.tokens = args.tokens or (8 if args.tiny else 64)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.exit(2, "bench_gpu: no CUDA device here; run it on a GPU machine, or --device cpu --tiny\n")
    torch.set_num_threads(1) if args.tiny else None
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
