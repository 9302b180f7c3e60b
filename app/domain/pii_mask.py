"""Masked personal data, for callers without the `read:pii` scope: enough to recognise a record
(`j***@example.com`, `+33*******78`, `E***`), never enough to contact or identify the person."""

from __future__ import annotations

MASK = "***"


def mask_text(value: str | None) -> str | None:
    """Names, streets, cities: the first letter, then a fixed mask (the length is not revealed)."""
    return None if value is None else (value[:1] + MASK if value else value)


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}{MASK}@{domain}"


def mask_phone(value: str) -> str:
    """Country code and the last two digits: `+33612345678` → `+33*******78`."""
    keep = 3 if value.startswith("+") else 0
    return value[:keep] + "*" * max(0, len(value) - keep - 2) + value[-2:]


def mask_identifier(type_: str, value: str) -> str:
    if type_ == "email":
        return mask_email(value)
    if type_ == "phone":
        return mask_phone(value)
    return value  # customer ids, device and anonymous ids are pseudonymous keys, not personal data
