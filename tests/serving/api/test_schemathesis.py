"""Every operation of the API against its own OpenAPI spec with all of schemathesis'
checks (`--checks all`), through schemathesis' pytest integration on the ASGI app.

test_fuzz.py sends each request as every role and checks that nothing answers a 5xx or
an undocumented response; this one, logged in as the county's admin (who may see every
school), also runs the checks that compare the answers with the schema's promises:
schema-valid data must be accepted (`positive_data_acceptance`), invalid data rejected
(`negative_data_rejection`), a request without the token refused (`ignored_auth`), the
headers and status codes documented, and so on. A few examples per operation keep it
short; `bench/fuzz_api.py` is the longer run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import Failure, FailureGroup

from bench.fuzz_api import start, stop
from serving.app import create_app
from tests.serving.api.conftest import bearer, make_settings

load_all_checks()
ALL_CHECKS = CHECKS.get_all()
EXAMPLES = 6
# POST /v1/score: the schema declares each table a non-empty list of row objects, but a
# row's columns, codes and cross-table keys are the data contract's (docs/data-contract.md),
# checked by the same validation as `baoxue validate` and answered 422 with the file,
# row and column: schema-valid random rows are rightly refused, so that one check is off.
CHECKS_FOR = {
    "/v1/score": [c for c in ALL_CHECKS if c.__name__ != "positive_data_acceptance"],
}


@pytest.fixture(scope="module")
def api_schema(trained: Any, api_template: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """The app on the session's trained champion and a copy of the API tests' database."""
    _, store, _ = trained
    home = tmp_path_factory.mktemp("schemathesis")
    shutil.copyfile(api_template.path, home / "baoxue.db")
    app_settings = make_settings(home / "home", home / "baoxue.db", store.tracking_uri)
    app_settings.mlflow.model_name = store.model_name
    app = create_app(app_settings)
    schema = start(app)
    assert app.state.models.require() is not None
    yield schema
    stop()


def test_every_check_is_run() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"positive_data_acceptance", "negative_data_rejection", "ignored_auth"} <= names
    assert len(names) >= 14


def test_the_api_keeps_its_schemas_promises(api_schema: Any, viewers: Any) -> None:
    headers = bearer(viewers["county"])
    failures: dict[tuple[str, str], str] = {}
    sent: dict[str, list[int]] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # logging out revokes the token the other requests carry, and fuzzing the login
    # counts failures against the users: both run last
    operations.sort(key=lambda op: op.path in ("/v1/auth/logout", "/v1/auth/token"))
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(headers=dict(headers))
                sent.setdefault(label, []).append(response.status_code)  # noqa: B023
                try:
                    case.validate_response(
                        response,
                        checks=CHECKS_FOR.get(case.operation.path, ALL_CHECKS),
                        headers=dict(headers),
                    )
                except FailureGroup as group:
                    for failure in group.exceptions:
                        failures.setdefault((label, failure.title), failure.message[:300])  # noqa: B023
                except Failure as failure:
                    failures.setdefault((label, failure.title), failure.message[:300])  # noqa: B023

            try:
                run()
            except Unsatisfiable:
                pass
    assert set(sent) == {f"{o.method.upper()} {o.path}" for o in operations}
    # the requests were answered as the county's admin, not refused for the token
    assert sent["GET /v1/model"] == [200] and 401 not in sent["GET /v1/lists/{school_id}"]
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))


def test_a_score_request_with_empty_tables_is_invalid_by_the_schema(api_schema: Any) -> None:
    """Found by schemathesis: every table empty was valid by the spec but answered 422;
    the spec now says the four required tables hold at least one row."""
    body = api_schema.raw_schema["components"]["schemas"]["ScoreTablesIn"]["properties"]
    for table in ("schools", "calendar", "students", "enrolments"):
        assert body[table]["minItems"] == 1, table
