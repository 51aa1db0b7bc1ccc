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


def test_total_size_under_40_mb() -> None:
    total = sum(f.stat().st_size for f in ZOO_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 1024 * 1024


def test_manifest_rows() -> None:
    rows = json.loads((ZOO_DIR / MANIFEST_NAME).read_text())
    assert {r["name"] for r in rows} == {e.name for e in ENTRIES}
    for row in rows:
        assert {"name", "params", "val_loss", "accuracy", "tuned", "base"} <= set(row)
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
