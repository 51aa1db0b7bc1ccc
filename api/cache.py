"""Analytics results kept until the data changes: keyed by the ingester's count of ingested shards.

While the server runs, its own ingester is the file's only writer (DuckDB lets no other process write
beside it; read-only, nobody writes), so the number of shards it has moved in names the data exactly. The
generation is read before the analysis runs: a shard committed meanwhile can only make a stored result
newer than its key says, never older.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ResultCache:
    """A thread-safe LRU of analysis results (size 0: off)."""

    def __init__(self, size: int, generation: Callable[[], int]) -> None:
        self.size = size
        self.generation = generation
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def key(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Hashable | None:
        """The key of one call, or None when caching is off."""
        if self.size <= 0:
            return None
        return (self.generation(), fn.__module__, fn.__qualname__, repr(args), repr(sorted(kw.items())))

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(found, value)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
            self.misses += 1
            return False, None

    def put(self, key: Hashable, value: Any) -> None:
        """Store a result, dropping the least recently used beyond `size`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
