"""`python -m collector.drafts`: build the System 1 drafts of a shipped real model, and their model card."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from collector.drafts import HF_PREFIX, REAL_MODELS, parse_recipe, resolve_named
from collector.drafts.build import read_record
from warehouse.errors import UserError
from warehouse.settings import command_parser, positive_int

EXAMPLES = """examples:
  python -m collector.drafts build                          # every default draft of smollm2-135m-instruct
  python -m collector.drafts build --drafts rtn4,exit8 --samples 4 --max-new-tokens 16
  python -m collector.drafts list                           # what is built, where, and the card if measured
The cache is $FSGEN_CACHE, else ~/.cache/fsgen (the real model dequantized: 0.5 GB; each draft up to 0.5 GB).
"""


def _parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m collector.drafts",
        "Build System 1 drafts from a real model (quantized, early-exit) and measure agreement.",
        EXAMPLES,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("build", "list"):
        cmd = sub.add_parser(name, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_argument("--real", default=next(iter(REAL_MODELS)), choices=list(REAL_MODELS))
        cmd.add_argument("--drafts", help="comma list of recipes (default: the model's own list)")
    build = sub.choices["build"]
    build.add_argument("--samples", type=int, default=8, help="items per built-in task for the agreement")
    build.add_argument("--max-new-tokens", type=int, default=32, help="tokens the real model writes per item")
    build.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    return p


def card_path(real: str) -> Path:
    """The model card (JSON) of a real model's drafts, next to them in the cache."""
    draft = resolve_named(f"{HF_PREFIX}{real}/{REAL_MODELS[real].drafts[0]}")
    return draft.parent / "card.json"


def build(real: str, recipes: list[str], samples: int, tokens: int) -> list[dict[str, object]]:
    """Build each draft (cached ones are reused) and measure its agreement with the real model."""
    from collector.drafts.agreement import agreement, real_continuations
    from collector.modeling import load_model
    from collector.tasks.builtin.world import BUILTIN_FAMILIES

    cpu = torch.device("cpu")
    base = load_model(f"{HF_PREFIX}{real}", cpu, torch.float32)
    start = time.perf_counter()
    runs = {f: real_continuations(base.model, base.tokenizer, f, samples, tokens) for f in BUILTIN_FAMILIES}
    print(f"real model: {base.params:,} params; continuations in {time.perf_counter() - start:.1f} s")
    rows: list[dict[str, object]] = []
    for recipe in recipes:
        folder = resolve_named(f"{HF_PREFIX}{real}/{recipe}")
        record = read_record(folder)
        assert record is not None
        draft = load_model(record.name, cpu, torch.float32).model
        row: dict[str, object] = {**asdict(record), "folder": str(folder)}
        for family, run in runs.items():
            agree, total = agreement(draft, [run])
            row[f"agreement_{family}"] = round(agree / total, 4) if total else None
            row[f"tokens_{family}"] = total
        rows.append(row)
        print(markdown_row(row))
    card = {"real": f"{HF_PREFIX}{real}", "params": base.params, "samples": samples, "max_new_tokens": tokens,
            "drafts": rows}  # fmt: skip
    card_path(real).write_text(json.dumps(card, indent=1) + "\n")
    return rows


HEADER = (
    "| draft | params | bits/param | recipe | build s | agreement arith / choice / code |\n"
    "|---|---:|---:|---|---:|---|"
)


def markdown_row(row: dict[str, object]) -> str:
    """One draft as a line of the card's table."""
    agree = " / ".join(
        "—" if row.get(k) is None else f"{row[k]:.3f}" for k in row if str(k).startswith("agreement_")
    )
    size = f"{row['params']:,}"
    return f"| {row['name']} | {size} | {row['bits']} | {row['recipe']} | {row['build_s']} | {agree} |"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    real = REAL_MODELS[args.real]
    try:
        recipes = args.drafts.split(",") if args.drafts else list(real.drafts)
        for r in recipes:
            parse_recipe(r)
        if args.command == "list":
            file = card_path(args.real)
            print(f"drafts of {HF_PREFIX}{args.real} in {file.parent}")
            if file.is_file():
                print(HEADER)
                for row in json.loads(file.read_text())["drafts"]:
                    print(markdown_row(row))
            return 0
        if args.samples < 1 or args.max_new_tokens < 1:
            raise UserError("--samples and --max-new-tokens must be at least 1")
        if args.threads:
            torch.set_num_threads(args.threads)
        print(HEADER)
        build(args.real, recipes, args.samples, args.max_new_tokens)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
