"""CPU work that would hold the event loop: done at once when there is little of it, on a worker
thread when there is enough (a batch's events, its thousand results, a segment's profiles).

A hop to a thread costs a wake-up and a turn of the loop: a few items are done sooner at once than a
busy loop would get back to them. What the threads run interleaves with the loop (the GIL is handed
over every fraction of a millisecond while serving, app/collector.py), except a single C call that
holds the GIL (decoding JSON), which no thread can spare the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(large: bool, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)`: on a worker thread (the loop's default executor) when `large`,
    else at once, without yielding to the loop."""
    if large:
        return await asyncio.to_thread(function, *args, **kwargs)
    return function(*args, **kwargs)
