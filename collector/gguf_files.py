"""GGUF files: what one holds, whether transformers can load it, and its dequantized copy in the cache.

transformers reads a GGUF file with `from_pretrained(folder, gguf_file=...)` and dequantizes every tensor
(about 20 s for a 135 M-parameter model on two cores). The first load saves the dequantized weights,
config and tokenizer as an ordinary safetensors folder under the cache (`FSGEN_CACHE`, else
`~/.cache/fsgen`), keyed by the file's content, so every later load reads that folder in under a second.
Each such folder holds `fsgen-source.json`: the file it came from and its quantization, which the
warehouse records with the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from warehouse.errors import UserError

SOURCE_FILE = "fsgen-source.json"  # in a cached folder: where its weights came from
NATIVE_TYPES = ("F32", "F16", "BF16")  # stored as plain floats, no dequantization needed


def cache_root() -> Path:
    """Where fsgen keeps models it derives (dequantized GGUF files, built drafts)."""
    return Path(os.environ.get("FSGEN_CACHE") or Path.home() / ".cache" / "fsgen").expanduser()


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF file's header says: architecture and the quantization of its weights."""

    path: str
    architecture: str
    quantization: str  # the type of most of its 2-D tensors, e.g. "Q4_1"
    tensor_types: dict[str, int]  # tensors per type


@dataclass(frozen=True)
class ModelSource:
    """Where a derived model folder came from (recorded in the warehouse's `models` row)."""

    source: str
    quantization: str | None

    def write(self, folder: Path) -> None:
        (folder / SOURCE_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @staticmethod
    def read(folder: str | Path) -> ModelSource | None:
        """The folder's source record, or None for a folder fsgen did not derive."""
        file = Path(folder) / SOURCE_FILE
        if not file.is_file():
            return None
        data = json.loads(file.read_text())
        return ModelSource(str(data["source"]), data.get("quantization"))


@cache
def supported_architectures() -> tuple[str, ...]:
    """The GGUF architectures this transformers can turn into a model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return tuple(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


@cache
def dequantizable(type_name: str) -> bool:
    """Whether the installed `gguf` package can turn tensors of this type into floats (tried on one zero
    block: the package's own answer, not a list copied here)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize

    if type_name in NATIVE_TYPES:
        return True
    qtype = GGMLQuantizationType[type_name]
    _, size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, size), dtype=np.uint8), qtype)
    except (NotImplementedError, ValueError, TypeError, KeyError):
        return False
    return True


def supported_quantizations() -> tuple[str, ...]:
    """Every tensor type that `dequantizable` accepts (for messages; it tries each type once)."""
    from gguf import GGMLQuantizationType

    return tuple(t.name for t in GGMLQuantizationType if dequantizable(t.name))


def inspect_gguf(path: Path) -> GgufInfo:
    """Read a GGUF header (no tensor data); a file that is not GGUF is a UserError."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise UserError("reading a .gguf model needs the gguf package: pip install gguf") from exc
    try:
        reader = GGUFReader(str(path), "r")
        arch_field = reader.fields["general.architecture"]
        architecture = str(arch_field.contents())
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(f"{path} is not a readable GGUF file ({exc}); pass a .gguf model file") from exc
    types = Counter(t.tensor_type.name for t in reader.tensors)
    weights = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) == 2)
    quant = (weights or types).most_common(1)[0][0] if types else "none"
    return GgufInfo(str(path), architecture, quant, dict(types))


def check_supported(info: GgufInfo) -> None:
    """Refuse an architecture or a tensor type transformers cannot load, naming the supported ones."""
    if info.architecture not in supported_architectures():
        raise UserError(
            f"{info.path}: GGUF architecture {info.architecture!r} is not supported by this transformers; "
            f"supported: {', '.join(supported_architectures())}"
        )
    bad = sorted(t for t in info.tensor_types if not dequantizable(t))
    if bad:
        raise UserError(
            f"{info.path}: quantization {', '.join(bad)} cannot be dequantized; "
            f"supported: {', '.join(supported_quantizations())}"
        )


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (the cache key of its dequantized folder)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def dequantized_folder(path: Path) -> Path:
    """The cached safetensors folder of a GGUF file, written on first use (the file is checked then)."""
    if not path.is_file():
        raise UserError(f"GGUF file {path} does not exist; pass an existing .gguf file")
    folder = cache_root() / "gguf" / f"{path.stem}-{content_key(path)}"
    if not (folder / SOURCE_FILE).is_file():
        info = inspect_gguf(path)
        check_supported(info)

        def build(out: Path) -> None:
            save_dequantized(path, out)
            ModelSource(str(path.resolve()), info.quantization).write(out)

        build_atomically(folder, build)
    return folder


def content_key(path: Path) -> str:
    """The first 16 hex digits of the file's sha256, remembered by (path, size, mtime) so that a cached
    load does not read the whole file again."""
    stat = path.stat()
    index_file = cache_root() / "gguf" / "digests.json"
    seen = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if seen not in index:
        index[seen] = file_digest(path)[:16]
        index_file.parent.mkdir(parents=True, exist_ok=True)
        scratch = index_file.with_name(f".digests-{os.getpid()}.json")
        scratch.write_text(json.dumps(index, indent=1) + "\n")
        scratch.replace(index_file)
    return str(index[seen])


def build_atomically(folder: Path, build: Callable[[Path], None]) -> None:
    """Write a cache folder under a scratch name, then rename it into place: a reader never sees half of
    one; when two processes build at once, the first rename wins and the other's copy is dropped."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        build(scratch)
        with contextlib.suppress(OSError):
            scratch.rename(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def save_dequantized(path: Path, out: Path) -> None:
    """Load a GGUF file through transformers (dequantizing it) and save it as safetensors + tokenizer."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"gguf_file": path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise UserError(f"transformers could not load {path}: {exc}") from exc
    # The weights are plain floats now; drop the GGUF marker so the folder saves and loads as usual.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
