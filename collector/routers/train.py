"""Router training (`python -m collector.router train`): fit a learned router on a run's token events."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.routers.learned import LearnedModel, features_from_events, fit_router
from warehouse.db import WarehouseError, WarehouseLocked, duckdb_connection
from warehouse.errors import UserError
from warehouse.settings import add_warehouse_argument, command_parser, resolve_warehouse

EXAMPLES = """examples:
  python -m collector.router train --run 3 --out routers/xs-l.json
  python -m collector.run --llm zoo:zoo-l --slm zoo:zoo-xs --dataset builtin:arith \\
      --router learned --router-model routers/xs-l.json
"""
COLUMNS = ("sample_id", "step", "s1_prob", "s1_entropy", "s1_margin", "s1_token_id", "s2_token_id")


@dataclass(frozen=True)
class TrainReport:
    """What a training pass saw and how well the classifier separates mismatches on held-out samples."""

    run_id: int
    events: int
    mismatch_rate: float
    validation_auroc: float | None
    consult_rate: float


def read_events(warehouse: Path, run_id: int) -> dict[str, npt.NDArray[Any]]:
    """The run's token events as numpy columns; refuses runs whose labels mean something else."""
    try:
        with duckdb_connection(warehouse, read_only=True) as con:
            found = con.execute("SELECT method FROM runs WHERE run_id = ?", [run_id]).fetchall()
            run = found[0] if found else None
            if run is None:
                raise WarehouseError(f"run {run_id} is not in {warehouse}")
            if run[0] == "speculative":
                raise WarehouseError(
                    f"run {run_id} is speculative (System 2 verifies drafts, it is never asked per token); "
                    "train on an oracle, contrastive or proxy run with --router always"
                )
            table = con.sql(
                f"SELECT {', '.join(COLUMNS)} FROM token_events WHERE run_id = ? ORDER BY sample_id, step",
                params=[run_id],
            ).to_arrow_table()
    except WarehouseLocked as exc:
        raise WarehouseError(f"{exc}; try again when the collector has finished ingesting") from exc
    if table is None or table.num_rows == 0:
        raise WarehouseError(f"run {run_id} has no token events yet")
    return {name: table.column(name).to_numpy() for name in COLUMNS}


def _validation_auroc(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], samples: npt.NDArray[Any]
) -> float | None:
    """AUROC on every fifth sample, with the classifier fitted on the others (None when too few)."""
    from sklearn.metrics import roc_auc_score

    held = samples % 5 == 4
    if held.all() or not held.any() or len(set(y[held].tolist())) < 2 or len(set(y[~held].tolist())) < 2:
        return None
    model = fit_router(x[~held], y[~held])
    return float(roc_auc_score(y[held], model.predict_logit(x[held])))


def train(warehouse: Path, run_id: int, out: Path, threshold: float = 0.5) -> TrainReport:
    """Fit on every event of the run (label: System 2's token differs from System 1's) and save."""
    events = read_events(warehouse, run_id)
    x = features_from_events(events)
    y = events["s2_token_id"] != events["s1_token_id"]
    auroc = _validation_auroc(x, y, events["sample_id"])
    info = {"run_id": run_id, "events": len(y), "mismatch_rate": float(y.mean()), "validation_auroc": auroc}
    model = fit_router(x, y, info)
    model = LearnedModel(model.coef, model.intercept, threshold, model.features, model.info)
    model.save(out)
    consult = float((model.predict_logit(x) > np.log(threshold / (1 - threshold))).mean())
    return TrainReport(run_id, len(y), float(y.mean()), auroc, consult)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = command_parser(
        "python -m collector.router",
        "Learned routers: predict from System 1's figures where System 2 would disagree.",
        EXAMPLES,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit a router on a finished run's events (an `always` run is best)")
    t.add_argument("--run", type=int, required=True, help="run id in the warehouse")
    t.add_argument("--out", required=True, help="where to write the model (JSON)")
    add_warehouse_argument(t)
    t.add_argument("--threshold", type=float, default=0.5, help="consult when P(mismatch) > this")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not 0.0 < args.threshold < 1.0:
        print("error: --threshold is a probability in (0, 1)", file=sys.stderr)
        return 2
    try:
        report = train(resolve_warehouse(args.warehouse), args.run, Path(args.out), args.threshold)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    auroc = "n/a" if report.validation_auroc is None else f"{report.validation_auroc:.3f}"
    print(
        f"trained on run {report.run_id}: {report.events} events, mismatch rate {report.mismatch_rate:.3f}, "
        f"held-out AUROC {auroc}, consult rate at threshold {args.threshold}: {report.consult_rate:.3f}; "
        f"saved {args.out}"
    )
    return 0
