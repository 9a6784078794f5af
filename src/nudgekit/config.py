"""Settings: NUDGE_* environment variables first, then `nudge.toml` in the workspace, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE = "nudge.toml"
DEFAULT_HOME = Path(".nudge")


def home_from_env() -> Path:
    """The workspace every command works on: NUDGE_HOME, or ./.nudge."""
    return Path(os.environ.get("NUDGE_HOME") or DEFAULT_HOME)


class IngestSettings(BaseSettings):
    max_message_bytes: int = 32 * 1024
    """Segment's limit for one message."""
    max_batch_bytes: int = 500 * 1024
    """Segment's limit for one batch request."""
    future_tolerance_hours: float = 24.0
    """Timestamps further than this in the future are rejected."""
    flush_interval_seconds: float = 1.0
    """How often the server moves spooled events into the event store."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NUDGE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=home_from_env)
    database_url: str | None = None
    """State DB. Default: SQLite file `state.db` in the workspace."""
    events_path: Path | None = None
    """Event store. Default: DuckDB file `events.duckdb` in the workspace."""
    timezone: str = "Asia/Seoul"
    """Workspace time zone; a user's `timezone` trait overrides it for that user."""
    phone_region: str = "KR"
    """Region assumed for phone numbers written without a country code."""
    brand: str = "nudgekit"
    host: str = "127.0.0.1"
    port: int = 8000
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    traits: dict[str, str] = Field(default_factory=dict)
    """Declared custom trait types, e.g. {"plan": "string", "points": "number"}."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Seoul)") from exc
        return value

    @field_validator("traits")
    @classmethod
    def _known_trait_types(cls, value: dict[str, str]) -> dict[str, str]:
        known = ("string", "number", "boolean", "datetime", "list", "object")
        for name, kind in value.items():
            if kind not in known:
                raise ValueError(f'trait "{name}": unknown type "{kind}"; use one of {", ".join(known)}')
        return value

    @property
    def state_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'state.db').resolve()}"

    @property
    def events_file(self) -> Path:
        return self.events_path or self.home / "events.duckdb"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = _init_home(init_settings) or home_from_env()
        toml = TomlConfigSettingsSource(settings_cls, toml_file=home / CONFIG_FILE)
        return init_settings, env_settings, toml


def _init_home(source: PydanticBaseSettingsSource) -> Path | None:
    values: dict[str, Any] = source()
    home = values.get("home")
    return Path(home) if home else None


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def load_settings(home: Path | str | None = None, **overrides: Any) -> Settings:
    if home is not None:
        overrides["home"] = Path(home)
    return Settings(**overrides)


DEFAULT_TOML = """\
# nudgekit workspace settings. NUDGE_* environment variables override these.
timezone = "Asia/Seoul"     # workspace time zone; a user's `timezone` trait overrides it
phone_region = "KR"         # region for phone numbers written without +country code
brand = "{brand}"
{database_line}

[ingest]
max_message_bytes = 32768
max_batch_bytes = 512000
future_tolerance_hours = 24
"""
