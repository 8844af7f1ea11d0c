"""Typed application settings: configs/default.yaml, overridden by LIVECOACH_* env variables.

Nested keys use a double underscore: ``LIVECOACH_SERVER__PORT=9000``,
``LIVECOACH_COACH__PROVIDERS__LLM=openai``. ``REDIS_URL`` is honoured as-is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from coach.settings import CoachSettings
from media.settings import MediaSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    secret: str = "livecoach-dev-secret-change-me"  # HMAC key for join tokens
    token_ttl_s: int = Field(default=4 * 3600, gt=0)
    max_sessions: int = Field(default=15, ge=1)  # per process; beyond it: 503 + Retry-After
    max_ws_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_sdp_bytes: int = Field(default=32 * 1024, ge=512)
    max_tip_chars: int = Field(default=500, ge=1)
    data_dir: str = "data"  # SQLite file and recordings
    redis_url: str | None = None
    presence_ttl_s: float = Field(default=10.0, gt=0)
    static_dir: str = str(PROJECT_ROOT / "web_client")
    ws_heartbeat_s: float = Field(default=5.0, gt=0)
    shutdown_timeout_s: float = Field(default=5.0, gt=0)
    # Embedded/dev mode: pages may ask POST /api/dev/token for a join token, and the REST API is
    # readable without a token. Off (production): issue tokens with `livecoach token`; the API
    # then needs one (mentor/qa read all, a trainee/streamer only their own; server/api_auth.py).
    dev_tokens: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECOACH_", env_nested_delimiter="__", extra="ignore")

    server: ServerSettings = Field(default_factory=ServerSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    coach: CoachSettings = Field(default_factory=CoachSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("LIVECOACH_CONFIG", str(DEFAULT_CONFIG))
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))


def load_settings(config_path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load YAML (default configs/default.yaml) + env; ``overrides`` win over both."""
    previous = os.environ.get("LIVECOACH_CONFIG")
    if config_path is not None:
        os.environ["LIVECOACH_CONFIG"] = str(config_path)
    try:
        settings = Settings(**overrides)
    finally:
        if config_path is not None:
            if previous is None:
                os.environ.pop("LIVECOACH_CONFIG", None)
            else:
                os.environ["LIVECOACH_CONFIG"] = previous
    if settings.server.redis_url is None and os.environ.get("REDIS_URL"):
        settings.server.redis_url = os.environ["REDIS_URL"]
    # Relative paths in the config are relative to the project (where configs/ lives), whatever
    # the working directory: the store, recordings and scenarios then always agree.
    settings.server.data_dir = project_path(settings.server.data_dir)
    settings.server.static_dir = project_path(settings.server.static_dir)
    settings.coach.scenarios_dir = project_path(settings.coach.scenarios_dir)
    return settings


def project_path(path: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else PROJECT_ROOT / p)
