"""`python -m collector.zoo`: list the shipped models or retrain the whole family from a seed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from collector.zoo import ZOO_DIR, ZooEntry, zoo_models
from warehouse.settings import command_parser

EXAMPLES = """examples:
  python -m collector.zoo list                      # table of models, sizes, losses, accuracies
  python -m collector.zoo list --json               # the same as a JSON list
  python -m collector.zoo train --out /tmp/zoo      # retrain tokenizer, corpus, models, manifest (seed 0)
  python -m collector.zoo train --out collector/zoo/models --seed 0   # rebuild the shipped family
"""


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` above zero, else a one-line usage error."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = command_parser(
        "python -m collector.zoo",
        "The zoo: tiny GPT-NeoX models sharing one tokenizer, trained on the built-in tasks.",
        EXAMPLES,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="show the shipped models", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    lst.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    lst.add_argument("--dir", type=Path, default=ZOO_DIR, help=f"zoo folder (default: {ZOO_DIR})")
    trn = sub.add_parser("train", help="reproduce the family from its seed", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    trn.add_argument("--out", type=Path, required=True, help="folder for the models and zoo.json")
    trn.add_argument(
        "--seed", type=int, default=0, help="seed of tokenizer, corpus order and weights (default 0)"
    )
    trn.add_argument("--threads", type=_positive(int), default=1, help="torch CPU threads (default 1)")
    trn.add_argument(
        "--scale", type=_positive(float), default=1.0, help="multiply every token budget (quick probes: 0.1)"
    )
    trn.add_argument(
        "--resume", action="store_true", help="keep models an interrupted run in --out already finished"
    )
    trn.add_argument(
        "--eval-samples",
        type=_positive(int),
        default=None,
        help="test items per built-in task for accuracy (default: 800, as the model card reports)",
    )
    return parser


def _entry_json(e: ZooEntry) -> dict[str, object]:
    """The public JSON shape of one model."""
    return {
        "name": e.name,
        "path": e.path,
        "params": e.params,
        "val_loss": e.val_loss,
        "accuracy": dict(e.accuracy),
    }


def format_table(entries: Sequence[ZooEntry]) -> str:
    """A readable table: one line per model."""
    tasks = sorted({t for e in entries for t in e.accuracy})
    head = ["name", "params", "val_loss", *(t.removeprefix("builtin:") for t in tasks), "path"]
    rows = [
        [
            e.name,
            f"{e.params:,}",
            f"{e.val_loss:.3f}",
            *(f"{e.accuracy.get(t, float('nan')):.3f}" for t in tasks),
            e.path,
        ]
        for e in entries
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        entries = zoo_models(args.dir)
        print(json.dumps([_entry_json(e) for e in entries], indent=2) if args.json else format_table(entries))
        return 0
    from collector.tasks.sandbox import sandbox_problem

    if problem := sandbox_problem():  # training ends with builtin:code accuracy: refuse before, not after
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from collector.zoo.train import train_family  # lazily: torch and transformers load slowly

    start = time.perf_counter()
    extra = {} if args.eval_samples is None else {"eval_samples": args.eval_samples}
    reports = train_family(
        args.out, args.seed, scale=args.scale, threads=args.threads, resume=args.resume, **extra
    )
    print(format_table(zoo_models(args.out)))
    print(f"trained {len(reports)} models in {time.perf_counter() - start:.0f} s wall", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
