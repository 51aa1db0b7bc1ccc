"""Write a synthetic warehouse of ~100M token events over a few hundred runs, generated inside DuckDB.

    python bench/gen_synthetic.py --out /tmp/fsgen_synth.duckdb            # 100M events, 400 runs
    python bench/gen_synthetic.py --out /tmp/small.duckdb --events 2000000

The schema comes from the real migrations; rows come from `range()` and `hash()` inside DuckDB (no event
rows are built in Python), so the file is the same on every run. The data follow the paper's findings so
the analytics have something to find: CoF follows γ·R^(−α) + β per method, mismatches concentrate where
System 1's entropy is high and in the first 10% of each generation. `spec_cycles` is filled when the
schema has it (speculative migration); `token_events.draft_index` / `accepted` are left NULL. The summary
tables are built from the events by SQL at the end (what ingest writes shard by shard).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import duckdb

from warehouse.migrate import upgrade  # the project is installed (pip install -e .): no path changes
from warehouse.summaries import rebuild

REPO = Path(__file__).resolve().parent.parent

# Pythia-like sizes (parameters)
MODELS = {
    "p-14m": 14_000_000,
    "p-31m": 31_000_000,
    "p-70m": 70_000_000,
    "p-160m": 160_000_000,
    "p-410m": 410_000_000,
    "p-1b": 1_000_000_000,
    "p-1.4b": 1_400_000_000,
    "p-2.8b": 2_800_000_000,
    "p-6.9b": 6_900_000_000,
    "p-12b": 12_000_000_000,
}
# method -> (γ, α, β): the law the synthetic CoF follows (oracle rises with R and saturates, as in the paper)
LAWS = {
    "oracle": (-0.12, 0.35, 0.20),
    "speculative": (-0.12, 0.35, 0.20),
    "contrastive": (0.10, 0.30, 0.05),
    "proxy": (-0.05, 0.50, 0.12),
}
DATASETS = {"gsm8k": 1.0, "mmlu": 0.8}
SAMPLES_PER_RUN = 1000
DRAFT_K = 5


def run_plan(n_runs: int) -> list[dict[str, object]]:
    """Run rows: every pair × method × dataset with router `always`, then routed and `never` runs."""
    names = sorted(MODELS, key=MODELS.__getitem__)
    pairs = [(llm, slm) for slm, llm in itertools.combinations(names, 2)]
    plan = []
    for (llm, slm), method, dataset in itertools.product(pairs, LAWS, DATASETS):
        gamma, alpha, beta = LAWS[method]
        cof = (gamma * (MODELS[llm] / MODELS[slm]) ** -alpha + beta) * DATASETS[dataset]
        plan.append(
            {"llm": llm, "slm": slm, "method": method, "router": "always", "dataset": dataset, "cof": cof}
        )
    for slm, dataset in itertools.product(names[:-1], DATASETS):
        plan.append(
            {
                "llm": names[-1],
                "slm": slm,
                "method": "oracle",
                "router": "never",
                "dataset": dataset,
                "cof": 0.0,
            }
        )
    extra = itertools.cycle(itertools.product(pairs, DATASETS))
    while len(plan) < n_runs:
        (llm, slm), dataset = next(extra)
        gamma, alpha, beta = LAWS["oracle"]
        cof = (gamma * (MODELS[llm] / MODELS[slm]) ** -alpha + beta) * DATASETS[dataset]
        plan.append(
            {"llm": llm, "slm": slm, "method": "oracle", "router": "max_prob", "dataset": dataset, "cof": cof}
        )
    return plan[:n_runs]


def insert_metadata(con: duckdb.DuckDBPyConnection, plan: list[dict[str, object]]) -> None:
    """Models and runs (a few hundred rows: plain parameterised inserts)."""
    for name, params in MODELS.items():
        con.execute(
            "INSERT INTO models (name, path, params, architecture, created_at) "
            "VALUES (?, ?, ?, 'gpt_neox', now())",
            [name, f"synthetic/{name}", params],
        )
    con.execute("CREATE TEMP TABLE plan (run_id BIGINT, cof DOUBLE, router VARCHAR, method VARCHAR)")
    for i, run in enumerate(plan):
        spec = run["method"] == "speculative"
        settings = {"synthetic": True, **({"draft_k": DRAFT_K} if spec else {})}
        row = con.execute(
            "INSERT INTO runs (run_key, created_at, finished_at, llm, slm, method, router, threshold, "
            "dataset, status, n_samples, seed, temperature, top_p, device, dtype, settings, wall_s, "
            "tokens_per_s) "
            "VALUES (?, now(), now(), ?, ?, ?, ?, ?, ?, 'complete', ?, 0, 0, 1, 'cpu', 'float32', ?, ?, ?) "
            "RETURNING run_id",
            [
                f"synthetic-{i:04d}",
                run["llm"],
                run["slm"],
                run["method"],
                run["router"],
                0.5 if run["router"] == "max_prob" else None,
                run["dataset"],
                SAMPLES_PER_RUN,
                json.dumps(settings),
                100.0,
                4000.0 if spec else 2500.0,
            ],
        ).fetchall()
        con.execute(
            "INSERT INTO plan VALUES (?, ?, ?, ?)", [row[0][0], run["cof"], run["router"], run["method"]]
        )


def uniform(k: int, key: str = "t.key") -> str:
    """A deterministic uniform in (0, 1) per token and stream k (DuckDB's multi-argument hash is too weak)."""
    return f"((hash({key} * 8 + {k}) >> 11) + 0.5) * pow(2, -53)"


def token_key(run: str, sample: str, step: str) -> str:
    """A unique BIGINT per (run, sample, step): samples < 1,000 and steps < 1,000 per run."""
    return f"(CAST({run} AS BIGINT) * 1000000 + {sample} * 1000 + {step})"


# Per-sample lengths come in pairs 250 ± d, so each run holds exactly 250 × SAMPLES_PER_RUN tokens.
SAMPLES_SQL = """
    SELECT p.run_id, p.cof, p.router, x.sample_id,
           CAST(250 + CASE WHEN x.sample_id % 2 = 0 THEN 1 ELSE -1 END
                     * CAST(hash(p.run_id * 1000 + x.sample_id // 2) % 200 AS INTEGER) AS INTEGER) AS n_tokens
    FROM plan p, range(?) x(sample_id) WHERE p.run_id BETWEEN ? AND ?
"""

EVENTS_SQL = f"""
    INSERT INTO token_events BY NAME
    WITH s AS ({SAMPLES_SQL}),
    k AS (
        SELECT s.run_id, s.sample_id, CAST(t.step AS INTEGER) AS step, s.router, s.cof,
               CAST(t.step AS DOUBLE) / s.n_tokens AS rel_pos,
               {token_key("s.run_id", "s.sample_id", "t.step")} AS key
        FROM s, range(s.n_tokens) t(step)
    ),
    t AS (
        SELECT t.*, -ln({uniform(1)}) AS ent, {uniform(2)} AS u2, {uniform(3)} AS u3, {uniform(4)} AS u4,
               {uniform(5)} AS u5, CAST(hash(t.key * 8 + 6) % 50000 AS INTEGER) AS s1
        FROM k t
    ),
    d AS (
        SELECT *, exp(-0.6 * ent) * (0.9 + 0.1 * u2) AS p1,
               u4 < least(1.0, cof * ent * CASE WHEN rel_pos < 0.1 THEN 2.5 ELSE 5.0 / 6 END) AS disagree
        FROM t
    ),
    e AS (
        SELECT *, CASE router WHEN 'always' THEN true WHEN 'never' THEN false ELSE p1 < 0.5 END AS consulted
        FROM d
    )
    SELECT run_id, sample_id, step, rel_pos,
           CASE WHEN consulted AND disagree THEN s1 + 1 ELSE s1 END AS token_id,
           s1 AS s1_token_id, p1 AS s1_prob, ent AS s1_entropy, p1 * u3 AS s1_margin,
           CASE WHEN disagree THEN s1 + 1 ELSE s1 END AS s2_token_id,
           CASE WHEN disagree THEN s1 + 1 ELSE s1 END AS llm_token_id,
           0.5 + 0.5 * u5 AS llm_prob, -ln(u5) AS llm_entropy,
           CASE WHEN disagree THEN 0.1 * u5 ELSE 0.5 + 0.5 * u5 END AS llm_prob_s1_token,
           consulted, consulted AND disagree AS mismatch
    FROM e
"""


def insert_events(con: duckdb.DuckDBPyConnection, first: int, last: int) -> None:
    """Token events and samples of runs first..last, in run order (as shards would arrive)."""
    con.execute(EVENTS_SQL, [SAMPLES_PER_RUN, first, last])
    con.execute(
        f"""INSERT INTO samples
            SELECT s.run_id, s.sample_id, 'item-' || s.sample_id, 'prompt', 'output', s.n_tokens, 64, 'eos',
                   'ref', (hash(s.run_id * 1000 + s.sample_id) % 1000) < 300 + 500 * (1 - s.cof)
            FROM ({SAMPLES_SQL}) s""",
        [SAMPLES_PER_RUN, first, last],
    )


def insert_cycles(con: duckdb.DuckDBPyConnection) -> bool:
    """Draft/verify rounds for speculative runs, when the schema has `spec_cycles`."""
    has = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'spec_cycles'"
    ).fetchall()
    if not has[0][0]:
        return False
    con.execute(
        f"""INSERT INTO spec_cycles (run_id, sample_id, cycle, drafted, accepted)
            SELECT s.run_id, s.sample_id, CAST(c.i AS INTEGER), {DRAFT_K},
                   CAST(least({DRAFT_K}, floor(ln({uniform(7, token_key("s.run_id", "s.sample_id", "c.i"))})
                                          / ln(1 - least(0.95, p.cof * 2)))) AS INTEGER)
            FROM samples s JOIN plan p ON p.run_id = s.run_id AND p.method = 'speculative',
                 range(s.n_tokens // 3) c(i)"""
    )
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/fsgen_synth.duckdb"), help="warehouse file to write"
    )
    parser.add_argument("--events", type=int, default=100_000_000, help="token events (multiple of 250,000)")
    parser.add_argument("--runs-per-insert", type=int, default=20, help="runs per INSERT statement")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the warehouse and print what it holds."""
    args = parse_args(argv)
    out = args.out.resolve()
    if out.is_relative_to(REPO):
        sys.exit(f"refusing to write {out} inside the repository; pass --out /tmp/...")
    if out.exists() and not args.force:
        sys.exit(f"{out} exists; pass --force to overwrite")
    for stale in (out, out.with_name(out.name + ".wal")):
        stale.unlink(missing_ok=True)
    n_runs = max(1, args.events // (250 * SAMPLES_PER_RUN))
    started = time.perf_counter()
    upgrade(out)
    with duckdb.connect(str(out)) as con:
        insert_metadata(con, run_plan(n_runs))
        ids = [r[0] for r in con.execute("SELECT run_id FROM plan ORDER BY run_id").fetchall()]
        for i in range(0, len(ids), args.runs_per_insert):
            chunk = ids[i : i + args.runs_per_insert]
            insert_events(con, chunk[0], chunk[-1])
            done = i + len(chunk)
            print(
                f"runs {done}/{len(ids)}  {time.perf_counter() - started:6.1f} s", file=sys.stderr, flush=True
            )
        cycles = insert_cycles(con)
        summed = rebuild(con)  # the summary tables that ingest would have written, by SQL in one pass
        print(f"summary tables  {time.perf_counter() - started:6.1f} s", file=sys.stderr, flush=True)
        con.execute("CHECKPOINT")
        events = con.execute("SELECT count(*) FROM token_events").fetchall()[0][0]
    assert summed == events, f"summary tables hold {summed} events, token_events {events}"
    size = out.stat().st_size / 2**30
    print(
        f"{out}: {events:,} token events, {n_runs} runs, spec_cycles {'filled' if cycles else 'absent'}, "
        f"{size:.2f} GiB, {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
