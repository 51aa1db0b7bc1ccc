"""The advisor's emitted HF settings, run through transformers' own assisted `generate` on the oracle run's
prompts: token identity with the LLM's greedy `generate` (and with the oracle run's recorded tokens), and
the measured speed-up beside the predicted one, at batch 1.

    python -m bench.bench_emit_hf --warehouse W [--llm L --dataset D] [--rounds 3] [--threads 1]

W holds a greedy oracle run with costs (e.g. `python -m collector.run --llm zoo:zoo-l --slm zoo:zoo-s
--method oracle --dataset builtin:arith --samples 12 --max-new-tokens 48`). Per prompt, greedy and assisted
`generate` alternate `--rounds` times (the fastest of each kept); the speed-up is Σ greedy seconds /
Σ assisted seconds over the same tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from analytics.advise import advise
from analytics.emit import emit, model_path, pick_pair


def _timed(run: object) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = run()  # type: ignore[operator]
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warehouse", type=Path, required=True)
    p.add_argument("--llm")
    p.add_argument("--dataset")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = pick_pair(advise(args.warehouse).best, args.llm, args.dataset)
    run_id = int(row["oracle_run_id"])
    s = emit(args.warehouse, "hf", run_id, row["llm"], row["slm"], row["dataset"])
    kwargs = {k: v for k, v in s.settings.items() if k != "assistant_model"}
    with duckdb.connect(str(args.warehouse), read_only=True) as con:
        prompts = con.execute(
            "SELECT sample_id, prompt FROM samples WHERE run_id = ? ORDER BY sample_id", [run_id]
        ).fetchall()
        tokens = con.execute(
            "SELECT sample_id, list(token_id ORDER BY step) FROM token_events WHERE run_id = ? GROUP BY 1",
            [run_id],
        ).fetchall()
        found = con.execute("SELECT settings FROM runs WHERE run_id = ?", [run_id]).fetchone()
        assert found is not None  # the run was read from this warehouse above
        max_new = json.loads(found[0])
    recorded = dict(tokens)
    llm_path = model_path(args.warehouse, row["llm"])
    tok = AutoTokenizer.from_pretrained(llm_path)
    llm = AutoModelForCausalLM.from_pretrained(llm_path).eval()
    draft = AutoModelForCausalLM.from_pretrained(s.settings["assistant_model"]).eval()
    common = {"max_new_tokens": int(max_new["max_new_tokens"]), "do_sample": False,
              "pad_token_id": tok.pad_token_id or tok.eos_token_id}  # fmt: skip
    greedy_s = assisted_s = 0.0
    identical = same_as_run = n_tokens = 0
    with torch.inference_mode():
        for sample_id, prompt in prompts:
            ids = tok(prompt, return_tensors="pt")
            best_g = best_a = float("inf")
            for _ in range(args.rounds):
                g_s, greedy = _timed(lambda ids=ids: llm.generate(**ids, **common))
                a_s, assisted = _timed(
                    lambda ids=ids: llm.generate(**ids, **common, assistant_model=draft, **kwargs)
                )
                best_g, best_a = min(best_g, g_s), min(best_a, a_s)
            new = greedy[0, ids["input_ids"].shape[1] :].tolist()
            identical += int(assisted.tolist() == greedy.tolist())
            ref = recorded.get(sample_id, [])
            same_as_run += int(new[: len(ref)] == ref)
            greedy_s, assisted_s, n_tokens = greedy_s + best_g, assisted_s + best_a, n_tokens + len(new)
    measured = greedy_s / assisted_s
    print(json.dumps({"settings": s.settings, "pair": [row["llm"], row["slm"]], "dataset": row["dataset"],
                      "prompts": len(prompts), "tokens": n_tokens, "assisted_equals_greedy": identical,
                      "greedy_prefix_equals_oracle_run": same_as_run, "greedy_s": greedy_s,
                      "assisted_s": assisted_s, "measured_speedup": measured,
                      "predicted_speedup": s.predicted_speedup,
                      "error": (s.predicted_speedup - measured) / measured}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
