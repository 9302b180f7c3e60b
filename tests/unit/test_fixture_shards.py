"""The demo data's events cut into parts that share no person (app/services/fixture_shards.py)."""

from __future__ import annotations

import json
from pathlib import Path

from app.services.fixture_shards import event_groups


def _jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def _event(*identifiers: tuple[str, str]) -> dict[str, object]:
    return {"type": "page_view", "identifiers": [{"type": t, "value": v} for t, v in identifiers]}


def test_events_linked_directly_through_other_events_or_a_crm_profile_share_a_part(tmp_path: Path) -> None:
    profiles = _jsonl(tmp_path / "profiles.jsonl", [{"identifiers": [
        {"type": "email", "value": "ann@example.com"}, {"type": "phone", "value": "+442071838750"},
    ]}])  # fmt: skip
    events = _jsonl(
        tmp_path / "events.jsonl",
        [
            _event(("anonymousId", "visitor-1")),  # 1: Ann before she logs in
            _event(("email", "bob@example.com")),  # 2: Bob
            _event(("anonymousId", "visitor-1"), ("email", "Ann@Example.com")),  # 3: her login, her email as typed
            "",  # a blank line counts in the numbering, as read_lines counts it
            _event(("phone", "+44 20 7183 8750")),  # 5: her phone, as her CRM profile has it
            _event(("email", "bob@example.com")),  # 6: Bob again
            _event(("email", "cy@example.com")),  # 7: Cy
            "not json",  # 8: refused wherever it is read
        ],
    )
    parts = event_groups(events, profiles).parts(3)
    assert sorted(sorted(part) for part in parts) == [[1, 3, 5], [2, 6], [7, 8]]  # Ann's three whole; Bob's; Cy's
    assert 8 in parts[0]  # the line that holds no event, in the first part


def test_without_profiles_each_group_goes_whole_to_the_part_with_fewest_events(tmp_path: Path) -> None:
    events = _jsonl(
        tmp_path / "events.jsonl",
        [_event(("email", f"p{n % 5}@example.com")) for n in range(23)],  # five people: 5, 5, 5, 4, 4 events
    )
    parts = event_groups(events, None).parts(3)
    people = [{(n - 1) % 5 for n in part} for part in parts]
    assert sorted(len(part) for part in parts) == [5, 9, 9]
    assert sum(len(p) for p in people) == 5 and set().union(*people) == set(range(5))  # each person in one part


def test_a_line_joins_groups_only_when_it_names_keys_seen_apart_before_it(tmp_path: Path) -> None:
    profiles = _jsonl(tmp_path / "profiles.jsonl", [{"identifiers": [{"type": "email", "value": "ann@example.com"}]}])
    events = _jsonl(
        tmp_path / "events.jsonl",
        [
            _event(("anonymousId", "visitor-1")),  # 1: Ann, not logged in
            _event(("email", "bob@example.com"), ("customerId", "B1")),  # 2: two keys met first here
            _event(("anonymousId", "visitor-1"), ("email", "Ann@Example.com")),  # 3: her visit and her CRM profile
            _event(("email", "bob@example.com"), ("deviceId", "phone-b")),  # 4: a known key and a new one
            _event(("anonymousId", "visitor-1"), ("email", "ann@example.com")),  # 5: one group already
        ],
    )
    groups = event_groups(events, profiles)
    assert groups.joins == {3}
    assert groups.group_of[1] == groups.group_of[5] != groups.group_of[2] == groups.group_of[4]


def test_each_groups_lines_from_its_first_join_go_after_the_others_in_their_order(tmp_path: Path) -> None:
    events = _jsonl(
        tmp_path / "events.jsonl",
        [
            _event(("anonymousId", "visitor-1")),  # 1: Ann
            _event(("email", "ann@example.com")),  # 2: Ann, not yet known as the visitor
            _event(("email", "bob@example.com")),  # 3: Bob
            _event(("anonymousId", "visitor-1"), ("email", "ann@example.com")),  # 4: Ann's login: a merge
            _event(("email", "cy@example.com")),  # 5: Cy
            _event(("anonymousId", "visitor-1")),  # 6: Ann after the merge
            _event(("email", "bob@example.com")),  # 7: Bob
            _event(("email", "ann@example.com")),  # 8: Ann
        ],
    )
    groups = event_groups(events, None)
    assert groups.ingestion_order([1, 2, 3, 4, 5, 6, 7, 8]) == [1, 2, 3, 5, 7, 4, 6, 8]
    # Within a batch that holds no join of hers, her lines keep their place.
    assert groups.ingestion_order([5, 6, 7, 8]) == [5, 6, 7, 8]
    assert groups.ingestion_order([]) == []
