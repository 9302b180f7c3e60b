from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier, _plain_email, normalise, strongest


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
        # Found by an audit: E.164 has no extension, so colleagues behind one switchboard were one
        # identifier, and so one profile (each seeing the other's data).
        pytest.param("+1 212 555 0100 ext. 12", "+12125550100;ext=12", id="an extension"),
        pytest.param("+1 212 555 0100 #34", "+12125550100;ext=34", id="an extension after #"),
        pytest.param("+33612345678;ext=5", "+33612345678;ext=5", id="an extension as RFC 3966 writes it"),
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
        # Found by an audit: as custom types of their own, these split a customer over profiles and let
        # an erased person's id back in.
        pytest.param("customerID", "x", "did you mean 'customerId'", id="a known type in other case"),
        pytest.param("eMail", "x", "did you mean 'email'", id="email in other case"),
        # MongoDB refuses a NUL in a document's keys, and a merge record keys moved identities by theirs.
        pytest.param("anonymousId", "anon\x00x", "control character", id="a NUL"),
        pytest.param("customerId", "C\t1", "control character", id="a tab inside"),
    ],
)
def test_bad_identifiers_are_refused_naming_the_field(type_: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        normalise(type_, value, field="identifiers[2]")
    assert caught.value.field is not None
    assert caught.value.field.startswith("identifiers[2].")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("\ufeffCUST-9001", "CUST-9001", id="a byte-order mark before"),
        pytest.param("CUST-9001\u200b ", "CUST-9001", id="a zero-width space after"),
        pytest.param("Zoe\u0308-77", "Zo\u00eb-77", id="decomposed"),
        pytest.param("a\u200db", "a\u200db", id="a joiner inside is the value's own"),
    ],
)
def test_an_id_is_one_identifier_however_its_text_was_encoded(raw: str, expected: str) -> None:
    """Found by an audit: a spreadsheet's byte-order mark, a zero-width space copied with an id or a
    decomposed accent made another identifier of the same id, which let an erased person's id back in."""
    assert normalise("loyaltyId", raw) == Identifier("loyaltyId", expected)


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


# Characters and pieces that sit on either side of each rule of the shortcut (atext, host names,
# lengths, Punycode, special-use names, Unicode that normalises or combines).
_EMAIL_CHARACTERS = "aZ09.-@+_'{}~ \"<>\u00e9\u0301\uff41\x001"
_EMAIL_WORDS = ("--", "xn--", "com", "FR", "test", "local", "localhost", "arpa", "onion", "invalid", "x" * 63, "y" * 64)
_EMAIL_PIECES = st.sampled_from([*_EMAIL_CHARACTERS, *_EMAIL_WORDS])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_EMAIL_PIECES, max_size=12).map("".join) | st.text(max_size=30) | st.emails())
def test_plain_emails_are_judged_as_email_validator_judges_them(value: str) -> None:
    plain = _plain_email(value)
    try:
        expected: str | None = validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    if plain is not None:  # the shortcut only ever accepts, and only what email-validator accepts, as it would
        assert plain == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a@b.co", id="shortest"),
        pytest.param("First.Last+tag@Sub-Domain.Example.ORG", id="mixed-case"),
        pytest.param("o'brien{1}|~@x.fr", id="atext-symbols"),
        pytest.param("a@" + "b" * 63 + ".com", id="label-of-63"),
        pytest.param("a@" + "b" * 64 + ".com", id="label-of-64"),
        pytest.param("x" * 63 + "@" + ("b" * 62 + ".") * 3 + "co", id="255-long"),
        pytest.param("x" * 62 + "@" + ("b" * 62 + ".") * 3 + "co", id="254-long"),
        pytest.param("a@b.test", id="special-use"),
        pytest.param("a@b.LocalHost", id="special-use-upper"),
        pytest.param("a@xn--bcher-kva.de", id="punycode"),
        pytest.param("a@ab--cd.com", id="r-ldh"),
        pytest.param("a@b.c1", id="digit-tld"),
        pytest.param("a@-b.com", id="leading-hyphen"),
        pytest.param("a.@b.com", id="dot-before-at"),
        pytest.param("a@b", id="no-period"),
        pytest.param("info@Example.com", id="mailbox-name"),
        pytest.param("émile@exemple.fr", id="international"),
        pytest.param('"a b"@x.com', id="quoted"),
    ],
)
def test_an_email_normalises_as_email_validator_says(value: str) -> None:
    try:
        expected = Identifier("email", validate_email(value, check_deliverability=False).normalized.lower())
    except EmailNotValidError:
        with pytest.raises(InvalidInput, match="not a valid email"):
            normalise("email", value)
    else:
        assert normalise("email", value) == expected
