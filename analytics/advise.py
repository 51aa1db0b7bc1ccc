"""The speculative advisor: which draft model, K and stop rule, predicted from oracle traces, then proved.

Under greedy decoding one oracle run replays any speculative setting exactly (`replay_cycles`); the costs
the collector measured at the start of that run turn the replayed cycles into a time:

    predicted time = Σ_samples [prefill + Σ_cycles cycle(d)]        (cycle(d): a real cycle drafting d)
    predicted speed-up = (tokens / predicted time) / (the LLM's own greedy generate tokens/s)

cycle(d) is timed on whole decodes of a prompt, each beside the LLM's generate of the same prompt (a stop
rule's cycles with the rule's checks: `stop_cycle`). `--verify` measures the same ratio on a real run: its
decode time (prefill, cycles, host checks) against the LLM's own generate on the same batches, each timed
right after the batch's decode (`baseline` in run_costs): same prompts, batch size 1, prefill in both.

Both costs are timed at batch 1 on the run's device, so this advice is for batch-1 latency; the pair's
costs at larger batch sizes give the best K per batch size (`analytics.batch_advice`). Under sampling
the per-token acceptance probability α = Σ_v min(p_s(v), p_l(v)) gives the expected tokens per cycle
(1 − α^(K+1)) / (1 − α) (Leviathan et al., 2023).

    python -m analytics.advise [--warehouse W] [--method oracle] [--json] [--verify]
    python -m analytics.advise --emit vllm --out s.json  # vllm serve --speculative-config "$(cat s.json)"
    python -m analytics.advise --emit hf --llm zoo:zoo-l --dataset builtin:arith   # generate kwargs (JSON)
    python -m analytics.advise --emit llama.cpp                # llama-server flags
    python -m analytics.advise --against 1   # an import (python -m warehouse import) beside the replay
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analytics.costs import RunCosts, acceptance, cycles_seconds, paired_throughputs, run_costs
from analytics.frames import Col, FrameSchema
from analytics.source import (
    AnalyticsError,
    Source,
    connect,
    query,
    require_experiment,
    runs_where,
    scoped,
    table_columns,
)
from analytics.speculative import OracleTrace, oracle_trace, replay_cycles
from warehouse import vocabulary
from warehouse.errors import UserError
from warehouse.settings import add_warehouse_argument, positive_int

K_GRID = vocabulary.ADVISE_K  # the draft lengths the collector's calibration times (no extrapolation)
THRESHOLDS = {"max_prob": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "entropy": (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)}
# The pair and the oracle run an advice row is about.
PAIR = FrameSchema.of(
    **dict.fromkeys(("llm", "dataset", "slm"), Col(str)), oracle_run_id=Col(int, "the replayed oracle run")
)
# A candidate setting (greedy, batch 1) and its prediction: the rows of `Advice.candidates` (with `rank`).
ADVICE = PAIR.plus(
    FrameSchema.of(
        draft_k=Col(int),
        draft_stop=Col(str, "the confidence stop rule, null: draft all K", nullable=True),
        draft_threshold=Col(float),
        cycles=Col(int),
        tokens=Col(int),
        acceptance=Col(float, "per-token acceptance of the replayed cycles"),
        tokens_per_cycle=Col(float),
        predicted_tokens_per_s=Col(float),
        baseline_tokens_per_s=Col(float, "the LLM's own greedy generate"),
        predicted_speedup=Col(float),
    )
)
# The best setting beside its runner-up (`best_with_runner_up`): another draft model's best where there is
# one.
RUNNER_UP_OF = ("slm", "draft_k", "draft_stop", "draft_threshold", "predicted_speedup")
BEST = ADVICE.plus(
    FrameSchema(
        tuple((f"runner_up_{name}", replace(c, nullable=True)) for name, c in ADVICE if name in RUNNER_UP_OF)
    )
)
# The best K per pair under speculative sampling: the rows of `Advice.sampling`.
SAMPLING = PAIR.plus(
    FrameSchema.of(
        alpha=Col(float, "Σ_v min(p_s(v), p_l(v)): the per-token acceptance probability"),
        draft_k=Col(int),
        tokens_per_cycle=Col(float, "(1 − α^(K+1)) / (1 − α)"),
        predicted_speedup=Col(float),
    )
)
ADVICE_SCHEMA = ADVICE.polars()
SAMPLING_SCHEMA = SAMPLING.polars()


@dataclass(frozen=True)
class Prediction:
    """One setting replayed on one oracle run, and its predicted speed."""

    draft_k: int
    draft_stop: str | None
    draft_threshold: float | None
    cycles: int
    tokens: int
    acceptance: float  # accepted drafts / verified positions (a rejection ends a cycle)
    tokens_per_cycle: float
    predicted_tokens_per_s: float
    baseline_tokens_per_s: float
    predicted_speedup: float


def predict(
    trace: OracleTrace, costs: RunCosts, k: int, stop: str | None = None, threshold: float | None = None
) -> Prediction:
    """Replay one setting and turn its cycles into a predicted time with the run's own costs."""
    cycles = replay_cycles(trace, k, stop, threshold)
    drafted = cycles["drafted"].to_numpy().astype(np.int64)
    accepted = cycles["accepted"].to_numpy().astype(np.int64)
    seconds = cycles_seconds(drafted, k, stop, costs, len(trace.n_tokens))
    tokens = int(trace.n_tokens.sum())
    tps = costs.rows * tokens / seconds if seconds > 0 else float("nan")
    return Prediction(
        k, stop, threshold, len(cycles), tokens, acceptance(drafted, accepted),
        tokens / max(len(cycles), 1), tps, costs.baseline_tokens_per_s, tps / costs.baseline_tokens_per_s,
    )  # fmt: skip


def settings_grid() -> list[tuple[int, str | None, float | None]]:
    """K = 1…8 with no stop rule and with each stop rule over its threshold grid."""
    grid: list[tuple[int, str | None, float | None]] = [(k, None, None) for k in K_GRID]
    for stop, taus in THRESHOLDS.items():
        grid += [(k, stop, tau) for k in K_GRID if k > 1 for tau in taus]
    return grid


def oracle_runs(source: Source, method: str = "oracle", experiment: str | None = None) -> pl.DataFrame:
    """Complete greedy oracle runs (router always) of one experiment (default: the most recent) that
    recorded costs: the advisor's inputs."""
    if method != "oracle":
        raise AnalyticsError(
            f"--method {method}: the advisor replays greedy oracle runs only (--method oracle)"
        )
    with connect(source) as con:
        if not table_columns(con, "run_costs"):
            return pl.DataFrame(
                schema={"run_id": pl.Int64, "llm": pl.Utf8, "slm": pl.Utf8, "dataset": pl.Utf8}
            )
        paper = {"method": "oracle", "router": "always", "temperature": 0.0, "status": "complete"}
        where, params = runs_where(scoped(paper, experiment))
        return query(
            con,
            f"""SELECT r.run_id, r.llm, r.slm, r.dataset FROM runs r {where}
                 AND EXISTS (SELECT 1 FROM run_costs c
                             WHERE c.run_id = r.run_id AND c.kind = 'cycle' AND c.batch_size = 1)
               ORDER BY r.llm, r.dataset, r.slm, r.run_id""",
            params,
        )


@dataclass(frozen=True)
class Advice:
    """Every replayed setting ranked, the best per LLM and dataset with its runner-up, and sampling."""

    candidates: pl.DataFrame  # ADVICE_SCHEMA plus `rank` within (llm, dataset)
    best: pl.DataFrame  # rank 1 per (llm, dataset), with runner_up_* columns
    sampling: pl.DataFrame  # SAMPLING_SCHEMA: best K per pair under speculative sampling


def _sampling_row(trace: OracleTrace, costs: RunCosts) -> dict[str, Any] | None:
    if trace.accept_prob is None or len(trace.accept_prob) == 0:
        return None
    alpha = float(np.clip(trace.accept_prob.mean(), 0.0, 1.0 - 1e-9))
    best: dict[str, Any] | None = None
    for k in K_GRID:
        per_cycle = (1 - alpha ** (k + 1)) / (1 - alpha)
        speedup = per_cycle / costs.cycle(k) / costs.baseline_tokens_per_s
        if best is None or speedup > best["predicted_speedup"]:
            best = {"alpha": alpha, "draft_k": k, "tokens_per_cycle": per_cycle, "predicted_speedup": speedup}
    return best


def advise(source: Source, method: str = "oracle", experiment: str | None = None) -> Advice:
    """Replay every setting of `settings_grid` on every oracle run with costs of one experiment (default:
    the most recent), and rank them."""
    rows, sampling = [], []
    with connect(source) as con:
        for run_id, llm, slm, dataset in oracle_runs(con, method, experiment).iter_rows():
            costs = run_costs(con, run_id)
            if costs is None:
                continue
            trace = oracle_trace(con, run_id)
            key = {"llm": llm, "dataset": dataset, "slm": slm, "oracle_run_id": run_id}
            rows += [{**key, **asdict(predict(trace, costs, *s))} for s in settings_grid()]
            sample = _sampling_row(trace, costs)
            if sample is not None:
                sampling.append({**key, **sample})
    candidates = pl.DataFrame(rows, schema=ADVICE_SCHEMA) if rows else pl.DataFrame(schema=ADVICE_SCHEMA)
    candidates = candidates.sort(["llm", "dataset", "predicted_speedup"], descending=[False, False, True])
    candidates = candidates.with_columns(
        pl.col("predicted_speedup").rank("ordinal", descending=True).over("llm", "dataset").alias("rank")
    )
    return Advice(candidates, best_with_runner_up(candidates), pl.DataFrame(sampling, schema=SAMPLING_SCHEMA))


def best_with_runner_up(candidates: pl.DataFrame) -> pl.DataFrame:
    """Rank 1 per (llm, dataset) beside its runner-up: the best setting of another draft model where there
    is one, else the second-best setting of the same draft model."""
    best = candidates.filter(pl.col("rank") == 1)
    cols = RUNNER_UP_OF
    runner = (
        candidates.filter(pl.col("rank") > 1)
        .join(best.select("llm", "dataset", pl.col("slm").alias("best_slm")), on=["llm", "dataset"])
        .sort(["llm", "dataset", pl.col("slm") == pl.col("best_slm"), "rank"])
        .group_by(["llm", "dataset"], maintain_order=True)
        .first()
        .select("llm", "dataset", *[pl.col(c).alias(f"runner_up_{c}") for c in cols])
    )
    return best.join(runner, on=["llm", "dataset"], how="left")


# --verify: run the collector with the oracle run's settings and the advised ones (a separate process:
# analytics never imports the collector; `--like` copies every recorded setting, so none is named here) and
# compare what it measures with the prediction.


@dataclass(frozen=True)
class Verification:
    """The advised setting's prediction beside a real run of it."""

    llm: str
    slm: str
    dataset: str
    oracle_run_id: int
    run_id: int
    draft_k: int
    draft_stop: str | None
    draft_threshold: float | None
    predicted_acceptance: float
    measured_acceptance: float
    predicted_cycles: int
    measured_cycles: int
    predicted_speedup: float
    measured_speedup: float
    measured_tokens_per_s: float
    baseline_tokens_per_s: float

    @property
    def speedup_error(self) -> float:
        """(predicted − measured) / measured."""
        return (self.predicted_speedup - self.measured_speedup) / self.measured_speedup


def collector_command(warehouse: Path, row: dict[str, Any], threads: int) -> list[str]:
    """`python -m collector.run --like ORACLE ...`: the oracle run's own settings (prompts, decoding, chat
    template, ...) with the advised speculative ones, at batch 1."""
    cmd = [sys.executable, "-m", "collector.run", "--like", str(row["oracle_run_id"]), "--method",
           "speculative", "--draft-k", str(row["draft_k"]), "--batch-size", "1",
           "--warehouse", str(warehouse), "--threads", str(threads), "--quiet"]  # fmt: skip
    if row["draft_stop"] is not None:
        cmd += ["--draft-stop", row["draft_stop"], "--draft-threshold", repr(row["draft_threshold"])]
    return cmd


def measured(source: Source, run_id: int) -> tuple[float, int, float, float]:
    """(acceptance, cycles, decode tokens/s, baseline tokens/s) of a speculative run; the measured speed-up
    is their ratio (`analytics.costs.paired_throughputs`)."""
    with connect(source) as con:
        c = query(con, "SELECT drafted, accepted FROM spec_cycles WHERE run_id = ?", [run_id])
        paired = paired_throughputs(con, [run_id]).get(run_id)
    if paired is None:
        raise AnalyticsError(
            f"run {run_id} recorded no decode time or no paired baseline (a run from before the baseline "
            "was recorded, or calibration off); collect it again with calibration on"
        )
    drafted, accepted = c["drafted"].to_numpy(), c["accepted"].to_numpy()
    return acceptance(drafted, accepted), c.height, paired[0], paired[1]


def verify(warehouse: Path, best: pl.DataFrame, threads: int = 1) -> list[Verification]:
    """Run each advised setting for real (batch 1) and measure it beside its prediction."""
    out = []
    for row in best.iter_rows(named=True):
        with connect(warehouse) as con:
            before = int(query(con, "SELECT coalesce(max(run_id), 0) FROM runs")[0, 0])
        done = subprocess.run(collector_command(warehouse, row, threads), capture_output=True, text=True)
        if done.returncode != 0:
            raise AnalyticsError(
                f"the verification run failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
        with connect(warehouse) as con:
            new = query(
                con, "SELECT max(run_id) FROM runs WHERE run_id > ? AND method = 'speculative'", [before]
            )
        run_id = int(new[0, 0])
        acceptance, cycles, tps, baseline = measured(warehouse, run_id)
        out.append(
            Verification(
                row["llm"],
                row["slm"],
                row["dataset"],
                row["oracle_run_id"],
                run_id,
                row["draft_k"],
                row["draft_stop"],
                row["draft_threshold"],
                row["acceptance"],
                acceptance,
                row["cycles"],
                cycles,
                row["predicted_speedup"],
                tps / baseline,
                tps,
                baseline,
            )  # fmt: skip
        )
    return out


def _fmt_setting(k: int, stop: str | None, tau: float | None) -> str:
    return f"K={k}" + (f", {vocabulary.THRESHOLD_RULES[stop].describe(f'{tau:g}')} stops" if stop else "")


def print_advice(advice: Advice, checks: Sequence[Verification] = ()) -> None:
    """The ranking, the sampling section and any verification, as text."""
    print("Best draft model per LLM (greedy, batch 1; predicted from oracle traces and the recorded costs)\n")
    print("| LLM | dataset | draft model | setting | acceptance | tokens/cycle | speed-up | runner-up |")
    print("|---|---|---|---|---:|---:|---:|---|")
    for r in advice.best.iter_rows(named=True):
        runner = "—"
        if r.get("runner_up_slm") is not None:
            setting = _fmt_setting(
                r["runner_up_draft_k"], r["runner_up_draft_stop"], r["runner_up_draft_threshold"]
            )
            runner = f"{r['runner_up_slm']} {setting}: {r['runner_up_predicted_speedup']:.2f}×"
        setting = _fmt_setting(r["draft_k"], r["draft_stop"], r["draft_threshold"])
        print(
            f"| {r['llm']} | {r['dataset']} | {r['slm']} | {setting} | {r['acceptance']:.3f} "
            f"| {r['tokens_per_cycle']:.2f} | {r['predicted_speedup']:.2f}× | {runner} |"
        )
    if advice.sampling.height:
        print("\nSpeculative sampling (α = mean Σ_v min(p_s, p_l) over the oracle trace, temperature 1)\n")
        print("| LLM | dataset | draft model | α | best K | tokens/cycle | speed-up |")
        print("|---|---|---|---:|---:|---:|---:|")
        for r in advice.sampling.iter_rows(named=True):
            print(
                f"| {r['llm']} | {r['dataset']} | {r['slm']} | {r['alpha']:.3f} | {r['draft_k']} "
                f"| {r['tokens_per_cycle']:.2f} | {r['predicted_speedup']:.2f}× |"
            )
    if checks:
        print("\nVerification: the advised setting run for real (batch 1)\n")
        print("| LLM | dataset | draft model | setting | run | acceptance pred / meas | cycles pred / meas "
              "| speed-up pred / meas | error |")  # fmt: skip
        print("|---|---|---|---|---:|---:|---:|---:|---:|")
        for v in checks:
            setting = _fmt_setting(v.draft_k, v.draft_stop, v.draft_threshold)
            print(
                f"| {v.llm} | {v.dataset} | {v.slm} | {setting} | {v.run_id} "
                f"| {v.predicted_acceptance:.4f} / {v.measured_acceptance:.4f} "
                f"| {v.predicted_cycles} / {v.measured_cycles} "
                f"| {v.predicted_speedup:.2f} / {v.measured_speedup:.2f} | {v.speedup_error:+.0%} |"
            )


def emit_settings(
    warehouse: Path, best: pl.DataFrame, engine: str, llm: str | None, dataset: str | None, out: Path | None
) -> int:
    """--emit: the engine's settings for the advised pair to `out` (or stdout), the prediction on stderr."""
    from analytics.emit import describe, emit, pick_pair, settings_file_text

    row = pick_pair(best, llm, dataset)
    settings = emit(warehouse, engine, row["oracle_run_id"], row["llm"], row["slm"], row["dataset"])
    text = settings_file_text(settings)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
    print(describe(settings), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m analytics.advise`."""
    from warehouse.settings import resolve_warehouse

    p = argparse.ArgumentParser(prog="python -m analytics.advise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_warehouse_argument(p)
    p.add_argument(
        "--method", default="oracle", help="runs to replay (only greedy oracle runs replay exactly)"
    )
    p.add_argument("--json", action="store_true", help="print the advice as JSON")
    p.add_argument(
        "--verify", action="store_true", help="run each advised setting and print measured beside it"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads of the verification runs")
    p.add_argument("--emit", choices=("vllm", "hf", "llama.cpp"), help="write the settings an engine takes")
    p.add_argument("--llm", help="with --emit: the LLM to emit for (when the warehouse advises several)")
    p.add_argument("--dataset", help="with --emit: the dataset to emit for")
    p.add_argument("--out", type=Path, help="with --emit: write the settings to this file (default stdout)")
    p.add_argument(
        "--against", type=int, metavar="IMPORT", help="set an import's served acceptance beside the replay"
    )
    p.add_argument(
        "--experiment", help="the experiment whose oracle runs to replay (default: the most recent)"
    )
    args = p.parse_args(argv)
    warehouse = resolve_warehouse(args.warehouse)
    try:
        if args.against is not None:
            from analytics.served import against, print_against

            print_against(against(warehouse, args.against), args.against)
            return 0
        require_experiment(warehouse, args.experiment)
        advice = advise(warehouse, args.method, args.experiment)
        if advice.best.height == 0:
            raise AnalyticsError(
                "no greedy oracle run with recorded costs in this warehouse; collect one with "
                "python -m collector.run --llm L --slm S --dataset D --method oracle"
            )
        if args.emit:
            return emit_settings(warehouse, advice.best, args.emit, args.llm, args.dataset, args.out)
        checks = verify(warehouse, advice.best, args.threads) if args.verify else []
        from analytics.batch_advice import advise_by_batch_size, best_by_batch_size, cost_coverage

        by_batch = best_by_batch_size(advise_by_batch_size(warehouse, args.method))
        coverage = cost_coverage(warehouse, args.experiment)
    except (UserError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload = {"best": advice.best.to_dicts(), "sampling": advice.sampling.to_dicts(),
                   "verify": [{**asdict(v), "speedup_error": v.speedup_error} for v in checks],
                   "by_batch_size": by_batch.to_dicts(), "cost_coverage": coverage.to_dicts()}  # fmt: skip
        print(json.dumps(payload, indent=1))
    else:
        from analytics.batch_advice import print_batch_advice

        print_advice(advice, checks)
        print_batch_advice(by_batch, coverage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
