"""Session-wide real data: a seeded synthetic county, and a model trained on it into a
temporary MLflow store. Built once per test session; tests must not modify them."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

# -- no personal data in any log line, over the whole test session ---------------------
# Student ids of the synthetic county (S000123) and of the hand-made test data
# (STU-A1, STU-A01, STU-4711), the marker words of the test notes and comments, and the
# pupils' names of the hand-made export (tests/features/export_factory.py).
from tests.features.export_factory import PUPIL_NAMES  # noqa: E402

PERSONAL_IN_LOGS = re.compile(
    r"\bS\d{6}\b|\bSTU-[A-Z]{0,3}-?\d+|NOTE-SECRET|COMMENT-SECRET|HOMEVISIT-NOTE|"
    + "|".join(map(re.escape, PUPIL_NAMES))
)
# Test HTTP clients log request URLs (ids in paths); in production that client is a browser.
LOG_CLIENTS = frozenset({"httpx", "httpcore"})


class PersonalDataInLogs(logging.Handler):
    """A root handler that keeps only the log lines naming a student or carrying a note.

    Cheap: one regex per record, nothing stored for clean lines. STYLE §14 allows ids at
    DEBUG in `training/` only.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.found: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        top = record.name.split(".", 1)[0]
        if top in LOG_CLIENTS or (top == "training" and record.levelno <= logging.DEBUG):
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is still scanned
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        if PERSONAL_IN_LOGS.search(text):
            self.found.append((record.name, text[:300]))


LOG_SCAN = PersonalDataInLogs()
QUIET_LOGGERS = ("numba", "matplotlib", "PIL", "fsspec", "asyncio", "urllib3", "git", "h5py")


def pytest_configure(config: pytest.Config) -> None:
    """Scan every log record of the session, from DEBUG up, on the root logger
    (`BAOXUE_TEST_LOG_SCAN=0` turns the scan off, e.g. to rule it out when debugging)."""
    if os.environ.get("BAOXUE_TEST_LOG_SCAN", "1") == "0":
        return
    root = logging.getLogger()
    root.addHandler(LOG_SCAN)
    root.setLevel(logging.DEBUG)
    for name in QUIET_LOGGERS:  # third-party chatter with no data of ours: keep it cheap
        logging.getLogger(name).setLevel(logging.INFO)


@pytest.fixture(autouse=True)
def no_personal_data_in_logs() -> Iterator[None]:
    """Fail the test whose code logged a student id, a note or a comment."""
    start = len(LOG_SCAN.found)
    yield
    found = LOG_SCAN.found[start:]
    if found:
        pytest.fail(f"{len(found)} log line(s) carry personal data: {found[:3]}", pytrace=False)


SMALL_STUDENTS = 2500
SMALL_YEARS = 3
SMALL_SEED = 11


@pytest.fixture(scope="session")
def small_county():
    """A 2,500-pupil, 3-year synthetic county (RawTables)."""
    from features.synthetic import generate_county

    return generate_county(n_students=SMALL_STUDENTS, n_years=SMALL_YEARS, seed=SMALL_SEED)


@pytest.fixture(scope="session")
def small_export(small_county, tmp_path_factory) -> Path:
    """The small county written as a Parquet export folder."""
    from features.sources import write_export

    return write_export(small_county, tmp_path_factory.mktemp("export") / "county", fmt="parquet")


def make_store(home: Path):
    from training.track import Store

    home.mkdir(parents=True, exist_ok=True)
    return Store(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        registry_uri=f"sqlite:///{home / 'mlflow.db'}",
        experiment="baoxue-test",
        model_name="baoxue-risk",
        artifact_location=(home / "mlartifacts").as_uri(),
    )


@pytest.fixture(scope="session")
def trained(small_county, tmp_path_factory):
    """(TrainResult, Store, TrainingConfig) of one real training run on the small county."""
    from training.config import TrainingConfig
    from training.pipeline import run_experiment

    store = make_store(tmp_path_factory.mktemp("mlflow"))
    config = TrainingConfig(seed=3)
    result = run_experiment(small_county, config, store=store)
    return result, store, config
