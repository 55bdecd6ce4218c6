"""Settings read from the environment and a `.env` file (names fixed by PRODUCT.md)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_DATABASE_URL = "sqlite:///tweetchat.db"
ENV_PREFIX = "TWEETCHAT_"
# Settings of one Mastodon server, named after its host: TWEETCHAT_MASTODON_TOKEN_MASTODON_SOCIAL.
MASTODON_TOKEN_PREFIX = ENV_PREFIX + "MASTODON_TOKEN_"
MASTODON_URL_PREFIX = ENV_PREFIX + "MASTODON_URL_"
# Seconds of ids each Mastodon timeline round reads again before the stored position, for statuses
# that reach a server late.
MASTODON_LATE_MARGIN = 300.0
_PER_SERVER = {"mastodon_tokens": MASTODON_TOKEN_PREFIX, "mastodon_urls": MASTODON_URL_PREFIX}


def host_key(host: str) -> str:
    """A server host as it appears in a setting's name: upper-cased, every character other
    than a letter or digit as `_` (`mastodon.social` → `MASTODON_SOCIAL`)."""
    return re.sub(r"[^A-Z0-9]", "_", host.strip().upper())


class _PerServerSettings(PydanticBaseSettingsSource):
    """`TWEETCHAT_MASTODON_TOKEN_<HOST>` and `TWEETCHAT_MASTODON_URL_<HOST>`, whose names depend
    on the servers, read from the environment and the `.env` file (the environment wins) into
    the `mastodon_tokens` and `mastodon_urls` maps, keyed by `host_key(host)`."""

    def __init__(
        self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.sources = sources  # lowest priority first

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the maps are built whole in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, str]] = {name: {} for name in _PER_SERVER}
        for source in self.sources:
            variables = getattr(source, "env_vars", None) or {}
            for name, value in variables.items():
                upper = name.upper()
                for field_name, prefix in _PER_SERVER.items():
                    if upper.startswith(prefix) and len(upper) > len(prefix) and value:
                        found[field_name][upper[len(prefix) :]] = value
        return {name: values for name, values in found.items() if values}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; default: a SQLite file `tweetchat.db` in the working folder.",
    )
    redis_url: str | None = Field(default=None, description="Unset: live updates stay in-process.")
    x_bearer_token: str | None = None
    x_api_url: str = "https://api.x.com"
    admin_token: str | None = None
    x_price_per_post: float = Field(
        default=0.005, description="Estimated X API cost of reading one post, in US dollars."
    )
    collect_hours_before: float = Field(
        default=72.0, ge=0, description="How far before a chat's start live sources reach back."
    )
    search_interval: float = Field(default=15.0, gt=0, description="Seconds between searches.")
    refresh_interval: float = Field(
        default=180.0, gt=0, description="Seconds between trends and top-post metric refreshes."
    )
    x_stream_keepalive_timeout: float = Field(
        default=20.0, gt=0, description="Seconds without a byte before the stream reconnects."
    )
    x_backoff_scale: float = Field(
        default=1.0, gt=0, description="Multiplies X's documented retry delays (tests use less)."
    )
    trends_woeid: int = Field(default=23424975, description="Trends location (UK: 23424975).")
    trends_location: str = "United Kingdom"
    ws_queue_size: int = Field(default=256, ge=1, description="Updates a slow client may lag.")
    ws_send_timeout: float = Field(default=10.0, gt=0, description="Seconds one send may take.")
    # Mastodon: a chat names its servers by host (`chat create --mastodon mastodon.social`).
    mastodon_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="A user access token (scope read) per server, from "
        "TWEETCHAT_MASTODON_TOKEN_<HOST> (host upper-cased, other characters than letters and "
        "digits as _); with one the server's hashtag streams are followed, else its timeline "
        "is polled.",
    )
    mastodon_urls: dict[str, str] = Field(
        default_factory=dict,
        description="The base URL of a server, from TWEETCHAT_MASTODON_URL_<HOST>; default "
        "https://<host> (tests point it at a fake server).",
    )
    mastodon_keepalive_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a Mastodon stream may be silent before it reconnects.",
    )
    # Bluesky: the public AppView first, the PDS with an app password when the AppView refuses.
    bluesky_url: str = "https://public.api.bsky.app"
    bluesky_pds_url: str = "https://bsky.social"
    bluesky_identifier: str | None = None
    bluesky_app_password: str | None = None
    network_backoff_scale: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies the Mastodon and Bluesky sources' retry delays (tests use less).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        per_server = _PerServerSettings(settings_cls, dotenv_settings, env_settings)
        return init_settings, env_settings, per_server, dotenv_settings, file_secret_settings

    def mastodon_token(self, host: str) -> str | None:
        """The user token configured for the Mastodon server `host`, if any."""
        return self.mastodon_tokens.get(host_key(host)) or None

    def mastodon_url(self, host: str) -> str:
        """The base URL of the Mastodon server `host` (`https://host` unless overridden)."""
        return self.mastodon_urls.get(host_key(host)) or f"https://{host}"

    @field_validator("mastodon_tokens", "mastodon_urls", mode="after")
    @classmethod
    def _key_by_host(cls, value: dict[str, str]) -> dict[str, str]:
        # Given in code by host ({"mastodon.social": ...}) or read from a variable's name.
        return {host_key(host): item.strip() for host, item in value.items() if item.strip()}

    @field_validator("mastodon_urls", mode="after")
    @classmethod
    def _check_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(
                    f"{MASTODON_URL_PREFIX}{key} is {url!r}, not a server URL "
                    "(http:// or https:// and a host)"
                )
        return {key: url.rstrip("/") for key, url in value.items()}

    @field_validator("bluesky_url", "bluesky_pds_url", mode="after")
    @classmethod
    def _check_bluesky_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value.strip()):
            raise ValueError(f"{value!r} is not a URL (http:// or https:// and a host)")
        return value.strip().rstrip("/")

    ws_per_message_deflate: bool = Field(
        default=False,
        description="Offer per-message deflate to WebSocket clients: fewer bytes, but each "
        "update is compressed once per connection (about 3x the server's CPU at 1,000 clients).",
    )
    update_interval: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="Least seconds between two live updates of a chat (a change after a quiet "
        "spell goes out at once; changes meanwhile are sent together; with thousands of "
        "clients, longer: half the time the last update took to send is left for the rest).",
    )
    storage_process: bool = Field(
        default=False,
        description="Store each live chat's posts in a process of its own, beside the one that "
        "tags, counts and serves them: for chats of thousands of posts a second (on two cores "
        "about 1.5x the ingest into SQLite, 1.2x into PostgreSQL; docs/benchmarks.md), at the cost "
        "of a process per collected chat.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres(cls, value: str) -> str:
        # `postgresql://` and `postgres://` URLs are common; we ship psycopg 3, not psycopg2.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("admin_token")
    @classmethod
    def _refuse_weak_admin_token(cls, value: str | None) -> str | None:
        if value is not None and (
            value.lower() in {"changeme", "admin", "secret"} or len(value) < 12
        ):
            raise ValueError("TWEETCHAT_ADMIN_TOKEN is too weak: use at least 12 random characters")
        return value
