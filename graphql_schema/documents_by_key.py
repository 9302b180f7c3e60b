"""How many different documents each key's live WebSocket operations run, in this process.

A change is executed once for each distinct (document, variables, caller) its subscribers asked, and
the answer shared by every subscriber that asked the same (graphql_schema/shared_events.py). So a key
whose subscriptions each differed by an alias had each of them executed for every change: 1,000
subscriptions of one `subscribe` key, an alias apiece, kept the server busy 69 s for one segment
update (17 s with one document) and another key's profile reads waited up to 1.6 s. A key may run at
most `limit` different documents at once in one process, and any number of operations of those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from graphql_schema.limits import LIMIT_EXCEEDED
from graphql_schema.refusals import Refused


class DocumentsByKey:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, Counter[str]] = {}

    def refusal(self, key: str, document: str) -> Refused | None:
        """Why a new operation of `document` is refused for `key` (None: it may run)."""
        held = self._held.get(key)
        if held is None or document in held or len(held) < self.limit:
            return None
        return Refused(
            429,
            f"at most {self.limit} different documents at once for one key on a server process: send one "
            "document for subscriptions that differ only in aliases, with variables for what does differ",
            code=LIMIT_EXCEEDED,
        )

    def hold(self, key: str, document: str) -> Callable[[], None]:
        """Count an operation of `document` for `key`; returns what releases it (once)."""
        self._held.setdefault(key, Counter())[document] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            held = self._held.get(key)
            if held is None:
                return
            held[document] -= 1
            if held[document] <= 0:
                del held[document]
                if not held:
                    del self._held[key]

        return release
