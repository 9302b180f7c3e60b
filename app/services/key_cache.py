"""Verified API keys one process remembers, so that a known token costs neither its key's read nor
its hash check on each request (app/services/api_keys.py `authenticate`).

Exact, not eventual: every request first reads the store's keys version, which any key change moves
in its own transaction, and the remembered keys are dropped as soon as it differs from the one they
were verified at. A key revoked by any process (or the CLI) is refused on its next request here.
Only keys that passed the check are remembered, by a digest of their token: a client sending random
tokens fills nothing and evicts nothing. The bounds (entries, seconds) cap memory and how long a key
changed behind the store's back (a hand edit of MongoDB's key documents) could still be honoured.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from app.domain.access import Principal


def token_digest(token: str) -> bytes:
    """What a token is remembered by: secrets are not kept in memory longer than a request."""
    return hashlib.sha256(token.encode()).digest()


class KeyCache:
    """Principals of verified tokens, at most `size` (the least recently used go first), each for at
    most `seconds`, all valid at one keys version. `size=0` or `seconds=0` remembers nothing."""

    def __init__(self, *, size: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size if seconds > 0 else 0
        self.seconds = seconds
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._version: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, version: int) -> Principal | None:
        """The principal remembered for `digest`, if it is still valid at keys version `version`."""
        if version != self._version:
            if self._version is not None and version < self._version:
                return None  # read before a newer version another request already saw: ask the store
            self._entries.clear()
            self._version = version
            return None
        found = self._entries.get(digest)
        if found is None:
            return None
        principal, expires_at = found
        if self._clock() >= expires_at:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return principal

    def put(self, digest: bytes, principal: Principal, version: int) -> None:
        """Remember a principal verified after reading keys version `version` (read before its key:
        a key changed in between moved the version). Kept only while that is the current one."""
        if version != self._version or not self.size:
            return
        self._entries[digest] = (principal, self._clock() + self.seconds)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
