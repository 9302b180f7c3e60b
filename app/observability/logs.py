"""Structured logs: one JSON object per line, each carrying the id of the request it belongs to
(`X-Request-Id`, taken from the client when sane, else made here, and echoed in the response)."""

from __future__ import annotations

import json
import logging
import os
import random
import re
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")


# Request ids are not secrets: 64 bits of a generator seeded once from the system's randomness (a
# stream per process). os.urandom for each request let go of the GIL in its system call, and while
# the store's threads were busy the loop then waited up to a switch interval to get it back: the
# request-id line was where the loop most often stood in its long stalls under bench/serving.py's
# mixed load.
_ids = random.Random(os.urandom(16))


def accept_or_make(offered: str | None) -> str:
    """The client's request id when it is a short plain token, else a new one (ids end up in logs)."""
    return offered if offered and _SANE_ID.match(offered) else f"{_ids.getrandbits(64):016x}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which of the server's processes (workers, bulk processes) wrote it
        }
        if (current := request_id.get()) is not None:
            line["requestId"] = current
        for key in ("method", "path", "status", "durationMs", "errorId"):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """One line per record, as a terminal shows it: control characters of the message escaped. A
    request's path is logged URL-decoded, so `/graphql%0a2026-12-02 ERROR …` wrote a second, forged
    line, without a key. (A traceback, appended after the message, keeps its lines.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], record.message)
        return super().formatMessage(record)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class WithoutQueryStrings(logging.Filter):
    """uvicorn's WebSocket access line names the path with its query string (`/graphql?email=…`), where
    the HTTP access line (ours) logs the path alone: the query string is left out of it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"') and isinstance(args, tuple):
            record.args = tuple(a.split("?", 1)[0] if i == 1 and isinstance(a, str) else a for i, a in enumerate(args))
        return True


class WithoutWebSocketFrames(logging.Filter):
    """The WebSocket library's DEBUG lines: each handshake's request line (its query string) and
    headers (the Authorization key, cookies), and the start and end of every frame (connection_init's
    key, a subscription's variables, the profiles it is sent). uvicorn gives the library its own
    `uvicorn.error` logger, so a level set on the library's logger does not reach them: they are told
    by where they were written."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or _WEBSOCKETS_CODE not in record.pathname


_WEBSOCKETS_CODE = f"{os.sep}websockets{os.sep}"  # the library's modules, and uvicorn's protocols/websockets


def configure(level: str, fmt: str) -> None:
    """`fmt` "json" (one object per line) or "text" (for a developer's terminal)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(WithoutQueryStrings())
    handler.addFilter(WithoutWebSocketFrames())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The WebSocket library logs every handshake header and frame at DEBUG: the Authorization header
    # and connection_init's token with them. Never below INFO, whatever the server's level.
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))
