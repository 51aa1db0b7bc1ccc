"""The sweep file: every RunConfig field settable, unknown keys refused, grids, dataset tables, families."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from collector.config import RunConfig
from collector.modeling import load_model
from collector.sweeps import shipped_sweeps, sweep_path
from collector.sweeps.sizes import count_params
from collector.sweeps.spec import SweepError, family_pairs, grid_settings, plan, run_settings

PAIR = {"pairs": [["zoo:zoo-s", "zoo:zoo-xs"]]}


def cells(spec: dict) -> list[RunConfig]:
    return list(plan({**PAIR, **spec} if "pairs" not in spec and "family" not in spec else spec).cells)


def test_settings_are_the_fields_of_runconfig() -> None:
    assert run_settings() == tuple(f.name for f in dataclasses.fields(RunConfig))
    assert {"lam", "alpha", "weight", "draft_k", "threshold", "samples"} <= set(grid_settings())
    assert "dataset_path" not in grid_settings() and "truncate_prompt" not in grid_settings()


def test_the_settings_a_sweep_used_to_drop_reach_every_cell() -> None:
    spec = {
        "datasets": ["gsm8k"],
        "dataset_path": "data/gsm8k.jsonl",
        "lam": 1.5,
        "alpha": 0.2,
        "weight": 0.7,
        "truncate_prompt": True,
        "methods": ["contrastive"],
    }
    (cell,) = cells(spec)
    assert (cell.dataset, cell.dataset_path, cell.lam, cell.alpha) == ("gsm8k", "data/gsm8k.jsonl", 1.5, 0.2)
    assert cell.truncate_prompt is True
    assert cell.weight == 1.0  # proxy's weight is not a setting of contrastive: left at its default


def test_every_field_can_be_set_sweep_wide_and_per_entry() -> None:
    defaults = RunConfig(llm="a", slm="b", dataset="builtin:arith")
    values = {"seed": 3, "shots": 2, "batch_size": 4, "max_new_tokens": 9, "temperature": 0.5, "top_p": 0.9}
    (wide,) = cells({**values, "methods": ["oracle"], "datasets": ["builtin:arith"]})
    (entry,) = cells({"methods": [{"method": "oracle", **values}], "datasets": ["builtin:arith"]})
    for key, value in values.items():
        assert getattr(wide, key) == getattr(entry, key) == value != getattr(defaults, key)


def test_unknown_keys_are_refused_with_the_allowed_ones() -> None:
    with pytest.raises(SweepError, match=r"unknown key 'lamda'; allowed keys: .*alpha, lam"):
        cells({"lamda": 1.5})
    with pytest.raises(SweepError, match=r"routers\[0\]: unknown key 'tau'"):
        cells({"routers": [{"router": "entropy", "tau": 1.0}]})
    with pytest.raises(SweepError, match=r"datasets\[0\]: unknown key 'file'; allowed keys: name, path"):
        cells({"datasets": [{"name": "gsm8k", "file": "x.jsonl"}]})


def test_bad_values_say_what_was_expected() -> None:
    with pytest.raises(SweepError, match="samples = 'ten' should be a int"):
        cells({"samples": "ten"})
    with pytest.raises(SweepError, match="dataset_path takes one value, not a list"):
        cells({"dataset_path": ["a", "b"]})
    with pytest.raises(SweepError, match="both set samples"):
        cells(
            {
                "datasets": [{"name": "builtin:arith", "samples": 4}],
                "methods": [{"method": "oracle", "samples": 8}],
            }
        )
    with pytest.raises(SweepError, match="both methods and method"):
        cells({"methods": ["oracle"], "method": "oracle"})


def test_dataset_tables_and_builtin_strings() -> None:
    spec = {
        "methods": ["oracle"],
        "datasets": [
            {"name": "gsm8k", "path": "g.jsonl", "shots": 8, "samples": 100},
            {"name": "mbpp", "path": "m.jsonl", "shots": 10, "max_new_tokens": 256},
            "builtin:arith",
        ],
    }
    got = [(c.dataset, c.dataset_path, c.shots, c.samples, c.max_new_tokens) for c in cells(spec)]
    assert got == [
        ("gsm8k", "g.jsonl", 8, 100, 64),
        ("mbpp", "m.jsonl", 10, None, 256),
        ("builtin:arith", None, None, None, 64),
    ]


def test_grids_multiply() -> None:
    spec = {
        "datasets": ["builtin:arith"],
        "methods": [
            {"method": "contrastive", "lam": [0.5, 1.5]},
            {"method": "speculative", "draft_k": [3, 5]},
        ],
        "routers": [{"router": "always"}, {"router": "entropy", "threshold": [1.0, 1.5, 2.0]}],
        "seed": [0, 1],
    }
    got = cells(spec)
    contrastive = {(c.lam, c.router, c.threshold, c.seed) for c in got if c.method == "contrastive"}
    assert len(contrastive) == 2 * 4 * 2
    assert (1.5, "entropy", 2.0, 1) in contrastive
    # speculative verifies every draft: the routers do not apply, so only `always` cells
    speculative = {(c.draft_k, c.router, c.seed) for c in got if c.method == "speculative"}
    assert speculative == {(k, "always", s) for k in (3, 5) for s in (0, 1)}
    assert len(got) == 16 + 4


def test_family_pairs_are_ordered_by_counted_parameters() -> None:
    shuffled = ["zoo:zoo-m", "zoo:zoo-xs", "zoo:zoo-l", "zoo:zoo-s"]
    got = [
        (c.llm, c.slm)
        for c in cells({"family": shuffled, "methods": ["oracle"], "datasets": ["builtin:arith"]})
    ]
    sizes = {m: count_params(m) for m in shuffled}
    assert len(got) == 6 and all(sizes[llm] > sizes[slm] for llm, slm in got)
    assert got[0] == ("zoo:zoo-s", "zoo:zoo-xs")  # smallest SLM first, then by LLM size
    assert [p["llm"] for p in family_pairs(["c", "a", "b"], {"a": 1, "b": 2, "c": 3}.__getitem__)] == [
        "b",
        "c",
        "c",
    ]


def test_counted_parameters_match_the_loaded_model() -> None:
    import torch

    for name in ("zoo:zoo-xs", "zoo:zoo-l"):
        assert count_params(name) == load_model(name, torch.device("cpu"), torch.float32).params


def test_proxy_cells_take_the_tuned_slm_and_others_do_not() -> None:
    spec = {"pairs": "zoo", "methods": ["proxy", "oracle"], "datasets": ["builtin:arith"]}
    sweep = plan(spec)
    proxy = [c for c in sweep.cells if c.method == "proxy"]
    assert proxy and all(c.slm == "zoo:zoo-xs" and c.slm_tuned == "zoo:zoo-xs-tuned" for c in proxy)
    assert all(c.slm_tuned is None for c in sweep.cells if c.method == "oracle")
    assert any("no tuned SLM" in note for note in sweep.left_out)


def test_the_paper_sweep_ships_with_the_package() -> None:
    assert "paper" in shipped_sweeps()
    path = sweep_path("paper")
    assert path.name == "paper.toml" and path.parent.name == "sweeps" and path.is_file()
    spec = tomllib.loads(path.read_text())
    qwen, pythia = spec["family"]
    assert len(qwen) == 7 and any("72B" in m for m in qwen) and any("pythia" in m.lower() for m in pythia)
    assert {d["name"]: d["shots"] for d in spec["datasets"]} == {"gsm8k": 8, "mmlu-stem": 5, "mbpp": 10}
    assert {m if isinstance(m, str) else m["method"] for m in spec["methods"]} == {
        "oracle", "contrastive", "proxy", "speculative"
    }  # fmt: skip
    # every key is a run setting (only the model folders are missing here): 21 Qwen pairs
    size = {m: i for i, m in enumerate(qwen + pythia)}
    sweep = plan(spec, count=size.__getitem__)
    assert len({(c.llm, c.slm) for c in sweep.cells if c.llm in qwen}) == 21
    assert Path(sweep_path(str(path))) == path
