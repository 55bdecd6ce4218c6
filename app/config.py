"""Settings read from the environment and a `.env` file (names fixed by PRODUCT.md)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///tweetchat.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWEETCHAT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
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
