"""Domain errors. Each carries a stable code that the transport maps to `extensions.code`."""

from __future__ import annotations


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
