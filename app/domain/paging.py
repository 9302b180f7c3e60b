"""Which part of an ordered list a page is, as Relay's connection arguments ask for it (`first`/`after`
forward, `last`/`before` backward), and how a page is cut from what a store read for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Window(Generic[P]):
    """The items strictly after `after` and strictly before `before` (positions in the list's order;
    None: from the start, to the end), of which the page is the first `size`, or with `from_end` the
    last `size`. A store reads `size + 1` of them so that the page knows whether more lie beyond."""

    size: int
    after: P | None = None
    before: P | None = None
    from_end: bool = False

    @property
    def argument(self) -> str:
        return "last" if self.from_end else "first"

    def cut(self, read: Sequence[T]) -> Cut[T]:
        """The page from the items read for it in the list's order: from the start of the range (with
        `from_end`, up to its end), more than `size` of them when there are more. The side the page was
        not read towards is known from the cursors only: an `after` cursor says something precedes the
        page, a `before` cursor that something follows it (what Relay's spec allows)."""
        more = len(read) > self.size
        if self.from_end:
            return Cut(list(read[len(read) - self.size :] if more else read), self.before is not None, more)
        return Cut(list(read[: self.size]), more, self.after is not None)


@dataclass(frozen=True, slots=True)
class Cut(Generic[T]):
    items: list[T]
    has_next: bool
    has_previous: bool
