from __future__ import annotations

import pytest

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier, normalise, strongest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("  Emma.Martin@Example.COM ", "emma.martin@example.com", id="case-and-spaces"),
        pytest.param("jo+news@sub.example.org", "jo+news@sub.example.org", id="plus-address-kept"),
    ],
)
def test_emails_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalise("email", raw) == Identifier("email", expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("+33 6 12 34 56 78", "+33612345678", id="fr-spaced"),
        pytest.param("+33 (0)6 12-34-56-78", "+33612345678", id="fr-trunk-zero"),
        pytest.param("+44 7911 123456", "+447911123456", id="gb"),
        pytest.param("+1 (415) 555-2671", "+14155552671", id="us-punctuation"),
    ],
)
def test_phones_become_e164(raw: str, expected: str) -> None:
    assert normalise("phone", raw).value == expected


def test_national_phone_needs_a_region_and_then_normalises() -> None:
    with pytest.raises(InvalidInput, match="international form"):
        normalise("phone", "06 12 34 56 78")
    assert normalise("phone", "06 12 34 56 78", default_region="FR").value == "+33612345678"


@pytest.mark.parametrize(
    ("type_", "value", "message"),
    [
        pytest.param("email", "not-an-email", "not a valid email", id="malformed-email"),
        pytest.param("email", "a@b", "not a valid email", id="email-without-tld"),
        pytest.param("phone", "+33 1", "not a valid phone", id="short-phone"),
        pytest.param("phone", "call me", "not a valid phone", id="words"),
        pytest.param("email", "   ", "must not be empty", id="blank"),
        pytest.param("Bad Type", "x", "unknown identifier type", id="bad-type"),
        pytest.param("customerId", "x" * 300, "longer than", id="too-long"),
    ],
)
def test_bad_identifiers_are_refused_naming_the_field(type_: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        normalise(type_, value, field="identifiers[2]")
    assert caught.value.field is not None
    assert caught.value.field.startswith("identifiers[2].")


def test_custom_identifier_types_are_kept_verbatim() -> None:
    assert normalise("shopifyId", " 12345 ").key == "shopifyId:12345"


def test_strength_order_prefers_customer_id_then_email_then_phone() -> None:
    ids = [
        Identifier("anonymousId", "a"),
        Identifier("shopifyId", "s"),
        Identifier("phone", "+33612345678"),
        Identifier("email", "e@x.com"),
    ]
    assert strongest(ids).type == "email"
    assert strongest([*ids, Identifier("customerId", "C1")]).type == "customerId"
    assert strongest([Identifier("anonymousId", "a"), Identifier("shopifyId", "s")]).type == "shopifyId"
