"""A bounded cache for long-running processes (series ids, days already
indexed): it forgets what has not been used for a while.

Two generations of plain dicts, the way a clock or 2Q cache approximates LRU
at the cost of a dict lookup: hits in the old generation are moved to the
current one, and when the current one is full the old one is dropped. At most
``max_entries`` entries are held; an entry used at least once per
``max_entries / 2`` insertions is never forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``max_entries`` entries, the least recently used forgotten first
    (approximately: by generation). Thread-safe."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 2:
            raise ValueError(f"'max_entries' must be >= 2, got {max_entries}")
        self.max_entries = max_entries
        self._generation = max_entries // 2
        self._current: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._current.get(key)
        if value is not None:
            return value
        value = self._old.get(key)
        if value is None:
            return default
        self.put(key, value)
        return value

    def get_many(self, keys: list[K]) -> list[V | None]:
        """``[get(key) for key in keys]`` at the cost of one dict lookup per key."""
        found = list(map(self._current.get, keys))
        if not all(found):  # faster than ``None in found``; a false value found merely takes the loop below
            old = self._old.get
            for i, value in enumerate(found):
                if value is None:
                    value = old(keys[i])
                    if value is not None:
                        self.put(keys[i], value)
                        found[i] = value
        return found

    def put(self, key: K, value: V) -> None:
        self.put_many((key,), value)

    def put_many(self, keys: Sequence[K], value: V) -> None:
        """``put(key, value)`` for each key, taking the lock once."""
        with self._lock:
            for key in keys:
                if len(self._current) >= self._generation and key not in self._current:
                    self._old, self._current = self._current, {}
                self._current[key] = value

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._current) + sum(1 for k in self._old if k not in self._current)

    def clear(self) -> None:
        with self._lock:
            self._current, self._old = {}, {}
