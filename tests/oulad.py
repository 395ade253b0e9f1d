"""Where the tests find the OULAD data (not in the repository: CC BY 4.0, 100 MB)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "BAOXUE_OULAD_DIR"


def oulad_dir() -> Path:
    """`BAOXUE_OULAD_DIR`, else ``../shared/data/oulad`` beside the repository (the rule
    notebook 04 follows; `.ci/run` sets the variable from that folder when it exists)."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "oulad"


def missing_reason() -> str:
    return f"no OULAD folder at {oulad_dir()}: set {ENV} to the folder of OULAD's tables"
