"""Profile documents the embedded store's writer wrote last, kept with the very text it wrote.

A batch of events is ingested in runs, one transaction each, with each event that links profiles
alone between them (app/services/ingestion_batch.py); every run reads the documents it changes. On the
demo data (1,486 profiles, 27,642 events) the runs decoded the same ~10 KB documents they had just
written again and again: a sixth of the load's time went to `loads` and the rows it read.

A run's read still fetches each row; when the text is the one a kept document was written as, that
document is the answer, so a write by anything else (another process, the per-event path, segment
upkeep's `json_set`) is never missed and nothing depends on version numbers. A document read is
handed over, not shared: it leaves the keeping, since the run changes it in place; the writer keeps
it again when it writes it. Only the writer thread uses it, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# A decoded document's objects take ~4.2 times its JSON text (the demo data's, measured with
# tracemalloc); the text is kept too.
BYTES_PER_TEXT_BYTE = 6
# The demo data's working set (1,486 profiles, 9.4 MB of text): at 16 MB, three in eight of the runs'
# reads missed, as each batch evicted what the next one read, and decoding them again cost ~1.3 s of
# the first start's load (1.1-1.6 s in five runs; 0.2 s with the set kept, the load ~10% faster).
# The price is memory: under the bench's mixed load (100,000 profiles) the server's RSS levels off at
# ~255 MB instead of ~202 MB (python -m bench serving, part 3).
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024


class WrittenDocuments:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._kept: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._held = 0
        self.taken = 0
        # Pushed out by `keep`, freed by `release`: a batch's keeping pushed out as many documents as
        # it wrote, and freeing their objects was a sixth of its writes' time under the write lock.
        self._pushed_out: list[tuple[str, dict[str, Any]]] = []

    def take(self, profile_id: str, text: str) -> dict[str, Any] | None:
        """The document written as `text`, which the caller now owns; None when none is kept for it."""
        kept = self._drop(profile_id)
        if kept is None or kept[0] != text:
            return None
        self.taken += 1
        return kept[1]

    def keep(self, profile_id: str, text: str, document: dict[str, Any]) -> None:
        """`document` was just written as `text`; its writer no longer changes it."""
        self._drop(profile_id)
        cost = len(text) * BYTES_PER_TEXT_BYTE
        if cost > self.budget_bytes // 8:  # one huge document never pushes out everything else
            return
        self._kept[profile_id] = (text, document)
        self._held += cost
        while self._held > self.budget_bytes:
            if (pushed_out := self._drop(next(iter(self._kept)))) is not None:
                self._pushed_out.append(pushed_out)

    def release(self) -> None:
        """Free the documents `keep` pushed out: called once the write lock is released. One at a
        time: freeing them all in one call (~1,000 documents of ~100 objects for a bulk batch) would
        hold the GIL throughout, and the event loop's requests with it."""
        pushed_out = self._pushed_out
        while pushed_out:
            pushed_out.pop()

    def forget(self, profile_ids: list[str]) -> None:
        for profile_id in profile_ids:
            self._drop(profile_id)

    def _drop(self, profile_id: str) -> tuple[str, dict[str, Any]] | None:
        kept = self._kept.pop(profile_id, None)
        if kept is not None:
            self._held -= len(kept[0]) * BYTES_PER_TEXT_BYTE
        return kept

    def __len__(self) -> int:
        return len(self._kept)
