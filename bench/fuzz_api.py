"""Fuzz the HTTP API with schemathesis against its own OpenAPI spec, as every role.

    python bench/fuzz_api.py [--examples 500] [--students 1500] [--seed 1]

Builds a small synthetic county, trains a real model into a temporary MLflow store,
starts the app (real SQLite, real argon2 users: one per role) and, for every operation
in `/openapi.json`, lets hypothesis generate `--examples` requests (valid and invalid
data). Each request is sent once per role (county_admin, school_admin, teacher,
researcher) and once without a token; every response must not be a 5xx, must have a
status code, content type and body the spec documents. Prints the failures (one per
operation, role and kind) and exits 1 when there are any.

The CI test `tests/serving/api/test_fuzz.py` runs the same `fuzz_app` with a few
examples per operation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The login endpoint is fuzzed too, but it counts failures per username and address:
# fuzzing it would lock the real users out, so it runs last.
LAST = ("/v1/auth/token",)


@dataclass
class FuzzReport:
    """What a fuzz run did: requests sent per operation, failures (deduplicated)."""

    requests: dict[str, int] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def n_requests(self) -> int:
        return sum(self.requests.values())

    def summary(self) -> str:
        lines = [f"{self.n_requests} requests over {len(self.requests)} operations"]
        for label, count in sorted(self.requests.items()):
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses[label].items()))
            lines.append(f"  {label}: {count} requests ({codes})")
        for (label, role, kind), message in sorted(self.failures.items()):
            lines.append(f"FAIL {label} as {role} [{kind}]: {message[:400]}")
        return "\n".join(lines)


def start(app: Any) -> Any:
    """The app's schema, loaded through schemathesis' in-process client; this starts the
    app's lifespan (kept until `stop`), so `app.state` is ready afterwards."""
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def stop() -> None:
    """End the lifespans `start` began (engines disposed, scheduler stopped)."""
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


def fuzz_app(
    schema: Any,
    headers_by_role: Mapping[str, Mapping[str, str]],
    *,
    examples: int,
    seed: int = 0,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> FuzzReport:
    """Fuzz every operation of `schema` (from `start`). Each generated request is sent
    as every role in `headers_by_role` (an empty mapping: no token)."""
    report = FuzzReport()
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.path in LAST)
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        report.requests[label] = 0
        report.statuses[label] = {}
        for mode in modes:
            _fuzz_operation(operation, mode, label, headers_by_role, examples, seed, report)
    return report


def _record(
    report: FuzzReport, key: tuple[str, str, str], case: Any, response: Any, failure: Any
) -> None:
    """Keep the first example of each (operation, role, kind of failure)."""
    if key not in report.failures:
        sent = {"path": case.path_parameters, "query": case.query, "body": case.body}
        report.failures[key] = (
            f"{response.status_code} {response.text[:300]!r} | {failure.message[:300]} "
            f"| sent {str(sent)[:300]}"
        )


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    label: str,
    headers_by_role: Mapping[str, Mapping[str, str]],
    examples: int,
    seed: int,
    report: FuzzReport,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        for role, headers in headers_by_role.items():
            response = case.call(headers=dict(headers))
            report.requests[label] += 1
            codes = report.statuses[label]
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    _record(report, (label, role, failure.title), case, response, failure)
            except Failure as failure:
                _record(report, (label, role, failure.title), case, response, failure)

    import random

    random.seed(seed)
    try:
        run()
    except Unsatisfiable:  # an operation whose invalid data cannot be built: nothing to send
        pass


# -- the standalone run ---------------------------------------------------------------


def _build_service(home: Path, students: int, seed: int) -> tuple[Any, dict[str, dict[str, str]]]:
    """A started app on a freshly trained model, and a bearer header per role."""
    from features.synthetic import generate_county
    from serving.app import create_app
    from serving.auth import create_access_token
    from serving.services.users import add_user, get_viewer
    from serving.services.weekly_lists import run_weekly
    from serving.settings import (
        DatabaseSettings,
        MlflowSettings,
        PathSettings,
        ServingSettings,
        Settings,
    )
    from serving.storage.db import session_scope
    from training.config import TrainingConfig
    from training.pipeline import run_experiment
    from training.track import Store

    county = generate_county(n_students=students, n_years=3, seed=seed)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    store = Store(uri, uri, "fuzz", "baoxue-risk", (home / "mlartifacts").as_uri())
    run_experiment(county, TrainingConfig(seed=seed), store=store)
    secret = "fuzz-secret-key-0123456789-0123456789"
    settings_ = Settings(
        paths=PathSettings(home=home),
        db=DatabaseSettings(url=f"sqlite:///{home / 'baoxue.db'}"),
        mlflow=MlflowSettings(tracking_uri=uri, registry_uri=uri, model_name="baoxue-risk"),
        serving=ServingSettings(secret_key=secret),
    )
    school = str(county.schools["school_id"].iloc[0])
    klass = str(county.enrolments.loc[county.enrolments["school_id"] == school, "class_id"].iloc[0])
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    with session_scope(settings_) as session:
        for role, school_id, classes in (
            ("county_admin", None, ()),
            ("school_admin", school, ()),
            ("teacher", school, (klass,)),
            ("researcher", None, ()),
        ):
            row = add_user(session, f"fuzz_{role}", "fuzz password 123", role, school_id, classes)
            viewer = get_viewer(session, row.id)
            token = create_access_token(viewer, secret, 60)
            headers[role] = {"Authorization": f"Bearer {token}"}
    app = create_app(settings_)
    schema = start(app)
    state = app.state
    as_of = dt.date(county.calendar["date"].max().year, 3, 16)
    as_of -= dt.timedelta(days=as_of.weekday())
    run_weekly(
        state.sessions,
        state.models.require(),
        county,
        as_of=as_of,
        capacity=None,
        capacity_share=0.05,
        lists_dir=home / "lists",
    )
    return schema, headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="examples per operation/mode")
    parser.add_argument("--students", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="baoxue-fuzz-") as tmp:
        started = time.perf_counter()
        schema, headers = _build_service(Path(tmp), args.students, args.seed)
        print(f"service ready in {time.perf_counter() - started:.0f} s; fuzzing ...")
        started = time.perf_counter()
        report = fuzz_app(schema, headers, examples=args.examples, seed=args.seed)
        print(report.summary())
        print(f"fuzzed in {time.perf_counter() - started:.0f} s")
        stop()
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
