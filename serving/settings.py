"""The one settings object. Defaults run one county on one machine with nothing to install.

Values come, strongest first, from: constructor arguments, environment variables
(`BAOXUE_` prefix, nested groups with `__`, e.g. `BAOXUE_PATHS__HOME=/srv/baoxue`),
a `.env` file, then `baoxue.toml` in the working directory (or the file named by
`BAOXUE_CONFIG`), then the defaults below.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class PathSettings(BaseModel):
    """Where Baoxue keeps its files. Everything lives below `home` unless set otherwise."""

    home: Path = Path("var")
    data_dir: Path | None = None  # the export the weekly run reads; default home/data
    lists_dir: Path | None = None  # written weekly lists; default home/lists

    @property
    def data(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def lists(self) -> Path:
        return self.lists_dir or self.home / "lists"

    @property
    def model_cache(self) -> Path:
        return self.home / "model-cache"


class DatabaseSettings(BaseModel):
    """The service database. Default: SQLite in the home folder."""

    url: str | None = None  # e.g. postgresql+psycopg://user:pw@host/baoxue


class MlflowSettings(BaseModel):
    """Tracking store and model registry. Default: a local SQLite store in the home folder."""

    tracking_uri: str | None = None  # e.g. http://mlflow.internal:5000
    registry_uri: str | None = None
    experiment: str = "baoxue-risk"
    model_name: str = "baoxue-risk"


class TrainingSettings(BaseModel):
    """Defaults for `baoxue train`; each can be overridden on the command line."""

    horizon_days: int = Field(default=90, ge=7, le=730)
    as_of_every_days: int = Field(default=7, ge=1, le=92)
    capacity_share: float = Field(default=0.05, gt=0, le=1)
    seed: int = 20261123


class ComputeSettings(BaseModel):
    """Where features, training and the weekly batch compute (docs/dask.md).

    ``pandas`` (default): in this process. ``dask``: the export is split into Parquet
    partitions of `schools_per_partition` schools under `partitions_dir` (default
    home/partitions) and each partition is a task on the Dask scheduler at `scheduler`
    (e.g. ``tcp://10.0.0.5:8786``; unset: a local cluster of `local_workers` processes).
    """

    backend: Literal["pandas", "dask"] = "pandas"
    scheduler: str | None = None
    local_workers: int = Field(default=2, ge=1, le=256)
    schools_per_partition: int = Field(default=4, ge=1, le=10_000)
    partitions_dir: Path | None = None


class ServingSettings(BaseModel):
    """The web service and the weekly batch."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    weekly_run_weekday: int | None = Field(default=None, ge=0, le=6)  # 0 = Monday; None = off
    weekly_run_hour: int = Field(default=6, ge=0, le=23)
    token_minutes: int = Field(default=480, ge=1)
    secret_key: str | None = None  # generated and kept in the home folder when unset
    # The login limit (counted in the database, serving/services/logins.py): failed
    # logins per username and address, and per address across usernames, in a window.
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    login_window_s: int = Field(default=60, ge=1, le=86_400)
    login_address_max_failures: int = Field(default=30, ge=1, le=100_000)
    login_address_window_s: int = Field(default=900, ge=1, le=86_400)
    # Password hashes at once (default: one per CPU); a login that would wait longer
    # than login_queue_s for one is answered 503 with Retry-After.
    login_hash_slots: int | None = Field(default=None, ge=1, le=256)
    login_queue_s: float = Field(default=0.5, ge=0, le=60)
    # Behind a reverse proxy that sets them: take the scheme (Secure cookies) from
    # X-Forwarded-Proto and the client address (login limit) from X-Forwarded-For.
    trust_proxy_headers: bool = False
    upload_max_mb: int = Field(default=50, ge=1, le=2048)  # per file on the upload page
    # An XLSX upload once unpacked (its compressed size is upload_max_mb's): see
    # serving.services.uploads.XlsxLimits; larger, longer or slower workbooks are refused.
    upload_xlsx_max_rows: int = Field(default=400_000, ge=1, le=10_000_000)
    upload_xlsx_max_unpacked_mb: int = Field(default=100, ge=1, le=4096)
    upload_xlsx_max_seconds: float = Field(default=120.0, gt=0, le=3600)
    # Request bodies: POST /v1/score's records (a 3,000-pupil school's three years are
    # about 30 MB of JSON) and any other body (forms, visits); larger ones answer 413.
    score_body_max_mb: int = Field(default=32, ge=1, le=2048)
    body_max_kb: int = Field(default=1024, ge=16, le=1_048_576)
    # With a cached model the service answers at once and asks the registry this many
    # seconds later, so the check (~0.6 CPU-s) does not slow the first requests.
    registry_check_after_s: float = Field(default=5.0, ge=0, le=3600)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("secret_key must be at least 32 characters")
        return value


class RetentionSettings(BaseModel):
    """How long free text about a child and the audit log are kept (PIPL)."""

    years: int = Field(default=3, ge=1, le=30)  # notes, comments and audit rows older go


class Settings(BaseSettings):
    """All of Baoxue's settings. Build one per process through `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="BAOXUE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    paths: PathSettings = PathSettings()
    db: DatabaseSettings = DatabaseSettings()
    mlflow: MlflowSettings = MlflowSettings()
    training: TrainingSettings = TrainingSettings()
    serving: ServingSettings = ServingSettings()
    compute: ComputeSettings = ComputeSettings()
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("BAOXUE_CONFIG", "baoxue.toml"))
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
            file_secret_settings,
        )

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite:///{(self.paths.home / 'baoxue.db').resolve()}"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{(self.paths.home / 'mlflow.db').resolve()}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def artifact_location(self) -> str:
        """Where a local store keeps run artifacts (ignored by a remote tracking server)."""
        return (self.paths.home / "mlartifacts").resolve().as_uri()

    def public_dict(self) -> dict[str, Any]:
        """The settings without secrets, for logs and `baoxue settings`."""
        data = self.model_dump(mode="json")
        data["serving"]["secret_key"] = "***" if self.serving.secret_key else None
        if self.db.url and "@" in self.db.url:
            data["db"]["url"] = "***"
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
