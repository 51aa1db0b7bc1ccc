"""Loading a model pair: paths (zoo:, local, hub id), shared-vocabulary check, counted parameters."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from warehouse.errors import UserError
from warehouse.staging import ModelInfo


class ModelLoadError(UserError):
    """A model or tokenizer could not be used; the message says what to do."""


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for inference, with the name the warehouse records."""

    name: str
    path: str
    model: Any
    tokenizer: PreTrainedTokenizerBase
    params: int
    vocab_size: int  # rows of the output layer

    def info(self) -> ModelInfo:
        """The warehouse's `models` row (with the GGUF file or recipe a cached folder came from)."""
        from collector.gguf_files import ModelSource

        source = ModelSource.read(self.path)
        return ModelInfo(
            name=self.name,
            path=self.path,
            params=self.params,
            architecture=type(self.model).__name__,
            vocab_size=self.vocab_size,
            # a .gguf spec names the file loaded now; the content-keyed cache may have been built from a copy
            source=self.name if self.name.endswith(".gguf") else (source.source if source else None),
            quantization=source.quantization if source else None,
        )


def pick_device(device: str | None) -> torch.device:
    """`cuda` where present, else CPU; an explicit choice wins, if this machine has that device."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ModelLoadError(
            f"--device {device!r} is not a device name; use --device cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index or 0) >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a torch built without CUDA)"
            raise ModelLoadError(
                f"--device {device}: this machine has {have}; use --device cpu or leave it out"
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(
            f"--device {device}: MPS is not available here; use --device cpu or leave it out"
        )
    return chosen


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU; an explicit choice wins."""
    if dtype:
        try:
            value = getattr(torch, dtype)
        except AttributeError:
            raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
        if not isinstance(value, torch.dtype):
            raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        return value
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def resolve_spec(spec: str) -> tuple[str, str]:
    """(warehouse name, loadable path or hub id) of a model argument; `zoo:<name>` maps to the zoo,
    `hf:<name>[/<draft>]` to a shipped real model or a draft of it, a .gguf file to its dequantized copy."""
    if spec.startswith("zoo:"):
        from collector.zoo import resolve_model_path

        return spec, resolve_model_path(spec)
    if spec.startswith("hf:"):  # a real model shipped in a package, or a draft built from it
        from collector.drafts import resolve_named

        return spec, str(resolve_named(spec))
    local = Path(spec).expanduser()
    if spec.endswith(".gguf"):  # loaded through transformers' GGUF support, dequantized once (cached)
        from collector.gguf_files import dequantized_folder

        return str(local.resolve()), str(dequantized_folder(local.resolve()))
    if local.exists():
        return str(local.resolve()), str(local.resolve())
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local or os.environ.get("HF_HUB_OFFLINE") == "1" and "/" not in spec:
        raise ModelLoadError(
            f"model path {spec!r} does not exist; pass a folder with config.json and weights, a .gguf "
            "file, a Hugging Face hub id, hf:<name> or zoo:<name> (see: python -m collector.zoo list)"
        )
    return spec, spec


def load_model(
    spec: str, device: torch.device, dtype: torch.dtype, device_map: str | None = None
) -> LoadedModel:
    """Load a causal LM and its tokenizer in eval mode; parameters are counted from the weights.

    With `device_map` (e.g. "auto") accelerate places the layers over the machine's devices instead.
    """
    name, path = resolve_spec(spec)
    transformers.logging.disable_progress_bar()  # one line per weight file would drown our own progress
    placement = {"device_map": device_map} if device_map else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **placement)
    except ImportError as exc:
        raise ModelLoadError(f"device_map {device_map!r} needs accelerate: pip install accelerate") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load model {spec!r} from {path}: {exc}. "
            "Check the path (a folder with config.json, weights and tokenizer files) or use zoo:<name>."
        ) from exc
    model = (model if device_map else model.to(device)).eval()  # type: ignore[arg-type]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    params = sum(p.numel() for p in model.parameters())
    vocab = int(model.get_output_embeddings().weight.shape[0])
    return LoadedModel(name, path, model, tokenizer, params, vocab)


_LOADED: dict[tuple[str, str, str, str | None], LoadedModel] = {}


def load_model_cached(
    spec: str, device: torch.device, dtype: torch.dtype, device_map: str | None = None
) -> LoadedModel:
    """`load_model`, kept for the life of the process (a sweep reuses each model across its cells)."""
    key = (spec, str(device), str(dtype), device_map)
    if key not in _LOADED:
        _LOADED[key] = load_model(spec, device, dtype, device_map)
    return _LOADED[key]


def shared_vocab_size(*models: LoadedModel) -> int:
    """Size of the shared vocabulary; refuses tokenizers that encode the shared ids differently."""
    size = min(m.vocab_size for m in models)
    ref = models[0]
    ref_tokens = ref.tokenizer.convert_ids_to_tokens(list(range(min(size, len(ref.tokenizer)))))
    for other in models[1:]:
        n = min(size, len(ref.tokenizer), len(other.tokenizer))
        tokens = other.tokenizer.convert_ids_to_tokens(list(range(n)))
        for i, (a, b) in enumerate(zip(ref_tokens[:n], tokens, strict=True)):
            if a != b:
                raise ModelLoadError(
                    f"{ref.name} and {other.name} tokenizers differ at id {i} ({a!r} vs {b!r}); "
                    "pick models from one family (they must share a vocabulary)"
                )
        if (
            len(ref.tokenizer) != len(other.tokenizer)
            and min(len(ref.tokenizer), len(other.tokenizer)) < size
        ):
            size = min(len(ref.tokenizer), len(other.tokenizer))
    return size


_CACHE_KWARG: dict[type, str] = {}


def cache_kwarg(model: Any) -> str:
    """Name of the KV-cache argument of `model.forward` (`cache` in new transformers)."""
    cls = type(model)
    if cls not in _CACHE_KWARG:
        params = inspect.signature(cls.forward).parameters
        _CACHE_KWARG[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KWARG[cls]


_LOGITS_TO_KEEP: dict[type, str | None] = {}


def last_logits(model: Any, n: int) -> dict[str, int]:
    """Forward kwargs that make the LM head score only the last n positions (a prefill needs one), where the
    model can; a model that cannot scores every position."""
    cls = type(model)
    if cls not in _LOGITS_TO_KEEP:
        params = inspect.signature(cls.forward).parameters
        names = ("logits_to_keep", "num_logits_to_keep")  # transformers ≥ 4.50, 4.45–4.49
        _LOGITS_TO_KEEP[cls] = next((k for k in names if k in params), None)
    name = _LOGITS_TO_KEEP[cls]
    return {name: n} if name and n > 0 else {}  # 0 would keep every position


def forward(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    pos: torch.Tensor,
    cache: Any = None,
    last: int = 0,
) -> Any:
    """One forward pass with an optional KV cache; returns the model output (logits, cache). With `last`,
    the logits may cover only the last `last` positions (`last_logits`): take them as `logits[:, -last:]`."""
    kwargs = {cache_kwarg(model): cache} if cache is not None else {}
    kwargs |= last_logits(model, last)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=cache is not None, **kwargs)
