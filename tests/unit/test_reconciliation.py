from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.profile import Address, Profile, new_profile
from app.domain.reconciliation import ReconciliationRules, Rule, reconciled_fields
from tests.builders import BASE_TIME


def _profile(pid: str, days: int, source: str, **fields: object) -> Profile:
    at = BASE_TIME + timedelta(days=days)
    profile = new_profile(pid, at).model_copy(update=fields)
    paths = [f"traits:{k}" for k in profile.traits] + [k for k in ("firstName", "lastName") if k in _camel(fields)]
    return profile.model_copy(
        update={"field_times": dict.fromkeys(paths, at), "field_sources": dict.fromkeys(paths, source)}
    )


def _camel(fields: dict[str, object]) -> set[str]:
    return {"firstName" if k == "first_name" else "lastName" if k == "last_name" else k for k in fields}


SURVIVOR = _profile("s", 1, "web", first_name="Em", last_name="Martin", traits={"tier": "silver"})
OLD_CRM = _profile("a", 0, "crm", first_name="Emma", last_name="Martin", traits={"tier": "gold"})
NEWER_FORM = _profile("b", 5, "mobile", first_name="Emmy", last_name="Martins", traits={"tier": "silver"})
EVERYONE = [SURVIVOR, OLD_CRM, NEWER_FORM]


@pytest.mark.parametrize(
    ("rule", "first_name", "tier"),
    [
        pytest.param(Rule.MOST_RECENT, "Emmy", "silver", id="most-recent"),
        pytest.param(Rule.OLDEST, "Emma", "gold", id="oldest"),
        pytest.param(Rule.SOURCE_PRIORITY, "Emma", "gold", id="source-priority-crm-first"),
        pytest.param(Rule.MOST_FREQUENT, "Emmy", "silver", id="most-frequent-then-newest"),
    ],
)
def test_each_rule_picks_its_value(rule: Rule, first_name: str, tier: str) -> None:
    rules = ReconciliationRules(by_field={"firstName": rule, "traits.*": rule}, default=rule)
    decisions = reconciled_fields(EVERYONE, rules)
    assert decisions["firstName"].value == first_name
    assert decisions["traits.tier"].value == tier


def test_most_frequent_prefers_the_value_most_profiles_agree_on() -> None:
    decisions = reconciled_fields(EVERYONE, ReconciliationRules(by_field={"lastName": Rule.MOST_FREQUENT}))
    assert decisions["lastName"].value == "Martin"


def test_union_keeps_every_distinct_address_survivor_first() -> None:
    lyon, paris = Address(city="Lyon"), Address(city="Paris")
    a = _profile("s", 1, "web", addresses=[lyon])
    b = _profile("b", 2, "web", addresses=[paris, lyon])
    decisions = reconciled_fields([a, b], ReconciliationRules())
    assert decisions["addresses"].value == [{"city": "Lyon"}, {"city": "Paris"}]


def test_missing_values_never_win_and_absent_fields_are_not_invented() -> None:
    empty = _profile("e", 9, "web")
    decisions = reconciled_fields([empty, OLD_CRM], ReconciliationRules())
    assert decisions["firstName"].value == "Emma"
    assert "company" not in decisions
