"""Sweeps: the sweep file (`spec`), model sizes (`sizes`), and the executors (`local`, `ray_executor`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_sweeps() -> list[str]:
    """Names of the sweep files shipped with fsgen (`python -m collector.sweep NAME`)."""
    root = resources.files(__name__)
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def sweep_path(ref: str) -> Path:
    """A sweep file: a path, or the name of a shipped sweep (`paper` → collector/sweeps/paper.toml)."""
    path = Path(ref).expanduser()
    if path.exists() or ref.endswith(".toml") or "/" in ref:
        return path
    shipped = Path(str(resources.files(__name__).joinpath(f"{ref}.toml")))
    return shipped if shipped.is_file() else path
