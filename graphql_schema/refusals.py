"""Requests refused before GraphQL runs (no key, too large, not JSON, the wrong method …), answered the
way GraphQL clients read errors: `{"errors": [{"message": …, "extensions": {"code": …}}]}` with the
HTTP status that says what went wrong, never `text/plain` and never a `data` entry."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

BAD_REQUEST = "BAD_REQUEST"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


class Refused(Exception):
    """Raised wherever a request turns out to be unanswerable; the view answers it with `response()`."""

    def __init__(
        self, status: int, message: str, *, code: str = BAD_REQUEST, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def response(self, media_type: str = "application/json") -> Response:
        return refusal(self.status, self.message, code=self.code, headers=self.headers, media_type=media_type)


def refusal(
    status: int,
    message: str,
    *,
    code: str = BAD_REQUEST,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media_type)
