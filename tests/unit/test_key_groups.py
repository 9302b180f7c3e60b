"""What the whole-store matching jobs keep (app/services/key_groups.py): the pairs handed out, in
many small sets, and their working set let go of off the event loop, a slice at a time (freed at
once when the job's coroutine returned, half a million objects held the loop ~100 ms)."""

from __future__ import annotations

import threading
from typing import Any

from app.services.key_groups import DROP_SLICE, SeenPairs, let_go


class Freed:
    """Records which thread freed it."""

    def __init__(self, log: list[int]) -> None:
        self.log = log

    def __del__(self) -> None:
        self.log.append(threading.get_ident())


async def test_a_jobs_working_set_is_freed_on_another_thread_than_the_loop() -> None:
    freed: list[int] = []
    count = DROP_SLICE * 2 + 7  # more than one slice of each
    as_dict: dict[int, Any] = {n: Freed(freed) for n in range(count)}
    as_set: set[Any] = {Freed(freed) for _ in range(count)}
    as_list: list[Any] = [Freed(freed) for _ in range(count)]
    await let_go(as_dict, as_set, as_list)
    assert as_dict == {} and as_set == set() and as_list == []
    assert len(freed) == 3 * count
    assert threading.get_ident() not in set(freed)


def test_each_pair_is_new_once_however_many_sets_hold_them() -> None:
    seen = SeenPairs()
    pairs = [(f"a{n}", f"b{n % 97}") for n in range(5000)]
    assert all(seen.add(pair) for pair in pairs)
    assert not any(seen.add(pair) for pair in pairs)
    assert len(seen) == len(pairs) == sum(len(part) for part in seen.sets)
    assert sum(1 for part in seen.sets if part) > 1
