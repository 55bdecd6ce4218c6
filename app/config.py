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
