"""`python -m collector.run`: collect token events of a collaboration into the warehouse."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from collector.config import CHAT_TEMPLATE_MODES, RunConfig
from collector.engine import RunSummary, run_collection
from warehouse import vocabulary
from warehouse.db import named_damage
from warehouse.errors import UserError
from warehouse.migrate import head_revision, upgrade
from warehouse.settings import add_warehouse_argument, command_parser, positive_int, resolve_warehouse

EXAMPLES = """examples:
  python -m collector.run                                   # the default job: every zoo pair, every method
  python -m collector.run --llm zoo:zoo-l --slm zoo:zoo-xs --dataset builtin:arith --samples 32
  python -m collector.run --llm ./pythia-1b --slm ./pythia-70m --method oracle \\
      --prompts prompts.jsonl --samples 100 --batch-size 16 --max-new-tokens 128 --warehouse runs.duckdb
  python -m collector.run --llm zoo:zoo-l --slm zoo:zoo-s --dataset builtin:arith --experiment tau-sweep \\
      --router entropy --threshold 1.5                    # filed under experiment tau-sweep
  python -m collector.run --llm hf:smollm2-135m-instruct --slm hf:smollm2-135m-instruct/rtn4 \\
      --dataset builtin:arith --samples 8               # a real model (shipped GGUF) and a built draft
  python -m collector.run --llm ./model.Q4_K_M.gguf --slm ./draft.Q8_0.gguf --prompts prompts.jsonl
  python -m collector.run --resume 7                        # continue run 7 after its last committed sample
  python -m collector.run --like 7 --method speculative --draft-k 3   # run 7's settings but these
  python -m collector.run --llm zoo:zoo-l --slm zoo:zoo-xs --dataset builtin:arith --recalibrate
                                                            # time the pair's costs again (else reused)
"""

DEFAULTS = {f.name: f.default for f in fields(RunConfig)}


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (defaults come from RunConfig)."""
    p = command_parser(
        "python -m collector.run",
        "Run a large and a small model together and record every generated token.",
        EXAMPLES,
    )
    add = p.add_argument
    add("--llm", help="large model (System 2): local path, .gguf file, hub id, hf:<name> or zoo:<name>")
    add("--slm", help="small model (System 1): local path, .gguf file, hub id, hf:<name>[/draft], zoo:<name>")
    add("--slm-tuned", help="tuned small model, for --method proxy")
    add("--method", choices=vocabulary.methods(), default=DEFAULTS["method"])
    add(
        "--router",
        choices=vocabulary.routers(),
        default=DEFAULTS["router"],
        help="when System 2 is consulted",
    )
    add("--threshold", type=float, help=f"router threshold τ (consult where {vocabulary.rules_help()})")
    add("--router-model", help="classifier from `python -m collector.router train`, for --router learned")
    add("--prompts", help='JSONL file, one {"prompt": ...} object per line')
    add("--dataset", help="builtin:arith|builtin:choice|builtin:code|gsm8k|mmlu-stem|mbpp|humaneval")
    add("--dataset-path", help="local file or folder of the dataset")
    add("--samples", type=int, help="number of prompts (a seeded subset for datasets)")
    add("--seed", type=int, default=DEFAULTS["seed"])
    add("--shots", type=int, help="few-shot examples in each prompt (default: the dataset's)")
    add("--batch-size", type=int, default=DEFAULTS["batch_size"])
    add("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"])
    add("--temperature", type=float, default=DEFAULTS["temperature"], help="0 = greedy (the paper's)")
    add("--top-p", type=float, default=DEFAULTS["top_p"])
    add("--draft-k", type=int, default=DEFAULTS["draft_k"], help="speculative draft length K")
    add(
        "--draft-stop",
        choices=vocabulary.draft_stops(),
        help=f"stop a draft early where {vocabulary.rules_help(True)}",
    )
    add("--draft-threshold", type=float, help="τ of --draft-stop")
    add(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        default=None,
        help="record no costs (the pair's cycle and generate timings the advisor reads)",
    )
    add("--recalibrate", action="store_true", default=None,
        help="time the pair's costs again (by default they are timed once per pair, device, dtype and "
             "batch size, at batch 1 and --batch-size; later runs reuse them)")  # fmt: skip
    add("--calibration-prompts", type=int, default=DEFAULTS["calibration_prompts"],
        help="prompts whose whole decodes the calibration times at batch 1, each twice (fewer: cheaper, "
             "noisier)")  # fmt: skip
    add("--alpha", type=float, default=DEFAULTS["alpha"], help="contrastive plausibility cut-off α")
    add("--lambda", dest="lam", type=float, default=DEFAULTS["lam"], help="contrastive mix λ")
    add("--weight", type=float, default=DEFAULTS["weight"], help="proxy-tuning weight w")
    add("--device", help="cuda, cpu, ... (default: cuda where present)")
    add("--dtype", help="float32, bfloat16, float16 (default: bf16 on CUDA, fp32 on CPU)")
    add("--device-map", help="auto: place each model over this machine's GPUs (accelerate), for big models")
    add("--truncate-prompt", action="store_true", help="cut over-long prompts from the left")
    add("--experiment", default=DEFAULTS["experiment"],
        help="the named set of runs this run joins (analyses read one experiment at a time)")  # fmt: skip
    add("--allow-inverted", action="store_true", default=None,
        help="run a pair whose System 2 (--llm) is not larger than System 1 (--slm) by counted "
             "parameters")  # fmt: skip
    add("--chat-template", choices=CHAT_TEMPLATE_MODES, default=DEFAULTS["chat_template"],
        help="ask in the LLM's chat format (auto: where its tokenizer has a template)")  # fmt: skip
    add_warehouse_argument(p)
    add("--resume", metavar="RUN", help="continue a run (its id or key) after its last committed sample")
    add("--like", metavar="RUN",
        help="a new run with every setting of run RUN (its id or key) but the flags given")  # fmt: skip
    add(
        "--threads",
        type=positive_int,
        help="CPU threads for torch (default: torch's; the default job uses 1)",
    )
    add("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A RunConfig from parsed arguments."""
    names = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    missing = [flag for flag in ("llm", "slm") if flag not in values]
    if missing:
        raise UserError(f"missing --{' and --'.join(missing)}; or run with no arguments for the default job")
    return RunConfig(**values)


def config_like(ref: str, warehouse: Path, argv: list[str]) -> RunConfig:
    """Run `ref`'s recorded settings with the flags written on the command line in their place."""
    from collector.resume import recorded_config

    return RunConfig.from_settings({**recorded_config(ref, warehouse).settings(), **resume_flags(argv)})


def print_summary(console: Console, config: RunConfig, summary: RunSummary) -> None:
    """The table printed when a run ends."""
    table = Table(title=f"run {summary.run_id if summary.run_id is not None else summary.run_key}")
    for col in ("method", "router", "samples", "tokens", "consult rate", "CoF", "tokens/s", "accuracy"):
        table.add_column(col, justify="right")
    acc = "—" if summary.accuracy is None else f"{summary.accuracy:.3f}"
    table.add_row(
        config.method,
        config.router,
        str(summary.samples),
        str(summary.tokens),
        f"{summary.consult_rate:.3f}",
        f"{summary.cof:.4f}",
        f"{summary.tokens_per_s:.1f}",
        acc,
    )
    console.print(table)
    console.print(f"calibration: {summary.calibration}", highlight=False)
    if not summary.ingested:
        console.print(
            "[yellow]the warehouse is held by another process: the run is staged and will be "
            "ingested by the API server or `python -m warehouse ingest`[/yellow]"
        )


# The zoo's models are tiny: one thread avoids OpenMP overhead (and collapse when the CPU is shared,
# measured 10x slower with two threads on a busy two-core machine).
DEFAULT_JOB_THREADS = 1


def set_threads(n: int | None) -> None:
    """Fix torch's intra-op threads for this process (None leaves torch's default)."""
    if n:
        torch.set_num_threads(n)


JOB_FLAGS = ("warehouse", "threads", "quiet")  # the only flags the default job takes


def is_default_job(args: argparse.Namespace) -> bool:
    """True when nothing but --warehouse, --threads or --quiet was given."""
    defaults = vars(build_parser().parse_args([]))
    return all(getattr(args, k) == v for k, v in defaults.items() if k not in JOB_FLAGS)


def given_flags(argv: list[str]) -> dict[str, object]:
    """The options written on the command line (a default is never mistaken for a choice)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # an option not written is left out of the namespace
    return vars(parser.parse_args(argv))


def resume_flags(argv: list[str]) -> dict[str, object]:
    """The run settings given beside --resume (checked against the recorded ones)."""
    names = {f.name for f in fields(RunConfig)}
    return {k: v for k, v in given_flags(argv).items() if k in names}


def print_error(console: Console, exc: Exception) -> None:
    """One line, never wrapped (a path or a command in it must stay copyable) and never read as markup."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    console = Console(stderr=False, soft_wrap=True)  # a path or a command in a line stays copyable
    args = build_parser().parse_args(argv)
    warehouse = resolve_warehouse(args.warehouse)
    default_job = is_default_job(args)
    set_threads(args.threads or (DEFAULT_JOB_THREADS if default_job else None))
    try:
        with named_damage(warehouse):
            outcome = _collect(args, argv, warehouse, console, default_job)
    except UserError as exc:  # anything else is a bug: it keeps its traceback
        print_error(console, exc)
        return 2
    if isinstance(outcome, int):
        return outcome
    print_summary(console, *outcome)
    return 0


def _collect(
    args: argparse.Namespace, argv: list[str], warehouse: Path, console: Console, default_job: bool
) -> int | tuple[RunConfig, RunSummary]:
    """The default job (its exit status), or one run or resume (its config and summary)."""
    if not warehouse.exists():  # a new file starts at head; one behind head is still refused
        upgrade(warehouse)
        console.print(f"created {warehouse} at schema revision {head_revision()}", highlight=False)
    if default_job:
        from collector.sweep import run_default_job

        return run_default_job(warehouse, console)
    if args.resume:
        from collector.resume import resume_run

        if args.like:
            raise UserError("--resume continues a run with its own settings; leave out --like")
        return resume_run(args.resume, warehouse, progress=not args.quiet, flags=resume_flags(argv))
    config = config_like(args.like, warehouse, argv) if args.like else config_from_args(args)
    return config, run_collection(config, warehouse, progress=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
