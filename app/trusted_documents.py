"""The manifest of trusted documents (CDP_TRUSTED_DOCUMENTS): with it, the only GraphQL documents the
server runs. Read at start (a manifest that cannot be used is a bad setting, one line, before anything
opens), in either of the shapes build tools write: Apollo's persisted query manifest
(`{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "body", …}]}`) or
an object of id → document (Relay's `persistConfig` output, and most others)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APOLLO_FORMAT = "apollo-persisted-query-manifest"


def document_hash(text: str) -> str:
    """What Apollo's persisted queries name a document by: the SHA-256 of its text, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TrustedDocuments:
    by_id: Mapping[str, str]  # each document under its manifest id and under its SHA-256
    texts: frozenset[str]

    def __len__(self) -> int:
        return len(self.texts)


def read_manifest(path: Path) -> TrustedDocuments:
    """The documents of the manifest at `path`; ValueError saying what is wrong with it."""
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the manifest: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the manifest is not JSON ({exc})") from None
    if isinstance(manifest, dict) and manifest.get("format") == APOLLO_FORMAT:
        operations = manifest.get("operations")
        if manifest.get("version") != 1 or not isinstance(operations, list):
            raise ValueError(f"an {APOLLO_FORMAT} of version 1 holds a list of operations")
        entries = [(o.get("id"), o.get("body")) if isinstance(o, dict) else (None, None) for o in operations]
    elif isinstance(manifest, dict):
        entries = list(manifest.items())
    else:
        raise ValueError(f"expected an {APOLLO_FORMAT} or an object of id -> document")
    by_id: dict[str, str] = {}
    for index, (key, text) in enumerate(entries):
        if not isinstance(key, str) or not key or not isinstance(text, str) or not text.strip():
            raise ValueError(f"entry {index + 1}: each document needs a non-empty id and GraphQL text")
        by_id[key] = by_id[document_hash(text)] = text
    if not by_id:
        raise ValueError("the manifest holds no documents: the server would refuse every request")
    return TrustedDocuments(by_id, frozenset(by_id.values()))
