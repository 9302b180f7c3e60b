"""A whole-store job's working set is let go of off the event loop, a slice at a time: freed at once
when the job's coroutine returned, half a million objects held the loop ~100 ms."""

from __future__ import annotations

import threading
from typing import Any

from app.services.key_groups import DROP_SLICE, let_go


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
