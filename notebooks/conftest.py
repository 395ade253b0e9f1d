"""`pytest --nbmake notebooks/`: notebook 04 needs the OULAD tables (not in the
repository); without them it is skipped with the reason, not failed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NEEDS_OULAD = "04-oulad-benchmark.ipynb"


def _oulad_dir() -> Path:
    # the notebook's own rule: BAOXUE_OULAD_DIR, else ../shared/data/oulad beside the repository
    named = os.environ.get("BAOXUE_OULAD_DIR")
    return (
        Path(named) if named else Path(__file__).resolve().parents[2] / "shared" / "data" / "oulad"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder = _oulad_dir()
    if folder.is_dir():
        return
    reason = f"no OULAD folder at {folder}: set BAOXUE_OULAD_DIR to the folder of OULAD's tables"
    for item in items:
        if item.path.name == NEEDS_OULAD:
            item.add_marker(pytest.mark.skip(reason=reason))
