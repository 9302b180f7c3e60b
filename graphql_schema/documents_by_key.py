"""How many different executions each key's live WebSocket operations cost a change, in this process.

A change is executed once for each distinct (document, variables, caller) its subscribers asked, and
the answer shared by every subscriber that asked the same (graphql_schema/shared_events.py). So a key
whose subscriptions each differed by an alias had each of them executed for every change: 1,000
subscriptions of one `subscribe` key, an alias apiece, kept the server busy 69 s for one segment
update (17 s with one document) and another key's profile reads waited up to 1.6 s. The same held for
one document under 1,000 values of a variable that does not choose what is watched (`first: $n`).

So a key may run at most `limit` different documents at once in one process (`DocumentsByKey`, at the
transport), and at most `limit` different (document, variables) for one thing watched (a segment, a
profile, both or everything: `AnswersByWatch`, in the resolver, which knows what is watched): a change
reaches at most four such things, whatever number of operations a key runs. Subscriptions each
watching their own profile, one document and one variable each, stay any number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable

from app.domain.errors import LimitExceeded
from graphql_schema.limits import LIMIT_EXCEEDED
from graphql_schema.refusals import Refused

WAY_OUT = "send one document for subscriptions that differ only in aliases, with variables for what does differ"


class DistinctByKey:
    """At most `limit` different items held at once under one key; any number of holds of each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[Hashable, Counter[Hashable]] = {}

    def admits(self, key: Hashable, item: Hashable) -> bool:
        held = self._held.get(key)
        return held is None or item in held or len(held) < self.limit

    def hold(self, key: Hashable, item: Hashable) -> Callable[[], None]:
        """Count a hold of `item` under `key`; returns what releases it (once)."""
        self._held.setdefault(key, Counter())[item] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            held = self._held.get(key)
            if held is None:
                return
            held[item] -= 1
            if held[item] <= 0:
                del held[item]
                if not held:
                    del self._held[key]

        return release


class DocumentsByKey(DistinctByKey):
    def refusal(self, key: str, document: str) -> Refused | None:
        """Why a new operation of `document` is refused for `key` (None: it may run)."""
        if self.admits(key, document):
            return None
        message = f"at most {self.limit} different documents at once for one key on a server process: {WAY_OUT}"
        return Refused(429, message, code=LIMIT_EXCEEDED)


class AnswersByWatch(DistinctByKey):
    def admit(self, key: str, watched: tuple[str | None, str | None], asked: Hashable) -> Callable[[], None]:
        """Hold `asked` (a document, its variables and the caller) for what `key` watches; LimitExceeded
        when it is one too many different ones for it."""
        if not self.admits((key, watched), asked):
            raise LimitExceeded(
                f"at most {self.limit} different documents and variables at once for one key watching the same "
                f"segment or profile on a server process: {WAY_OUT}, and only what is watched in variables"
            )
        return self.hold((key, watched), asked)
