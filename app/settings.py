"""Server settings, read from `CDP_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
