"""Fuzz every operation of the API's own OpenAPI spec with schemathesis, as every role.

The app runs on the session's trained champion and a copy of the API tests' database
(users of every role, two weeks of scores, a noted visit). For each operation,
hypothesis generates `EXAMPLES` valid and `EXAMPLES` invalid requests; each is sent as
county_admin, school_admin, teacher, researcher and without a token. No response may be
a 5xx, and each must have a status code, content type and body the spec documents.
`bench/fuzz_api.py --examples N` is the longer run.
"""

from __future__ import annotations

import shutil

import pytest

from bench.fuzz_api import fuzz_app, start, stop
from serving.app import create_app
from tests.serving.api.conftest import bearer, make_settings

EXAMPLES = 8
ROLES = {
    "county_admin": "county",
    "school_admin": "admin_a",
    "teacher": "teacher_a1",
    "researcher": "researcher",
}


@pytest.fixture(scope="module")
def fuzz_schema(trained, api_template, tmp_path_factory):
    _, store, _ = trained
    home = tmp_path_factory.mktemp("fuzz")
    shutil.copyfile(api_template.path, home / "baoxue.db")
    settings = make_settings(home / "home", home / "baoxue.db", store.tracking_uri)
    settings.mlflow.model_name = store.model_name
    app = create_app(settings)
    schema = start(app)
    assert app.state.models.require() is not None
    yield schema
    stop()


def test_every_operation_as_every_role_answers_as_documented_and_never_500(
    fuzz_schema, viewers
) -> None:
    headers = {role: bearer(viewers[user]) for role, user in ROLES.items()}
    headers["anonymous"] = {}
    report = fuzz_app(fuzz_schema, headers, examples=EXAMPLES, seed=3)
    print(report.summary())
    operations = {
        f"{m.upper()} {p}" for p, ms in fuzz_schema.raw_schema["paths"].items() for m in ms
    }
    assert set(report.requests) == operations
    assert all(report.requests[label] >= len(headers) for label in operations)
    assert not report.failures, report.summary()
