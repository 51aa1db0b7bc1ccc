"""The advisor per batch size: the best draft model and K at each batch size the pair's costs were timed at.

The collector times a pair's costs once per (pair, device, dtype, batch size), at batch 1 and at the batch
size of each run that takes a calibration, where memory allows (`run_costs` rows with that `batch_size`);
at any other batch size there are no costs and no prediction (`cost_coverage` says which). At batch 1 the
prediction is the advisor's own (`analytics.advise.predict`: prefill and whole-decode cycle costs). At a
batch size b > 1 it is the steady-state throughput of a batch that stays full (continuous batching, as
serving engines run it):

    predicted tokens/s = b · tokens / Σ_cycles cycle_b(K)      (cycle_b: one draft/verify cycle of b rows)
    baseline tokens/s  = the LLM's generate at batch b, every row decoding (`llm_generate` at b)

with the cycles replayed from the oracle trace (exact under greedy decoding). Stop rules are left out above
batch 1: a batch drafts until its last row stops, which a per-row replay does not see.
"""

from __future__ import annotations

from dataclasses import asdict

import polars as pl

from analytics.advise import K_GRID, RunCosts, oracle_runs, predict, run_costs
from analytics.source import Source, connect, query, runs_where, scoped
from analytics.speculative import oracle_trace

BATCH_SCHEMA = {
    "llm": pl.Utf8,
    "dataset": pl.Utf8,
    "slm": pl.Utf8,
    "oracle_run_id": pl.Int64,
    "batch_size": pl.Int64,
    "draft_k": pl.Int64,
    "acceptance": pl.Float64,
    "tokens_per_cycle": pl.Float64,
    "predicted_tokens_per_s": pl.Float64,
    "baseline_tokens_per_s": pl.Float64,
    "predicted_speedup": pl.Float64,
}


def costs_by_batch_size(source: Source, run_id: int) -> dict[int, RunCosts]:
    """The run's costs at each batch size it recorded cycles and the LLM's generate at."""
    with connect(source) as con:
        rows = query(
            con,
            """SELECT kind, tokens, batch_size, seconds FROM run_costs
               WHERE run_id = ? AND batch_size > 1 AND kind IN ('cycle', 'llm_generate')""",
            [run_id],
        )
        out = {1: c} if (c := run_costs(con, run_id)) is not None else {}
    for (batch,), part in rows.partition_by("batch_size", as_dict=True, maintain_order=True).items():
        cycles = {
            int(n): float(s)
            for k, n, s in part.select("kind", "tokens", "seconds").iter_rows()
            if k == "cycle"
        }
        gen = part.filter(pl.col("kind") == "llm_generate")
        if cycles and gen.height and gen["seconds"][0] > 0:
            tps = float(gen["tokens"][0]) / float(gen["seconds"][0])
            out[int(batch)] = RunCosts(cycles, 0.0, tps, rows=int(batch))  # type: ignore[arg-type]
    return dict(sorted(out.items()))


def advise_by_batch_size(source: Source, method: str = "oracle") -> pl.DataFrame:
    """Every K of the grid replayed on every oracle run with costs, at each batch size it has costs for;
    ranked within (llm, dataset, batch_size): `rank` 1 is the best draft model and K there."""
    rows = []
    with connect(source) as con:
        for run_id, llm, slm, dataset in oracle_runs(con, method).iter_rows():
            by_batch = costs_by_batch_size(con, run_id)
            if not by_batch:
                continue
            trace = oracle_trace(con, run_id)
            key = {"llm": llm, "dataset": dataset, "slm": slm, "oracle_run_id": run_id}
            for batch, costs in by_batch.items():
                for k in K_GRID:
                    p = asdict(predict(trace, costs, k))
                    rows.append({**key, "batch_size": batch, **{c: p[c] for c in BATCH_SCHEMA if c in p}})
    frame = pl.DataFrame(rows, schema=BATCH_SCHEMA) if rows else pl.DataFrame(schema=BATCH_SCHEMA)
    keys = ["llm", "dataset", "batch_size"]
    frame = frame.sort([*keys, "predicted_speedup"], descending=[False, False, False, True])
    return frame.with_columns(
        pl.col("predicted_speedup").rank("ordinal", descending=True).over(keys).alias("rank")
    )


def best_by_batch_size(candidates: pl.DataFrame) -> pl.DataFrame:
    """Rank 1 of `advise_by_batch_size` per (llm, dataset, batch_size)."""
    return candidates.filter(pl.col("rank") == 1).drop("rank")


def cost_coverage(source: Source, experiment: str | None = None) -> pl.DataFrame:
    """Per pair (llm, slm) of the experiment: the batch sizes its costs were timed at (`timed`, where the
    advisor predicts), those its runs decoded at (`ran`), and those it ran at with no costs (`untimed`)."""
    where, params = runs_where(scoped({}, experiment))
    frame = query(
        source,
        f"""SELECT r.llm, r.slm,
                   list_sort(list_distinct(coalesce(list(c.batch_size) FILTER (WHERE c.kind = 'cycle'), [])))
                     AS timed,
                   list_sort(list_distinct(coalesce(list(c.batch_size) FILTER (WHERE c.kind = 'decode'), [])))
                     AS ran
            FROM runs r JOIN run_costs c ON c.run_id = r.run_id {where}
            GROUP BY r.llm, r.slm ORDER BY r.llm, r.slm""",
        params,
    )
    return frame.with_columns(pl.col("ran").list.set_difference("timed").list.sort().alias("untimed"))


def coverage_lines(coverage: pl.DataFrame) -> list[str]:
    """One line per pair: the batch sizes with measured costs, and those its runs used without any."""
    lines = []
    for r in coverage.iter_rows(named=True):
        timed, gap = (", ".join(map(str, r[c])) for c in ("timed", "untimed"))
        said = f"costs timed at batch {timed}" if timed else "no costs timed"
        lines.append(
            f"- {r['llm']} + {r['slm']}: {said}"
            + (f"; none at batch {gap}, where its runs recorded no calibration" if gap else "")
        )
    return lines


COVERAGE_NOTE = (
    "Batch sizes with measured costs (predictions only there; a run at batch size B with calibration on "
    "times its pair's costs at B)"
)


def print_batch_advice(best: pl.DataFrame, coverage: pl.DataFrame | None = None) -> None:
    """The best draft model and K per batch size, as a Markdown table; then which batch sizes have costs."""
    if best.height:
        _print_table(best)
    if coverage is not None and coverage.height:
        print(f"\n{COVERAGE_NOTE}:\n", *coverage_lines(coverage), sep="\n")


def _print_table(best: pl.DataFrame) -> None:
    print("\nBest K per batch size (greedy; a full batch, from the pair's costs timed at each batch size)\n")
    print(
        "| LLM | dataset | batch | draft model | K | tokens/cycle | tokens/s | generate tokens/s | speed-up |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in best.iter_rows(named=True):
        print(
            f"| {r['llm']} | {r['dataset']} | {r['batch_size']} | {r['slm']} | {r['draft_k']} "
            f"| {r['tokens_per_cycle']:.2f} | {r['predicted_tokens_per_s']:.0f} "
            f"| {r['baseline_tokens_per_s']:.0f} | {r['predicted_speedup']:.2f}× |"
        )
