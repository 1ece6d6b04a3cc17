"""The in-memory store of the HTTP cache: LRU by size, with a tag index (pure, no I/O).

Entries live under their key (method + URL); a key holds one entry per
variant (``Vary``).  ``max_size`` bounds the bytes of all entries: storing
one more evicts the least recently used until it fits, so the store never
grows past it.
"""

from __future__ import annotations

from collections import OrderedDict

from .policy import Entry, vary_names


def same_variant(a: Entry, b: Entry) -> bool:
    """``a`` and ``b`` answer the same requests (equal on ``b``'s Vary'd headers)."""
    return all(a.request_headers.get(n) == b.request_headers.get(n)
               for n in vary_names(b.headers))


class MemoryStore:
    """Entries by key, least recently used first, and which entries carry each tag."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self._lru: OrderedDict[str, Entry] = OrderedDict()  # id -> entry
        self._keys: dict[str, list[Entry]] = {}
        self._tags: dict[str, set[str]] = {}
        self.sizes: dict[str, int] = {}  # bytes per application

    def __len__(self) -> int:
        return len(self._lru)

    def get(self, key: str) -> list[Entry]:
        entries = self._keys.get(key)
        if not entries:
            return []
        for entry in entries:
            self._lru.move_to_end(entry.id)
        return list(entries)

    def put(self, entry: Entry) -> list[Entry]:
        """Store ``entry`` (replacing its variant); returns the entries evicted for room."""
        if entry.size > self.max_size:
            return []  # it could only fit by emptying the store, and not even then
        for old in [e for e in self._keys.get(entry.key, ()) if same_variant(e, entry)]:
            self.remove(old)
        evicted = []
        while self._lru and self.size + entry.size > self.max_size:
            oldest = next(iter(self._lru.values()))
            self.remove(oldest)
            evicted.append(oldest)
        self._lru[entry.id] = entry
        self._keys.setdefault(entry.key, []).append(entry)
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(entry.id)
        self.size += entry.size
        self.sizes[entry.app] = self.sizes.get(entry.app, 0) + entry.size
        return evicted

    def remove(self, entry: Entry) -> None:
        if self._lru.pop(entry.id, None) is None:
            return
        variants = self._keys.get(entry.key, [])
        if entry in variants:
            variants.remove(entry)
        if not variants:
            self._keys.pop(entry.key, None)
        for tag in entry.tags:
            ids = self._tags.get(tag)
            if ids is not None:
                ids.discard(entry.id)
                if not ids:
                    del self._tags[tag]
        self.size -= entry.size
        self.sizes[entry.app] -= entry.size

    def invalidate(self, keys: list[str], tags: list[str]) -> int:
        """Drop the entries under ``keys`` (cache keys) and those carrying any of ``tags``."""
        doomed = {e.id: e for key in keys for e in self._keys.get(key, ())}
        for tag in tags:
            for entry_id in self._tags.get(tag, ()):
                doomed[entry_id] = self._lru[entry_id]
        for entry in doomed.values():
            self.remove(entry)
        return len(doomed)
