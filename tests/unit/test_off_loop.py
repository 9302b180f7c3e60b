"""`off_loop`: a little work at once on the caller's thread, a lot on a worker thread; the answer and
any error come back the same way either way."""

from __future__ import annotations

import threading

import pytest

from app.off_loop import off_loop


def _where(value: int, *, twice: bool = False) -> tuple[int, int]:
    return threading.get_ident(), value * 2 if twice else value


def _refuse(message: str) -> None:
    raise ValueError(message)


async def test_a_little_work_runs_at_once_on_the_callers_thread() -> None:
    ident, value = await off_loop(False, _where, 21, twice=True)
    assert ident == threading.get_ident() and value == 42


async def test_a_lot_of_work_runs_on_a_worker_thread() -> None:
    ident, value = await off_loop(True, _where, 21, twice=True)
    assert ident != threading.get_ident() and value == 42


@pytest.mark.parametrize("large", [False, True])
async def test_an_error_comes_back_to_the_caller(large: bool) -> None:
    with pytest.raises(ValueError, match="no such thing"):
        await off_loop(large, _refuse, "no such thing")
