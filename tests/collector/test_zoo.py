"""The shipped zoo: real models load and generate, names resolve, the manifest tells the truth."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from collector.zoo import (
    MANIFEST_NAME,
    TUNED_FOR,
    ZOO_DIR,
    ZooEntry,
    resolve_model_path,
    zoo_models,
    zoo_pairs,
)
from collector.zoo.__main__ import main

ENTRIES = zoo_models()
BASES = [e for e in ENTRIES if not e.tuned]


def _weight_count(path: str) -> int:
    """Parameters counted from the safetensors file."""
    with safe_open(str(Path(path) / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_model_loads_and_generates(entry: ZooEntry) -> None:
    tok = AutoTokenizer.from_pretrained(entry.path)
    model = AutoModelForCausalLM.from_pretrained(entry.path)
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert model.config.max_position_embeddings >= 2048
    enc = tok(["Question: Where does Zipi live?\nAnswer:"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0]), str)


def test_one_shared_tokenizer() -> None:
    blobs = {(Path(e.path) / "tokenizer.json").read_bytes() for e in ENTRIES}
    assert len(blobs) == 1


def test_sizes_ratio_and_val_loss() -> None:
    counted = [_weight_count(e.path) for e in BASES]
    assert counted == [e.params for e in BASES]
    assert counted == sorted(counted) and len(counted) >= 4
    assert counted[-1] / counted[0] >= 30
    losses = [e.val_loss for e in BASES]
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False)), losses


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on n items."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


ROWS = {r["name"]: r for r in json.loads((ZOO_DIR / MANIFEST_NAME).read_text())}


def _accuracies(task: str) -> list[float]:
    """One task's test accuracy of the base models, smallest first."""
    return [ROWS[e.name]["accuracy"][task] for e in BASES]


@pytest.mark.parametrize("task", ["builtin:arith", "builtin:choice", "builtin:code"])
def test_accuracy_is_measured_on_enough_items(task: str) -> None:
    rows = [ROWS[e.name] for e in BASES]
    assert all(r["eval_items"][task] >= 400 for r in rows)
    assert all(0.0 < a < 1.0 for a in _accuracies(task))  # every size does some of each task, none all of it


@pytest.mark.parametrize("task", ["builtin:arith", "builtin:choice", "builtin:code"])
def test_accuracy_rises_strictly_with_size(task: str) -> None:
    acc = _accuracies(task)
    assert all(a < b for a, b in zip(acc, acc[1:], strict=False)), acc
    n = ROWS[BASES[0].name]["eval_items"][task]
    se = math.sqrt(acc[0] * (1 - acc[0]) / n + acc[-1] * (1 - acc[-1]) / n)
    assert (acc[-1] - acc[0]) / se > 1.96  # the largest beats the smallest (two-proportion z test, 5%)


@pytest.mark.parametrize("task", ["builtin:arith", "builtin:choice", "builtin:code"])
def test_steps_larger_than_their_intervals(task: str) -> None:
    # Every step up in size: the smaller model's 95% interval ends below the larger one's.
    n = ROWS[BASES[0].name]["eval_items"][task]
    acc = _accuracies(task)
    for a, b in zip(acc, acc[1:], strict=False):
        assert _wilson(a, n)[1] < _wilson(b, n)[0], (a, b)


def test_tuned_beats_its_base_on_the_instruction_format() -> None:
    for base, tuned in TUNED_FOR.items():
        assert ROWS[tuned]["val_loss_qa"] < ROWS[base]["val_loss_qa"]
        assert ROWS[tuned]["val_loss"] > ROWS[base]["val_loss"]  # it was tuned away from raw documents


def test_total_size_under_40_mb() -> None:
    total = sum(f.stat().st_size for f in ZOO_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 1024 * 1024


def test_manifest_rows() -> None:
    rows = json.loads((ZOO_DIR / MANIFEST_NAME).read_text())
    assert {r["name"] for r in rows} == {e.name for e in ENTRIES}
    for row in rows:
        assert {"name", "params", "val_loss", "accuracy", "tuned", "base", "eval_items"} <= set(row)
        assert set(row["accuracy"]) == {"builtin:arith", "builtin:choice", "builtin:code"}
        assert all(0.0 <= v <= 1.0 for v in row["accuracy"].values())
    assert [e.tuned for e in ENTRIES] == sorted(e.tuned for e in ENTRIES)  # tuned last


def test_tuned_variant() -> None:
    by_name = {e.name: e for e in ENTRIES}
    assert TUNED_FOR
    for base, tuned in TUNED_FOR.items():
        assert by_name[tuned].tuned and by_name[tuned].base == base and not by_name[base].tuned
        assert by_name[tuned].params == by_name[base].params
        assert "tuned" in tuned


def test_resolve_model_path() -> None:
    path = resolve_model_path(f"zoo:{BASES[0].name}")
    assert Path(path).is_absolute() and (Path(path) / "config.json").is_file()
    assert resolve_model_path("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"
    assert resolve_model_path("/some/local/dir") == "/some/local/dir"
    with pytest.raises(ValueError, match=BASES[-1].name):
        resolve_model_path("zoo:no-such-model")


def test_pairs() -> None:
    pairs = zoo_pairs()
    params = {e.name: e.params for e in ENTRIES}
    assert len(pairs) == len(BASES) * (len(BASES) - 1) // 2
    assert all(params[llm] > params[slm] for llm, slm in pairs)
    assert not any(name in TUNED_FOR.values() for pair in pairs for name in pair)


def test_list_json_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "collector.zoo", "list", "--json"], capture_output=True, text=True, check=True
    )
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == [e.name for e in ENTRIES]
    for row in rows:
        assert set(row) == {"name", "path", "params", "val_loss", "accuracy"}
        assert all(0.0 <= v <= 1.0 for v in row["accuracy"].values())


def test_list_table_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert all(e.name in table for e in ENTRIES) and "val_loss" in table
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.slow
def test_train_builds_a_loadable_family(tmp_path: Path) -> None:
    from collector.zoo.train import train_family

    reports = train_family(tmp_path, seed=1, scale=0.002, threads=1, eval_samples=1, log=lambda _: None)
    entries = zoo_models(tmp_path)
    assert [e.name for e in entries] == [e.name for e in ENTRIES]
    assert [r.params for r in reports] == [e.params for e in ENTRIES]
    tok = AutoTokenizer.from_pretrained(entries[0].path)
    model = AutoModelForCausalLM.from_pretrained(entries[-1].path)
    assert model.config.vocab_size == len(tok)


@pytest.mark.parametrize(
    ("flag", "value"), [("--eval-samples", "0"), ("--scale", "nan"), ("--threads", "-1"), ("--scale", "x")]
)
def test_train_refuses_bad_numbers(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "zoo"), flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err and not (tmp_path / "zoo").exists()  # nothing written
