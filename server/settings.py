"""Typed application settings: a YAML config file, overridden by LIVECOACH_* env variables.

Nested keys use a double underscore: ``LIVECOACH_SERVER__PORT=9000``,
``LIVECOACH_COACH__PROVIDERS__LLM=openai``. ``REDIS_URL`` is honoured as-is.

Which config file: ``--config``, else ``LIVECOACH_CONFIG``, else ``./livecoach.yaml`` when it exists
(``livecoach init`` writes one), else the packaged ``configs/default.yaml``. Paths: ``data_dir``
relative to the working directory; ``static_dir`` and ``scenarios_dir`` relative to the config
file's folder, empty meaning the packaged pages / scenarios (never anything inside site-packages
is written).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from coach.settings import CoachSettings
from media.settings import MediaSettings

PACKAGED_CONFIGS = Path(str(resources.files("configs")))
PACKAGED_PAGES = Path(str(resources.files("web_client")))
DEFAULT_CONFIG = PACKAGED_CONFIGS / "default.yaml"
LOCAL_CONFIG = "livecoach.yaml"  # picked up from the working directory when present
DEV_SECRET = "livecoach-dev-secret-change-me"  # published: accepted only with dev tokens on
MIN_SECRET_BYTES = 32

# The YAML values of the load in progress (a context variable, so nothing global is mutated).
_YAML_VALUES: ContextVar[dict[str, Any]] = ContextVar("livecoach_yaml_values", default={})


class ConfigError(ValueError):
    """A config file or setting is missing or invalid; the message is one line for the user."""


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    secret: str = DEV_SECRET  # HMAC key for join tokens
    token_ttl_s: int = Field(default=4 * 3600, gt=0)
    max_sessions: int = Field(default=15, ge=1)  # per process; beyond it: 503 + Retry-After
    # "uvloop" runs `livecoach serve` on uvloop (pip install 'livecoach[fast]'); measured in
    # bench/bench_profile.py --event-loop; the tests run on asyncio's loop.
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    # Admission by load (server/admission.py): new sessions are refused (503 + Retry-After) while
    # the loop's mean scheduling delay or the process CPU over the window is at/above these; 0 = off.
    admission_max_loop_lag_ms: float = Field(default=200.0, ge=0)
    admission_max_cpu_pct: float = Field(default=90.0, ge=0)  # % of one core
    load_window_s: float = Field(default=2.0, gt=0)
    load_sample_interval_s: float = Field(default=0.1, gt=0)
    max_ws_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_sdp_bytes: int = Field(default=32 * 1024, ge=512)
    max_tip_chars: int = Field(default=500, ge=1)
    data_dir: str = "data"  # SQLite file and recordings; relative = from the working directory
    redis_url: str | None = None
    presence_ttl_s: float = Field(default=10.0, gt=0)
    static_dir: str = ""  # "" = the packaged web_client pages
    ws_heartbeat_s: float = Field(default=5.0, gt=0)
    # An HTTP connection that has not sent a whole request (headers included) this long after
    # connecting or after its last response is closed: idle keep-alives and slowloris alike.
    http_idle_timeout_s: float = Field(default=15.0, gt=0)
    join_timeout_s: float = Field(default=10.0, gt=0)  # a WebSocket must join within this (wall time)
    # WebSockets that have not joined yet hold a socket and a task for nothing: capped.
    max_unjoined_connections: int = Field(default=256, ge=1)
    max_unjoined_per_address: int = Field(default=32, ge=1)
    # Client messages per connection and type: [per second, burst]. Past it the message is refused
    # (one rate_limited error a second) at the sender; receivers never pay for a sender's flood.
    message_rates: dict[str, tuple[float, float]] = Field(default_factory=lambda: {
        "join": (1.0, 2.0), "offer": (2.0, 4.0), "ice": (50.0, 100.0), "tip": (3.0, 5.0),
        "tip_ack": (10.0, 20.0), "whisper": (4.0, 8.0), "ping": (20.0, 40.0), "leave": (2.0, 2.0),
    })
    message_rate_total: tuple[float, float] = (100.0, 200.0)  # all types together, per connection
    rest_rate: tuple[float, float] = (20.0, 60.0)  # REST requests per client address: [per second, burst]
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
    config_file: str = ""  # the YAML file these settings came from (set by load_settings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit overrides > environment > YAML file.
        return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=_YAML_VALUES.get()))


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to read (one the user named must exist: read_yaml says so)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get("LIVECOACH_CONFIG"):
        return Path(os.environ["LIVECOACH_CONFIG"]).expanduser()
    if Path(LOCAL_CONFIG).is_file():
        return Path(LOCAL_CONFIG).resolve()
    return DEFAULT_CONFIG


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid config file {path}:{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config file {path}: the top level must be a mapping of sections")
    return data


def _env_name(loc: tuple[Any, ...]) -> str | None:
    """The LIVECOACH_* variable that set this field, if any (env names are case-insensitive)."""
    wanted = ("LIVECOACH_" + "__".join(str(part) for part in loc)).upper()
    for name in os.environ:
        if name.upper() == wanted:
            return name
    return None


def _describe(exc: ValidationError, path: Path) -> str:
    first = exc.errors()[0]
    loc = tuple(part for part in first["loc"] if not isinstance(part, int) or part >= 0)
    key = ".".join(str(part) for part in loc) or "settings"
    env = _env_name(loc)
    origin = f"env {env}" if env else f"config {path}"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {key}={first.get('input')!r} from {origin}: {first['msg']}{more}"


def load_settings(config_path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load the config file + env; ``overrides`` win over both. Raises ConfigError (one line)."""
    path = find_config(config_path)
    values = read_yaml(path)
    token = _YAML_VALUES.set(values)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:  # e.g. an env value that should be JSON and is not
        raise ConfigError(f"invalid environment setting: {exc}".splitlines()[0]) from None
    finally:
        _YAML_VALUES.reset(token)
    if settings.server.redis_url is None and os.environ.get("REDIS_URL"):
        settings.server.redis_url = os.environ["REDIS_URL"]
    settings.config_file = str(path.resolve())
    base = path.resolve().parent
    settings.server.data_dir = str(resolve_path(settings.server.data_dir, Path.cwd()))
    settings.server.static_dir = str(resolve_path(settings.server.static_dir, base, PACKAGED_PAGES))
    settings.coach.scenarios_dir = str(
        resolve_path(settings.coach.scenarios_dir, base, PACKAGED_CONFIGS / "scenarios"))
    return settings


def resolve_path(path: str, base: Path, default: Path | None = None) -> Path:
    """``path`` made absolute against ``base``; empty means ``default``."""
    if not path and default is not None:
        return default
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def recordings_dir(settings: Settings) -> Path:
    """Where session recordings are written and served from."""
    return Path(settings.server.data_dir) / "recordings"
