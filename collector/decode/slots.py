"""Rows taking a running KV cache's free slots (continuous batching). A batch keeps its rows; when one is
done, the next prompt, prefilled on its own (or with others joining at the same check), is written into
that row of every layer, right-aligned at the batch's current width with holes (masked slots) at its left,
exactly as left padding lays out a static batch, and with its own positions. Leading columns that are holes
in every row are trimmed once there are enough of them to be worth a copy.

The cache is preallocated (`SlotLayer`: no concatenation per step) and attention reads only its used
columns. Only models whose every cache layer is a plain full-attention layer (transformers' `DynamicLayer`:
per-slot keys and values, nothing else) can take rows: a sliding-window layer keeps only its window (rows of
different ages would need different windows), a recurrent or conv state has no slots to align, and a model
that keeps its state outside transformers' cache (RWKV) has none to write. Those run in static batches
(`collector.decode.refill.refill_rows` says which).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from collector.decode.lockstep import Decoder

TRIM_AT = 16  # leading all-hole columns worth a copy of the cache to drop


class SlotLayer(DynamicLayer):
    """A full-attention cache layer with keys and values preallocated [B, H, capacity, D]; attention reads
    the first `used` columns (a DynamicLayer's semantics without its per-step concatenation)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity, self.used = capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        B, H = key_states.shape[:2]
        self.keys = key_states.new_zeros(B, H, self.capacity, key_states.shape[-1])
        self.values = value_states.new_zeros(B, H, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        self.reserve(self.used + n)
        keys, values = _kv(self)
        keys[:, :, self.used : self.used + n] = key_states
        values[:, :, self.used : self.used + n] = value_states
        self.used += n
        return keys[:, :, : self.used], values[:, :, : self.used]

    def reserve(self, width: int) -> None:
        """Grow the preallocation to hold `width` columns (a copy; rare: capacity is sized for the run)."""
        if width <= self.capacity:
            return
        self.capacity = max(width, 2 * self.capacity)
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:2], self.capacity, old.shape[3])
            new[:, :, : self.used] = old[:, :, : self.used]
            setattr(self, name, new)

    def get_seq_length(self) -> int:
        return self.used

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.used + query_length, 0


def _kv(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's (initialised) keys and values."""
    assert layer.keys is not None and layer.values is not None
    return layer.keys, layer.values


def slot_decoder(model: Any, vocab: int, capacity: int) -> Decoder | None:
    """A Decoder whose cache can take rows, or None where the model's cache is not plain full attention."""
    decoder = Decoder(model, vocab)
    layers = getattr(decoder.cache, "layers", None) or []
    if not isinstance(decoder.cache, DynamicCache) or not layers:
        return None
    if any(type(layer) is not DynamicLayer for layer in layers):  # sliding, recurrent, ...: no slots
        return None
    decoder.cache.layers = [SlotLayer(capacity) for _ in layers]
    return decoder


def _layers(decoder: Decoder) -> list[SlotLayer]:
    return list(decoder.cache.layers)


def _widen(decoder: Decoder, width: int) -> None:
    """Shift every row right so the used width becomes `width` (holes enter at the left)."""
    W = decoder.mask.shape[1]
    shift = width - W
    for layer in _layers(decoder):
        layer.reserve(width)
        for name in ("keys", "values"):
            kv = getattr(layer, name)
            kv[:, :, shift:width] = kv[:, :, :W].clone()
        layer.used = width
    decoder.mask = torch.cat([decoder.mask.new_zeros(decoder.mask.shape[0], shift), decoder.mask], dim=1)


def place(decoder: Decoder, slots: torch.Tensor, group: Decoder) -> None:
    """Write the rows of `group` (a prefilled DynamicCache decoder of the same model) into rows `slots` [b]
    of `decoder`, right-aligned at its width (widened first if a prompt is longer)."""
    P = group.mask.shape[1]
    if decoder.mask.shape[1] < P:
        _widen(decoder, P)
    W = decoder.mask.shape[1]
    for layer, new in zip(_layers(decoder), group.cache.layers, strict=True):
        keys, values = _kv(layer)
        rows = slots.to(keys.device)  # layers may sit on several devices (--device-map auto)
        keys[rows, :, W - P : W] = new.keys
        values[rows, :, W - P : W] = new.values
    mask = decoder.mask.new_zeros(len(slots), W)
    mask[:, W - P :] = group.mask
    decoder.mask[slots] = mask
    decoder.next_pos[slots] = group.next_pos


def append(decoder: Decoder, group: Decoder) -> None:
    """Add the rows of `group` below `decoder`'s (the first prompts of a run fill an empty decoder)."""
    if decoder.mask.numel() == 0 and not decoder.cache.layers[0].is_initialized:
        for layer, new in zip(_layers(decoder), group.cache.layers, strict=True):
            layer.lazy_initialization(new.keys[:0], new.values[:0])
        decoder.mask = group.mask.new_zeros(0, 0)
        decoder.next_pos = group.next_pos[:0]
    B = decoder.mask.shape[0]
    for layer in _layers(decoder):
        for name in ("keys", "values"):
            kv = getattr(layer, name)
            more = kv.new_zeros(len(group.next_pos), *kv.shape[1:])
            setattr(layer, name, torch.cat([kv, more]))
    decoder.mask = torch.cat(
        [decoder.mask, decoder.mask.new_zeros(len(group.next_pos), decoder.mask.shape[1])]
    )
    decoder.next_pos = torch.cat([decoder.next_pos, group.next_pos])
    place(decoder, torch.arange(B, B + len(group.next_pos), device=decoder.mask.device), group)


def leading_holes(decoder: Decoder) -> int:
    """Leading columns that are holes in every row (all of them when no row is left): one host sync."""
    return int((decoder.mask.sum(0) == 0).long().cumprod(0).sum())


def trim(decoder: Decoder, k: int) -> None:
    """Drop the first `k` columns of every row (holes in all of them: `leading_holes`)."""
    W = decoder.mask.shape[1]
    for layer in _layers(decoder):
        for name in ("keys", "values"):
            kv = getattr(layer, name)
            kv[:, :, : W - k] = kv[:, :, k:W].clone()
        layer.used = W - k
    decoder.mask = decoder.mask[:, k:]
