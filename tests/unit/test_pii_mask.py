"""Masking free text at the size events may hold it: an address or a number anywhere in 8 KB of text
is still found once each part of an address is bounded as addresses are (what made text built to
try every start, 4,000 letters either side of an `@` and no dot, take 230-320 ms to mask; 4-5 ms
now: measured, not asserted)."""

from __future__ import annotations

from app.domain.pii_mask import is_personal_value, mask_personal

FILLER = "lorem ipsum " * 330  # about 4 KB of text around what is looked for


def test_an_address_in_long_text_is_masked_wherever_it_is() -> None:
    text = f"{FILLER}write to jane.doe@example.co.uk or call +33 6 12 34 56 78 {FILLER}"
    masked = mask_personal({"note": text})["note"]
    assert "jane.doe@" not in masked and "j***@example.co.uk" in masked
    assert "12 34 56" not in masked and masked.startswith(FILLER) and masked.endswith(FILLER)


def test_text_that_only_looks_like_the_start_of_an_address_is_left_as_it_is() -> None:
    for text in ("a" * 4000 + "@" + "b" * 4000, "a" * 4000 + "%40" + "b" * 4000):
        assert mask_personal({"note": text}) == {"note": text}  # no dot: no address
    # A local part longer than any address has (64) is masked from where an address could begin.
    long_local = "x" * 100 + "@example.com"
    masked = mask_personal({"note": long_local})["note"]
    assert masked.endswith("***@example.com") and len(masked) < len(long_local)
    assert is_personal_value("a" * 4000 + "@")


def test_a_national_number_in_a_sentence_is_masked_and_a_bare_code_is_not() -> None:
    """Found by an audit: a support note's "call me on 06 12 34 56 78" reached keys without read:pii,
    where "+33 6 12 34 56 78" was masked."""
    for text, number in [
        ("call me on 06 12 34 56 78 please", "12 34 56"),
        ("ring 07700 900123 after six", "7700 9001"),
        ("office: 020 7946 0958", "7946 09"),
        ("my cell is (555) 123-4567", "123-45"),
        ("or 555-123-4567, evenings", "123-45"),
        ("on 0612345678 tomorrow", "061234567"),
    ]:
        masked = mask_personal({"note": text})["note"]
        assert number not in masked and "*" in masked and masked.split()[0] == text.split()[0], masked
        assert is_personal_value(text)
    # Codes, dates, amounts and lone digits are no one's number (a barcode, an order's date).
    for text in ["0012345678905", "delivered 03.12.2026 at 14:05", "total 1,234,567.89 euros", "ref 123456789 ok",
                 "ean 4006381333931", "https://shop.example/p/0612345678"]:  # fmt: skip
        assert mask_personal({"note": text}) == {"note": text}
        assert not is_personal_value(text)
