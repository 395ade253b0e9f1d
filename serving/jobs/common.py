"""What the jobs share: their failure, progress reporting, the MLflow store, the
training configuration and reading an export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.registry import Store
from serving.settings import Settings

if TYPE_CHECKING:
    from features.tables import RawTables
    from training.config import TrainingConfig

OnStep = Callable[[str], None]


class JobFailed(Exception):
    """A failure the user can fix; its message is shown without a traceback."""


class Reporter(Protocol):
    """Where a job tells how it is getting on (the CLI prints it; `QUIET` drops it)."""

    def step(self, label: str) -> AbstractContextManager[None]:
        """A long step, labelled, timed as a whole."""
        ...

    def progress(self, steps: int, label: str) -> AbstractContextManager[OnStep]:
        """A job of `steps` named steps: call what it yields with each step's name."""
        ...

    def echo(self, text: str) -> None:
        """A line of the job's account (standard output)."""
        ...

    def warn(self, message: str) -> None:
        """A warning about the input that does not stop the job (standard error)."""
        ...


class Quiet:
    """A reporter that drops everything (jobs run by code, tests)."""

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        yield

    @contextmanager
    def progress(self, steps: int, label: str) -> Iterator[OnStep]:
        yield lambda message: None

    def echo(self, text: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


QUIET = Quiet()


def store_for(settings: Settings) -> Store:
    """The MLflow store of `settings` (the home folder created for a local one)."""
    settings.paths.home.mkdir(parents=True, exist_ok=True)
    local = settings.tracking_uri.startswith("sqlite:")
    return Store(
        tracking_uri=settings.tracking_uri,
        registry_uri=settings.registry_uri,
        experiment=settings.mlflow.experiment,
        model_name=settings.mlflow.model_name,
        artifact_location=settings.artifact_location if local else None,
    )


def training_config(
    settings: Settings, config_file: Path | None, **overrides: Any
) -> TrainingConfig:
    """The training configuration: the TOML file's `[training]` table when given, else
    the settings' training defaults; options given (not None) override either."""
    from training.config import TrainingConfig

    defaults = {
        "horizon_days": settings.training.horizon_days,
        "as_of_every_days": settings.training.as_of_every_days,
        "capacity_share": settings.training.capacity_share,
        "seed": settings.training.seed,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is not None:
        return TrainingConfig.from_toml(config_file, **given)
    return TrainingConfig(**{**defaults, **given})


def require_folder(export_dir: Path) -> None:
    if not export_dir.is_dir():
        raise JobFailed(f"{export_dir} is not a folder (expected an export folder)")


def load_tables(export_dir: Path, report: Reporter) -> RawTables:
    """The export's validated tables; its warnings (extra columns) go to `report`."""
    from features.sources import load_export

    require_folder(export_dir)
    loaded = load_export(export_dir)
    for warning in loaded.warnings:
        report.warn(warning)
    return loaded.tables
