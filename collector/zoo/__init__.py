"""The zoo: the project's own tiny GPT-NeoX family, shipped in `models/` and named `zoo:<name>` on the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from warehouse.errors import UserError

ZOO_DIR: Path = Path(__file__).resolve().parent / "models"
MANIFEST_NAME = "zoo.json"
ZOO_PREFIX = "zoo:"
# Base SLM name -> its instruction-tuned variant (for proxy tuning).
TUNED_FOR: Mapping[str, str] = MappingProxyType({"zoo-xs": "zoo-xs-tuned"})


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model as the manifest describes it."""

    name: str
    path: str
    params: int
    val_loss: float
    accuracy: Mapping[str, float]
    tuned: bool
    base: str | None


def zoo_models(zoo_dir: Path | None = None) -> list[ZooEntry]:
    """The shipped models: base models ordered by size, tuned models last."""
    root = ZOO_DIR if zoo_dir is None else zoo_dir
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise UserError(f"no zoo manifest at {manifest}; build one with `python -m collector.zoo train`")
    entries = [
        ZooEntry(
            name=row["name"],
            path=str((root / row["name"]).resolve()),
            params=int(row["params"]),
            val_loss=float(row["val_loss"]),
            accuracy=MappingProxyType({k: float(v) for k, v in row["accuracy"].items()}),
            tuned=bool(row["tuned"]),
            base=row["base"],
        )
        for row in json.loads(manifest.read_text())
    ]
    return sorted(entries, key=lambda e: (e.tuned, e.params, e.name))


def resolve_model_path(spec: str) -> str:
    """'zoo:<name>' -> the model's absolute local path; any other spec is returned unchanged."""
    if not spec.startswith(ZOO_PREFIX):
        return spec
    name = spec.removeprefix(ZOO_PREFIX)
    known = {e.name: e.path for e in zoo_models()}
    if name not in known:
        raise UserError(f"unknown zoo model {name!r}; known zoo models: {', '.join(known)}")
    return known[name]


def zoo_pairs() -> list[tuple[str, str]]:
    """Every (llm_name, slm_name) pair of base models where the LLM has more parameters."""
    bases = [e for e in zoo_models() if not e.tuned]
    return [(llm.name, slm.name) for slm in bases for llm in bases if llm.params > slm.params]
