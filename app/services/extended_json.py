"""Read MongoDB Extended JSON lines (the fixtures' format, the one `mongoimport` reads) without a
driver: only the wrappers our files use (`$date`, `$numberLong`, `$numberDecimal`, `$oid`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$date":
                text = inner["$numberLong"] if isinstance(inner, dict) else inner
                if isinstance(text, str) and not text.lstrip("-").isdigit():
                    return datetime.fromisoformat(text.replace("Z", "+00:00"))
                return datetime.fromtimestamp(int(text) / 1000).astimezone()
            if key == "$numberLong":
                return int(inner)
            if key == "$numberDecimal":
                return float(inner)
            if key == "$oid":
                return str(inner)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield decode(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc})") from None
