"""Segments are compiled once per condition (app/domain/segments/upkeep.py): a segment read again
gets the same compiled tree, and a changed condition, trait declaration or purpose a new one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.domain.segments.segment import Segment
from app.domain.segments.upkeep import compile_segment

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _segment(condition: dict[str, Any], **fields: Any) -> Segment:
    return Segment.model_validate({"_id": "s", "name": "S", "condition": condition, "createdAt": AT,
                                   "updatedAt": AT, **fields})  # fmt: skip


VIP = {"compare": {"path": "rfm.segment", "op": "eq", "value": "Champions"}}


def test_a_segment_read_again_is_not_compiled_again() -> None:
    first, again = compile_segment(_segment(VIP)), compile_segment(_segment(dict(VIP)))
    assert again.holds is first.holds and again.tree is first.tree


def test_what_changes_the_condition_compiles_anew() -> None:
    base = compile_segment(_segment(VIP))
    other_value = compile_segment(_segment({"compare": {**VIP["compare"], "value": "Loyal"}}))
    with_purpose = compile_segment(_segment(VIP, purpose="marketing"))
    assert other_value.tree != base.tree
    assert with_purpose.tree != base.tree and "marketing" in repr(with_purpose.tree)
    assert compile_segment(_segment(VIP, name="Renamed")).segment.name == "Renamed"  # the segment is the one given
