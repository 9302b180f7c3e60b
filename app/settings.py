"""Server settings, read from `CDP_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, StrictInt, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.command_line import app_command
from app.domain.errors import InvalidInput
from app.domain.event_limits import MAX_STORED_DEPTH, EventLimits
from app.domain.identifiers import checked_type, misspelt_type
from app.domain.merge_protection import DEFAULT_BLOCKLIST, DEFAULT_LIMITS, MergeProtection, blocklisted
from app.domain.privacy import DEFAULT_PURPOSES
from app.domain.reconciliation import RECONCILED_FIELDS, ReconciliationRules, Rule
from app.domain.segments.catalogue import is_purpose
from app.services.identity_policy import IdentityPolicy
from app.services.profiles import SOURCE
from app.services.review_list import MAX_REVIEW_PAIRS
from app.services.segments import MAX_SEGMENTS
from app.trusted_documents import read_manifest

EMBEDDED_DATABASE_URL = "sqlite:///data/cdp.sqlite3"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or `taskset`'s share, where the system says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class Settings(BaseSettings):
    # Every number finite: `inf` got past the bounds of the periods (CDP_BACKUP_EVERY_HOURS=inf) and the
    # server failed to start with an OverflowError instead of a bad-setting line.
    model_config = SettingsConfigDict(env_prefix="CDP_", env_file=".env", extra="ignore", allow_inf_nan=False)

    database_url: str = Field(
        default=EMBEDDED_DATABASE_URL,
        description="Unset: the embedded SQLite file data/cdp.sqlite3. mongodb://… : MongoDB (a replica set).",
    )
    # What MongoDB takes as a database name (pymongo's InvalidName was a traceback from every command).
    mongodb_database: str = Field(default="cdp", pattern=r'^[^/\\. "$*<>:|?\x00]{1,63}$')
    # Not empty: uvicorn reads "" as every interface (0.0.0.0 and ::), where the default is this machine only.
    host: str = Field(default="127.0.0.1", min_length=1, pattern=r"^\S+$")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins other than the server's own allowed to call the API "
        "(https://app.example.com, comma-separated); `*`: any origin, without credentials. Unset: same origin only.",
    )
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(
        default_factory=usable_cpus,
        ge=1,
        le=256,
        description="Server processes sharing the port, each with its own event loop (default: one per usable "
        "CPU); 1: a single process.",
    )
    environment: Literal["development", "production"] = "development"
    seed_fixtures: bool = Field(default=True, description="Load fixtures/ into an empty embedded store on start.")
    fixtures_dir: Path = Path("fixtures")
    max_batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_page_size: int = Field(default=100, ge=1, le=1000)
    max_review_pairs: int = Field(
        default=MAX_REVIEW_PAIRS,
        ge=1,
        description="The most pairs the whole-store merge candidate list holds (mergeCandidatePairs); "
        "asking for more, at a low minScore, is refused.",
    )
    max_segments: int = Field(
        default=MAX_SEGMENTS,
        ge=1,
        le=10_000,
        description="The most segments a store holds: every profile change is evaluated against each segment "
        "its change can affect, so a store of thousands made each small write cost tens of milliseconds.",
    )
    idempotency_ttl_days: int = Field(default=30, ge=1, le=3650)  # past a date the calendar holds: OverflowError
    # Event data (README "Limits"): an event past one is REJECTED naming the field; its batch goes on.
    max_event_properties_bytes: int = Field(
        default=65_536, ge=1024, le=1_048_576, description="An event's properties as compact UTF-8 JSON."
    )
    max_event_string_length: int = Field(
        default=8_192, ge=64, le=1_048_576, description="Any string or key in an event's properties (characters)."
    )
    max_event_depth: int = Field(
        default=16, ge=3, le=MAX_STORED_DEPTH, description="Nesting of an event's properties (the object is level 1)."
    )
    max_event_array_items: int = Field(default=1_000, ge=1, le=100_000, description="Items in any list of properties.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    shutdown_grace_seconds: int = Field(
        default=20, ge=1, description="On SIGTERM: how long in-flight requests may take before the server stops."
    )
    log_format: Literal["json", "text"] | None = Field(
        default=None, description="Unset: json in production, text in development."
    )
    # Hostile queries (README "Limits"): refused before execution with the code LIMIT_EXCEEDED.
    max_query_depth: int = Field(default=12, ge=2, le=100)
    max_query_aliases: int = Field(default=30, ge=0, le=10_000)
    max_query_tokens: int = Field(default=2000, ge=50, le=1_000_000)
    max_query_cost: int = Field(default=10_000, ge=10, description="Fields counted with page sizes multiplied down.")
    max_query_length: int = Field(
        default=65_536, ge=1024, le=1_048_576, description="Characters of document text, refused before parsing."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger request bodies get 413.")
    bulk_bytes: int = Field(
        default=65_536,
        ge=0,
        description="A POST whose body is at least this big (a batch of events) is answered by the serving "
        "process's bulk process, started with the first, so that its work never holds the serving process's "
        "reads (app/bulk_process.py); 0: every request answered in the serving process.",
    )
    introspection: bool | None = Field(default=None, description="Unset: on in development, off in production.")
    compiled_execution: bool = Field(
        default=True,
        description="Documents that allow it run without graphql-core's per-field interpretation "
        "(graphql_schema/compiled.py). Off: graphql-core runs everything.",
    )
    apq_cache_size: int = Field(
        default=1000,
        ge=0,
        le=100_000,
        description="Documents each process remembers by hash for Apollo's automatic persisted queries (least "
        "recently used dropped first); 0: persisted queries off (clients are told PersistedQueryNotSupported).",
    )
    trusted_documents: Path | None = Field(
        default=None,
        description="A JSON manifest of the only documents the server runs (Apollo's persisted query manifest, or "
        "an object of id -> document): any other document, or unknown hash, is refused.",
    )
    ws_init_timeout_seconds: float = Field(default=3.0, gt=0, le=60, description="connection_init wait (4408).")
    ws_compression: bool = Field(
        default=False,
        description="permessage-deflate for WebSocket clients that offer it: smaller frames, but each one "
        "compressed for its own connection, a quarter of the CPU of sending a change to many subscribers "
        "(off: the same bytes go to every subscriber of a group, graphql_schema/broadcast.py).",
    )
    max_subscriptions_per_connection: int = Field(default=20, ge=1, le=1000)
    max_subscription_documents_per_key: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Different documents one key's WebSocket operations may run at once on a server process "
        "(any number of operations of them), and different (document, variables) of its subscriptions watching "
        "one segment or profile: each is executed for every change its subscribers hear.",
    )
    auth: bool = Field(
        default=True,
        description="API keys required (Authorization: Bearer). CDP_AUTH=off: local use only, refused "
        "unless the server listens on a loopback address.",
    )
    key_check_seconds: float = Field(
        default=2.0, gt=0, le=60, description="How often each process looks for revoked keys to close their sockets."
    )
    key_cache_size: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Verified API keys each process remembers (least recently used dropped first); 0: none.",
    )
    key_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long a verified key is remembered at most; a revoked one is dropped at once anyway.",
    )
    development_key_file: Path | None = Field(
        default=None,
        description="Development on a loopback address: where the local all-scopes key is kept (mode 600); "
        "default: beside the embedded database, or data/dev-api-key.",
    )
    # Identity resolution (README "Identity resolution"). JSON in the environment, e.g.
    # CDP_MERGE_LIMITS='{"customerId": 1, "email": 3}'.
    auto_merge: bool = Field(default=True, description="Merge profiles that one event's identifiers link.")
    merge_limits: Annotated[dict[str, StrictInt], NoDecode] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    merge_blocklist: Annotated[list[str], NoDecode] = Field(default_factory=lambda: sorted(DEFAULT_BLOCKLIST))
    merge_rules: Annotated[dict[str, Rule], NoDecode] = Field(
        default_factory=dict, description="Per field; addresses default to UNION."
    )
    merge_default_rule: Rule = Rule.MOST_RECENT
    merge_source_priority: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ReconciliationRules().source_priority)
    )
    consent_purposes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_PURPOSES), description="What setConsent accepts, e.g. '[\"ads\"]'."
    )
    instance_name: str = Field(
        default_factory=socket.gethostname,
        description="This server process among several on one MongoDB (its change-stream resume point).",
    )
    segment_check_seconds: float = Field(
        default=5.0, gt=0, description="How often time-window segment exits are looked for (they are due-dated)."
    )
    segment_history_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Days segment membership changes are kept (segmentHistory); each profile's newest entry into "
        "each segment that exists is kept whatever its age (segmentMemberships' `since`). Unset: every change kept.",
    )
    fuzzy_merge_score: float | None = Field(
        default=None, gt=0, le=1, description="Merge fuzzy look-alikes scoring at least this; unset: never."
    )
    households_apart: bool = Field(
        default=True,
        description="A write whose given name and birth date are both another person's than those of the profile "
        "an email or a phone of it names (a family mailbox, a landline) goes to a profile of its own.",
    )
    traits_every_minutes: float = Field(
        default=60, ge=0, description="Recompute computed traits (RFM, engagement, …) this often; 0: never."
    )
    # Off by default: on stores of our own generated population (households, twins, shared homes) the
    # learned weights, through the API, list pairs of one household's members that the rules scorer
    # does not (1,500 people, seeds 6 and 7: 4 and 3 wrong pairs, against 1 and 0; 2026-12-07), while
    # on FEBRL they find many more true pairs (F1 0.985-0.990 vs 0.878-0.916 on FEBRL1-4). Opt in
    # (README, "Learned weights").
    match_model_every_minutes: float = Field(
        default=0,
        ge=0,
        description="Re-estimate the learned match model from the store's candidate pairs this often; 0: never.",
    )
    recommendations_exclude_days: int = Field(
        default=30, ge=0, description="Products the customer bought within this many days are not recommended."
    )
    backup_dir: Path | None = Field(
        default=None, description="Back up the embedded store into this folder on a schedule; unset: never."
    )
    backup_every_hours: float = Field(default=24, gt=0, description="With CDP_BACKUP_DIR: how often.")
    backup_keep: int = Field(default=7, ge=1, description="With CDP_BACKUP_DIR: the newest backups kept.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _a_level(cls, value: object) -> object:
        # Python's logging takes these in any case, and WARN for WARNING; anything else stopped the
        # server after it had started ("Unknown level").
        if isinstance(value, str):
            value = value.strip().lower()
            return "warning" if value == "warn" else value
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database_url(cls, url: str) -> str:
        """Refused here, before anything starts, rather than by the store when the first request needs it."""
        if url.startswith("sqlite:///") and url.removeprefix("sqlite:///").strip():
            return url
        if url.startswith(("mongodb://", "mongodb+srv://")) and url.split("://", 1)[1].strip(" /"):
            return url
        raise ValueError("use sqlite:///<file> (e.g. sqlite:///data/cdp.sqlite3) or mongodb://<host>/…")

    @field_validator("backup_dir")
    @classmethod
    def _backups_of_the_embedded_store(cls, folder: Path | None, info: ValidationInfo) -> Path | None:
        """The server backs up the embedded store only: a MongoDB deployment has its own tools."""
        url = info.data.get("database_url", "")
        if folder is not None and not str(url).startswith("sqlite:///"):
            raise ValueError("scheduled backups are for the embedded store; back up MongoDB with mongodump")
        return folder

    @field_validator("development_key_file")
    @classmethod
    def _a_file(cls, path: Path | None) -> Path | None:
        # A folder there failed the server's start with IsADirectoryError, after it had begun.
        if path is not None and path.is_dir():
            raise ValueError(f"{path} is a folder: name the file the key is kept in")
        return path

    @field_validator("trusted_documents")
    @classmethod
    def _usable_manifest(cls, path: Path | None) -> Path | None:
        """Read once here, so that a manifest the server could not use stops it before it starts."""
        if path is not None:
            read_manifest(path)
        return path

    @field_validator("merge_blocklist", "merge_source_priority", "consent_purposes", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        """A JSON list, or the items comma-separated (`crm,web`): given that way, the environment
        variable stopped the server with pydantic-settings' traceback, not the one line of a bad setting."""
        return _listed(value, "items")

    @field_validator("consent_purposes")
    @classmethod
    def _purposes_as_decisions_name_them(cls, values: list[str]) -> list[str]:
        """Each as a consent_update event and a segment may name it: `Email-Marketing` was taken, then
        its withdrawal by event refused and no segment could require it."""
        if bad := [value for value in values if not is_purpose(value)]:
            raise ValueError(f"{bad[0]!r}: a purpose is 1-64 lower-case letters, digits or underscores")
        return values

    @field_validator("merge_blocklist")
    @classmethod
    def _blocklist_as_held(cls, values: list[str]) -> list[str]:
        """Normalised as identifiers are, so that it matches them (merge_protection.blocklisted); an
        entry's type in the wrong letter case (`deviceid:00000000`) is refused, naming the type it
        meant: it matched nothing, and the junk value went on linking people."""
        for value in values:
            type_, colon, _ = value.strip().partition(":")
            if colon and (meant := misspelt_type(type_.strip())) is not None:
                raise ValueError(f"{value!r}: the identifier type is {meant!r} (types are case-sensitive)")
        return sorted(blocklisted(values))

    @field_validator("merge_limits")
    @classmethod
    def _limits_over_defaults(cls, limits: dict[str, int]) -> dict[str, int]:
        """Each type named over its default, the others keeping theirs: `{"email": 3}` replaced the
        whole default, and customerId went unlimited (two customers merged by a family mailbox). A type
        must be one identifiers take, as spelt there; a limit is at least 1."""
        for type_, limit in limits.items():
            try:  # as identifiers' types are checked: `customerID` fits a custom type's pattern too
                checked = checked_type(type_, field="")
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
            if checked != type_:
                raise ValueError(f"{type_!r}: a type is written without spaces ({checked!r})")
            if limit < 1:
                raise ValueError(
                    f"{type_}: a limit is at least 1 (a value that must link nobody goes in CDP_MERGE_BLOCKLIST)"
                )
        return {**DEFAULT_LIMITS, **limits}

    @field_validator("merge_rules")
    @classmethod
    def _rules_for_fields_merges_reconcile(cls, rules: dict[str, Rule]) -> dict[str, Rule]:
        """A rule for a field no merge reconciles (`lastname`, `email`) was accepted and did nothing."""
        for path in rules:
            if path not in RECONCILED_FIELDS and not (path.startswith("traits.") and len(path) > len("traits.")):
                raise ValueError(f"{path!r}: rules apply to {', '.join(RECONCILED_FIELDS)}, traits.* or traits.<name>")
        return rules

    @field_validator("merge_source_priority")
    @classmethod
    def _sources_as_written(cls, sources: list[str]) -> list[str]:
        """As a write names its source (`crm`, lower-case): `CRM` could never match one."""
        for source in sources:
            if not SOURCE.match(source):
                raise ValueError(f"{source!r}: a source is 1-32 lower-case letters, digits or underscores (e.g. crm)")
        return sources

    @field_validator("merge_limits", "merge_rules", mode="before")
    @classmethod
    def _object(cls, value: object, info: ValidationInfo) -> object:
        """A JSON object; anything else is one line naming the setting, with an example."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            example = '{"lastName": "OLDEST"}' if info.field_name == "merge_rules" else '{"email": 3}'
            raise ValueError(f"not a JSON object such as {example}") from None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """Comma-separated or a JSON list; each an origin exactly as a browser sends it in `Origin`,
        since one with a path or a trailing slash would never match and fail silently."""
        value = _listed(value, "origins")
        if not isinstance(value, list):
            return value
        for origin in value:
            if origin == "*":
                if len(value) > 1:
                    raise ValueError("'*' (any origin) stands alone")
                continue
            parts = urlsplit(str(origin))
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or f"{parts.scheme}://{parts.netloc}" != origin
            ):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path nor trailing slash")
        return value

    @property
    def log_style(self) -> str:
        return self.log_format or ("json" if self.environment == "production" else "text")

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else self.environment == "development"

    def embedded_file(self) -> Path | None:
        """The embedded database's file, when this configuration names one (not MongoDB, not :memory:)."""
        if self.database_url.startswith("sqlite:///") and self.database_url != "sqlite:///:memory:":
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None

    def development_key_path(self) -> Path | None:
        """Where the local development key lives, when this configuration has one (development,
        authentication on, listening on this machine only)."""
        if not (self.auth and self.environment == "development" and is_loopback(self.host)):
            return None
        if self.development_key_file is not None:
            return self.development_key_file
        return self.data_dir() / "dev-api-key"

    def data_dir(self) -> Path:
        """The folder of the embedded database (or data/ with MongoDB): where this machine's server
        processes keep what they share beside the store (the development key, start-up locks)."""
        embedded = self.embedded_file()
        return embedded.parent if embedded is not None else Path("data")

    def binding_problem(self) -> str | None:
        """Why this configuration must not serve, if it must not: no auth beyond this machine."""
        if not self.auth and not is_loopback(self.host):
            return (
                f"CDP_AUTH=off is for local use only, but the server would listen on {self.host}: "
                f"bind to 127.0.0.1 or turn authentication on (create keys with `{app_command('keys create')}`)"
            )
        return None

    def event_limits(self) -> EventLimits:
        return EventLimits(
            max_properties_bytes=self.max_event_properties_bytes,
            max_string_length=self.max_event_string_length,
            max_depth=self.max_event_depth,
            max_array_items=self.max_event_array_items,
        )

    def identity_policy(self) -> IdentityPolicy:
        return IdentityPolicy(
            rules=ReconciliationRules(
                by_field={"addresses": Rule.UNION, **self.merge_rules},
                default=self.merge_default_rule,
                source_priority=tuple(self.merge_source_priority),
            ),
            protection=MergeProtection(
                limits=dict(self.merge_limits),
                blocklist=frozenset(self.merge_blocklist),
                automatic_merges=self.auto_merge,
                households_apart=self.households_apart,
            ),
            fuzzy_merge_score=self.fuzzy_merge_score,
        )


def _listed(value: object, items: str) -> object:
    """A setting's text as a list: a JSON list, or the `items` comma-separated."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text) if text.startswith("[") else [i.strip() for i in text.split(",") if i.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON list ({exc}); or give the {items} comma-separated") from None


def invalid_settings(error: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """One line naming each bad setting, its value and what it should be, for people rather than for
    pydantic's multi-line report. `options` maps the fields given as command-line options to how."""
    problems = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        name = (options or {}).get(field) or f"{Settings.model_config.get('env_prefix', '')}{field.upper()}"
        name += "".join(f".{part}" for part in item["loc"][1:])  # the key of an object setting: CDP_MERGE_LIMITS.email
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}={item['input']!r}: {reason}" if "input" in item else f"{name}: {reason}")
    return ("bad settings " if len(problems) > 1 else "bad setting ") + "; ".join(problems)
