"""Fuzz every operation of the API's own OpenAPI spec with schemathesis, as every role.

The app runs on the session's trained champion and a copy of the API tests' database
(users of every role, two weeks of scores, a noted visit). For each operation,
hypothesis generates `EXAMPLES` valid and `EXAMPLES` invalid requests; each is sent as
county_admin, school_admin, teacher, researcher and without a token. No response may be
a 5xx, and each must have a status code, content type and body the spec documents.
`bench/fuzz_api.py --examples N` is the longer run.
"""

from __future__ import annotations

import re
import shutil
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_api import fuzz_app, start, stop
from serving.app import create_app
from tests.serving.api.conftest import PASSWORD, bearer, make_settings

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


# -- the pages' forms (not in the OpenAPI spec): random fields, never a 5xx ---------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "home_visit", "contacted", "useful", "2024-03-05", "9999-99-99"]),
)


@pytest.fixture
def page_client(client):
    """The API tests' app with teacher_a1 logged in to the pages; (client, csrf token)."""
    token = CSRF.search(client.get("/login").text).group(1)
    done = client.post(
        "/login",
        data={"username": "teacher_a1", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    return client, CSRF.search(client.get("/students/STU-A1").text).group(1)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(
        [
            "/students/STU-A1/interventions",
            "/students/STU-A1/feedback",
            "/students/STU-B1/interventions",
            "/students/{junk}/feedback",
            "/cases/1/plan",
            "/cases/{junk}/close",
        ]
    ),
    fields=st.dictionaries(
        st.sampled_from(["kind", "date", "outcome", "note", "plan", "status", "reason", "owner"]),
        FORM_TEXT,
        max_size=5,
    ),
    junk=st.text(min_size=1, max_size=20).filter(lambda t: "/" not in t and t.strip()),
    with_token=st.booleans(),
)
def test_page_forms_never_answer_a_server_error(page_client, path, fields, junk, with_token):
    client, token = page_client
    data = {**fields, **({"csrf_token": token} if with_token else {})}
    url = path.replace("{junk}", quote(junk, safe=""))
    answer = client.post(url, data=data, follow_redirects=False)
    assert answer.status_code < 500, (path, data, answer.text[:300])
