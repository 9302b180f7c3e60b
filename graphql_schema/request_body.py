"""Reading what a client sent: a request body bounded in bytes and in JSON values, JSON decoded so that
no input can crash the decoder, and the GraphQL-over-HTTP request shape checked, each mistake a 4xx
naming it.

orjson reads the usual body; the standard library reads again what orjson refuses, because orjson
refuses a whole document for one escaped lone surrogate ("\\ud800"), NaN or a huge integer, and
ingestion judges such a value per event (one bad event must not fail its batch). What the standard
decoder can crash on (nesting past the recursion limit, an integer past Python's digit limit, bytes
that are not UTF-8) is turned into the same JSONDecodeError as any other malformed text, which every
caller already handles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Message, Receive
from strawberry.http import GraphQLRequestData

from graphql_schema.limits import LIMIT_EXCEEDED
from graphql_schema.refusals import Refused

JSON = "application/json"
# Decoding makes one Python object per JSON value, holding the event loop (and the GIL) all the while:
# 100,000 one-letter strings take ~10 ms. A 1,000-event batch holds ~9,000; values are counted by their
# separators before anything is decoded.
MAX_JSON_VALUES = 50_000


class TooManyValues(json.JSONDecodeError):
    pass


class BodyTooLarge(Exception):
    pass


def bounded(receive: Receive, limit: int) -> Receive:
    """The request body as sent, refused past `limit` bytes even without a Content-Length."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge
        return message

    return bounded


# Every digit as 0, anything else as a space: a run of 19 digits is then a plain substring search, ~7
# times faster than a regular expression over a batch's body (0.5 ms for 1,000 events, not 3.4).
# 19: below -2**63 orjson reads a float too, and -9999999999999999999 has 19 digits.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def _has_long_digits(data: str | bytes) -> bool:
    raw = data if isinstance(data, bytes | bytearray) else data.encode("utf-8", "surrogatepass")
    return _LONG_RUN in raw.translate(_DIGITS_AS_ZEROS)


def decode_json(data: str | bytes) -> object:
    """`data` as JSON (UTF-8); json.JSONDecodeError, with a message for the client, for anything else.
    orjson reads the usual body (about six times faster: a 1 MiB body holds the loop ~1 ms, not ~6);
    what it refuses is read again by the standard library, which keeps what ingestion must judge per
    event rather than per request (NaN, Infinity, escaped lone surrogates, integers past 64 bits)."""
    separators = data.count(b",") if isinstance(data, bytes | bytearray) else data.count(",")
    if separators >= MAX_JSON_VALUES:
        raise TooManyValues(f"more than {MAX_JSON_VALUES:,} JSON values: send smaller batches", "", 0)
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        # orjson reads an integer of 2**64 or more (or below -2**63) as a float, silently: `orderRef:
        # 2**70` was stored as 1.1805916207174113e+21 and ACCEPTED. Such a literal has 19 digits or more
        # (so has a long digit run in a string, read again for nothing); the standard decoder keeps it
        # whole, to be refused.
        if not _has_long_digits(data):
            return decoded
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8 text", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deep", "", 0) from None
    except ValueError:  # the only other one: an integer literal past Python's digit limit
        raise json.JSONDecodeError("a number with too many digits", "", 0) from None


def from_post(content_type: str | None, body: bytes, content_encoding: str | None = None) -> GraphQLRequestData:
    """The operation a POST's JSON body describes."""
    if content_encoding and content_encoding.strip().lower() != "identity":  # a gzip body read "not UTF-8 text"
        raise Refused(
            415,
            f"request bodies are read as sent: send it without Content-Encoding ({content_encoding}); "
            "answers are compressed when the request says Accept-Encoding",
        )
    media, _, parameters = (content_type or "").partition(";")
    if media.strip().lower() != JSON:
        raise Refused(415, f"send the request as {JSON} (Content-Type: {content_type or 'none'})")
    charset = parameters.strip().lower().removeprefix("charset=").strip('"')
    if parameters.strip() and charset not in ("utf-8", "utf8"):
        raise Refused(415, f"send the request as UTF-8 {JSON} (Content-Type: {content_type})")
    try:
        return _request_data(decode_json(body))
    except TooManyValues as exc:
        raise Refused(413, f"the request body holds {exc.msg}", code=LIMIT_EXCEEDED) from None
    except json.JSONDecodeError as exc:
        raise Refused(400, f"the request body is not JSON ({exc.msg})") from None


def from_query(params: Mapping[str, str]) -> GraphQLRequestData:
    """The operation a GET's query string describes (`variables` and `extensions` as JSON text)."""
    fields: dict[str, object] = dict(params)
    for name in ("variables", "extensions"):
        text = fields.pop(name, None)
        if isinstance(text, str) and text:
            try:
                fields[name] = decode_json(text)
            except json.JSONDecodeError as exc:
                raise Refused(400, f"the {name} parameter is not JSON ({exc.msg})") from None
    return _request_data(fields)


def _request_data(params: object) -> GraphQLRequestData:
    if isinstance(params, list):
        raise Refused(400, "batches are not accepted: send one operation per request, as a JSON object")
    if not isinstance(params, Mapping):
        raise Refused(400, 'the request must be a JSON object: {"query": "…", "variables": {…}}')
    query = params.get("query")
    extensions = _optional(params, "extensions", dict, "an object")
    persisted = query is None and extensions is not None and extensions.get("persistedQuery") is not None
    if not persisted and (not isinstance(query, str) or not query.strip()):
        raise Refused(400, 'the request has no GraphQL document: send {"query": "…"}')
    return GraphQLRequestData(
        query=query,  # None: named by its hash (graphql_schema/persisted_queries.py)
        variables=_optional(params, "variables", dict, "an object"),
        operation_name=_optional(params, "operationName", str, "a string"),
        extensions=extensions,
    )


def _optional(params: Mapping[str, Any], name: str, kind: type, described: str) -> Any:
    value = params.get(name)
    if value is not None and not isinstance(value, kind):
        raise Refused(400, f"{name} must be {described} (or absent)")
    return value
