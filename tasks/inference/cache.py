"""A bounded cache of evidence embeddings for the siamese head.

A siamese model encodes the evidence alone (:mod:`citeops.tasks.classifier.siamese`), so
its embedding depends on the model and on the evidence's tokens only: AI4citations users
check several claims against one cited paper, and each later claim then costs a claim
pass only. Entries are keyed by ``(namespace, digest)``: the namespace names one loaded
model (its version and a load-unique token, see ``ClaimVerifier.cache_namespace``), the
digest is a hash of the selected evidence's token ids (the tokens the model sees after
selection and truncation). A model loaded again, on another runtime or into the other
slot has another namespace, so an entry is never served to a model that did not compute
it. The cache holds at most ``max_bytes`` of embeddings (least recently used out first)
and counts hits, misses and evictions.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ENTRY_OVERHEAD_BYTES = 200  # key, dict slot and array header, per entry (an estimate)


def evidence_digest(ids: Sequence[int]) -> bytes:
    """A 16-byte hash of an evidence's token ids."""
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class CacheStats:
    """Counts since the cache was made: lookups that hit and missed, entries dropped to
    stay within the bound, entries and bytes held now."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "entries": self.entries,
            "bytes": self.bytes,
        }


class EvidenceCache:
    """Evidence embeddings, least recently used dropped past ``max_bytes`` (thread-safe:
    the inference thread fills it, the metrics route reads its counts)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    @staticmethod
    def entry_bytes(embedding: np.ndarray) -> int:
        return int(embedding.nbytes) + ENTRY_OVERHEAD_BYTES

    def get(self, namespace: str, digest: bytes) -> np.ndarray | None:
        """The embedding stored for ``(namespace, digest)``, or None (counted)."""
        key = (namespace, digest)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return found

    def put(self, namespace: str, digest: bytes, embedding: np.ndarray) -> None:
        """Store a copy of ``embedding`` (read-only), dropping the least recently used
        entries to stay within the bound; one larger than the bound is not stored."""
        size = self.entry_bytes(embedding)
        if size > self.max_bytes:
            return
        value = np.array(embedding, dtype=np.float32, copy=True)
        value.setflags(write=False)
        key = (namespace, digest)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= self.entry_bytes(old)
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= self.entry_bytes(dropped)
                self._evictions += 1

    def drop(self, namespace: str) -> int:
        """Remove every entry of ``namespace`` (a model taken out of service); returns
        how many."""
        with self._lock:
            keys = [key for key in self._entries if key[0] == namespace]
            for key in keys:
                self._bytes -= self.entry_bytes(self._entries.pop(key))
            return len(keys)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._entries), self._bytes
            )

    def __len__(self) -> int:
        return len(self._entries)
