"""Server settings, read from `CDP_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.merge_protection import DEFAULT_BLOCKLIST, DEFAULT_LIMITS, MergeProtection
from app.domain.reconciliation import ReconciliationRules, Rule
from app.services.identity_policy import IdentityPolicy

EMBEDDED_DATABASE_URL = "sqlite:///data/cdp.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=EMBEDDED_DATABASE_URL,
        description="Unset: the embedded SQLite file data/cdp.sqlite3. mongodb://… : MongoDB (a replica set).",
    )
    mongodb_database: str = "cdp"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    environment: Literal["development", "production"] = "development"
    seed_fixtures: bool = Field(default=True, description="Load fixtures/ into an empty embedded store on start.")
    fixtures_dir: Path = Path("fixtures")
    max_batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_page_size: int = Field(default=100, ge=1, le=1000)
    idempotency_ttl_days: int = Field(default=30, ge=1)
    log_level: str = "info"
    # Identity resolution (README "Identity resolution"). JSON in the environment, e.g.
    # CDP_MERGE_LIMITS='{"customerId": 1, "email": 3}'.
    auto_merge: bool = Field(default=True, description="Merge profiles that one event's identifiers link.")
    merge_limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    merge_blocklist: list[str] = Field(default_factory=lambda: sorted(DEFAULT_BLOCKLIST))
    merge_rules: dict[str, Rule] = Field(default_factory=dict, description="Per field; addresses default to UNION.")
    merge_default_rule: Rule = Rule.MOST_RECENT
    merge_source_priority: list[str] = Field(default_factory=lambda: list(ReconciliationRules().source_priority))
    fuzzy_merge_score: float | None = Field(
        default=None, gt=0, le=1, description="Merge fuzzy look-alikes scoring at least this; unset: never."
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
            ),
            fuzzy_merge_score=self.fuzzy_merge_score,
        )
