"""Token text for a run: the LLM's tokenizer file, found through the `models` table and cached per path."""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer


@functools.lru_cache(maxsize=16)
def load_tokenizer(model_path: str) -> Tokenizer | None:
    """The fast tokenizer at a model folder (tokenizer.json), or None where the folder has none."""
    file = Path(model_path) / "tokenizer.json"
    if not file.is_file():
        return None
    return Tokenizer.from_file(str(file))


def token_texts(tokenizer: Tokenizer | None, ids: list[int]) -> list[str | None]:
    """Each id's own text (decoded alone, so the pieces make up the output); None without a tokenizer."""
    if tokenizer is None:
        return [None] * len(ids)
    return [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
