"""Domain errors. Each carries a stable code that the transport maps to `extensions.code`."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


class DomainError(Exception):
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Input that breaks a rule; `field` names the offending path (e.g. `identifiers[0].value`)."""

    code = "BAD_USER_INPUT"


class LimitExceeded(InvalidInput):
    code = "LIMIT_EXCEEDED"


class Unauthenticated(DomainError):
    """No credentials, or credentials that are not (or no longer) valid."""

    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    """Valid credentials without the scope the operation needs."""

    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    """A concurrent writer changed the data first (optimistic `version` check lost)."""

    code = "CONFLICT"


class StoreUnavailable(DomainError):
    code = "STORE_UNAVAILABLE"


def first_problem(exc: ValidationError, *, prefix: str = "", names: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The first error of a validation as the API says it: where, in the input's own terms (after
    `prefix`, each field by its name in `names` when there, an item as `[i]`: `addresses[0].country`,
    not `addresses.0.country`; "" for the whole input), and what, without the `Value error, `
    pydantic puts before a validator's own words."""
    error = exc.errors()[0]
    path = prefix
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{(names or {}).get(part, part)}"
    return path, str(error["msg"]).removeprefix("Value error, ")
