"""Every storage test runs on SQLite and, when a test server is given, on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.serving.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """`sqlite` or `postgresql` (see `tests/serving/conftest.py`)."""
    return str(request.param)
