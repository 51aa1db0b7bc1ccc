"""Shared fixtures: real DuckDB files migrated to head."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.models import make_model, make_tokenizer
from warehouse.migrate import upgrade

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one compute thread each, and the same for the collectors,
    # servers and sweeps the tests start (they inherit the environment), so workers do not oversubscribe.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

# Prompts of varied lengths (exercise left padding); the prompts file's and, with two more, the engine tests'.
PROMPT_TEXTS = (
    "the quick brown",
    "question: what is",
    "def add(a",
    "numbers 0 1 2 3 4 5",
    "the",
    "letters a b c",
)


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    """A fresh warehouse file at head."""
    path = tmp_path / "fsgen.duckdb"
    upgrade(path)
    return path


@dataclass(frozen=True)
class TinyModels:
    """Paths of tiny real models: an LLM, an SLM sharing its tokenizer, and one with another tokenizer."""

    llm: Path
    slm: Path
    foreign: Path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Built once per session (random weights, seconds)."""
    root = tmp_path_factory.mktemp("models")
    tok = make_tokenizer(root / "tok")
    llm = make_model(root / "llm", tok, hidden=64, layers=3, seed=1)
    slm = make_model(root / "slm", tok, hidden=32, layers=2, seed=2)
    other_tok = make_tokenizer(root / "tok2", seed_text="zebra quilt xylophone jukebox ")
    foreign = make_model(root / "foreign", other_tok, hidden=32, layers=2, seed=3)
    return TinyModels(llm, slm, foreign)


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    """A JSONL prompts file of varied lengths (exercises left padding)."""
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in PROMPT_TEXTS))
    return path
