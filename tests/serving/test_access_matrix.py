"""Who may reach which student: every API endpoint and every page, as every role, for a
student in their scope and outside it.

The routes are enumerated from the app itself: a route without an entry in `ROUTES`
fails `test_every_route_has_an_entry`, so a new route cannot slip past the matrix.

Three real students of the session's synthetic county (the trained champion scores
them over `POST /v1/score`): one in the teacher's class (`own_class`), one in another
class of the same school (`other_class`), one in another school (`other_school`); each
has two weeks of stored scores and an open case. Scope: county_admin sees all three,
the school admin the first two, the teacher the first, the researcher none. Every
out-of-scope attempt must be refused (403 or 404) AND leave an audit row naming the
viewer, the student (or the school, for lists) and the refusal code.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.audit import AccessRow, recent_access
from serving.services.users import add_user
from serving.storage import queries
from tests.serving.api.conftest import PASSWORD, make_settings
from tests.serving.api.test_scoring import records_json

AS_OF = dt.date(2026, 3, 16)
WEEKS = (AS_OF - dt.timedelta(days=7), AS_OF)
SCHOOL, OTHER_SCHOOL = "T01J", "T01N"
TARGETS = ("own_class", "other_class", "other_school")
ROLES = ("county_admin", "school_admin", "teacher", "researcher")
SEES = {
    "county_admin": {"own_class", "other_class", "other_school"},
    "school_admin": {"own_class", "other_class"},
    "teacher": {"own_class"},
    "researcher": set(),
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Target:
    student_id: str
    school_id: str
    class_id: str
    case_id: int


@dataclass
class World:
    app: Any
    clients: dict[str, TestClient]  # role -> a client logged in to the pages
    tokens: dict[str, dict[str, str]]  # role -> bearer header
    csrf: dict[str, str]
    user_ids: dict[str, int]
    targets: dict[str, Target]
    records: dict[str, dict[str, list[dict]]]  # target -> its /v1/score records


# -- the routes and how to call each ---------------------------------------------------
# kind: "student" (scoped by a student), "manage" (a case, by its school's admin and
# the county only), "school" (by a school's list), "xlsx" (a
# school's list file), "upload" (school admins, own school; the county), "open" (no student data:
# any role, never a 5xx), "county" (county_admin only, names no student, not audited).

Call = Callable[[World, str, str], Any]  # (world, role, target) -> response


def _api(method: str, path: str, body: Callable[[World, str], Any] | None = None) -> Call:
    def call(world: World, role: str, target: str) -> Any:
        t = world.targets[target]
        url = path.format(student_id=t.student_id, school_id=t.school_id, case_id=t.case_id)
        kwargs = {"json": body(world, target)} if body else {}
        return world.clients[role].request(method, url, headers=world.tokens[role], **kwargs)

    return call


def _page(method: str, path: str, form: Callable[[World, str], dict] | None = None) -> Call:
    def call(world: World, role: str, target: str) -> Any:
        t = world.targets[target]
        url = path.format(
            student_id=t.student_id, school_id=t.school_id, case_id=t.case_id, as_of=AS_OF
        )
        client = world.clients[role]
        if method == "GET":
            return client.get(url, follow_redirects=False)
        data = {"csrf_token": world.csrf[role], **(form(world, target) if form else {})}
        return client.post(url, data=data, follow_redirects=False)

    return call


def _teacher_list_of_other_class(world: World, role: str, target: str) -> Any:
    """A list read: another school's list, or (other_class) the own school's list
    narrowed to a class that is not the viewer's."""
    t = world.targets[target]
    params = {"class_id": t.class_id} if target == "other_class" else {}
    return world.clients[role].get(
        f"/v1/lists/{t.school_id}", params=params, headers=world.tokens[role]
    )


VISIT = {"date": "2026-03-17", "kind": "home_visit", "outcome": "contacted", "note": "met"}
API_VISIT = VISIT  # the role comes from the account (issue 21 item 8)
ROUTES: dict[tuple[str, str], tuple[str, Call | None]] = {
    # the JSON API
    ("POST", "/v1/auth/token"): ("open", None),
    ("POST", "/v1/auth/logout"): ("open", None),  # any logged-in user, for their own tokens
    ("GET", "/health"): ("open", None),
    ("GET", "/v1/model"): ("open", None),
    ("POST", "/v1/admin/reload"): ("county", _api("POST", "/v1/admin/reload")),
    ("GET", "/v1/lists/{school_id}"): ("school", _teacher_list_of_other_class),
    ("GET", "/v1/students/{student_id}"): ("student", _api("GET", "/v1/students/{student_id}")),
    ("POST", "/v1/students/{student_id}/interventions"): (
        "student",
        _api("POST", "/v1/students/{student_id}/interventions", lambda w, t: API_VISIT),
    ),
    ("POST", "/v1/students/{student_id}/feedback"): (
        "student",
        _api("POST", "/v1/students/{student_id}/feedback", lambda w, t: {"kind": "useful"}),
    ),
    ("POST", "/v1/score"): (
        "student",
        _api(
            "POST",
            "/v1/score",
            lambda w, t: {"as_of": AS_OF.isoformat(), "tables": w.records[t]},
        ),
    ),
    # the pages
    ("GET", "/login"): ("open", None),
    ("POST", "/login"): ("open", None),
    ("POST", "/logout"): ("open", None),
    ("GET", "/"): ("open", None),
    ("GET", "/lists/{school_id}/{as_of}.xlsx"): (
        "xlsx",
        _page("GET", "/lists/{school_id}/{as_of}.xlsx"),
    ),
    ("GET", "/students/{student_id}"): ("student", _page("GET", "/students/{student_id}")),
    ("POST", "/students/{student_id}/interventions"): (
        "student",
        _page("POST", "/students/{student_id}/interventions", lambda w, t: VISIT),
    ),
    ("POST", "/students/{student_id}/feedback"): (
        "student",
        _page("POST", "/students/{student_id}/feedback", lambda w, t: {"kind": "useful"}),
    ),
    ("GET", "/cases/{case_id}"): ("student", _page("GET", "/cases/{case_id}")),
    ("POST", "/cases/{case_id}/plan"): (
        "student",
        _page("POST", "/cases/{case_id}/plan", lambda w, t: {"plan": "weekly call"}),
    ),
    ("POST", "/cases/{case_id}/owner"): (
        "manage",
        _page("POST", "/cases/{case_id}/owner", lambda w, t: {"owner": w.user_ids["teacher"]}),
    ),
    ("POST", "/cases/{case_id}/close"): (
        "manage",
        _page(
            "POST", "/cases/{case_id}/close", lambda w, t: {"status": "returned", "reason": "back"}
        ),
    ),
    ("GET", "/upload"): ("upload", _page("GET", "/upload")),
    ("POST", "/upload"): ("upload", _page("POST", "/upload")),  # no file: a 422 page
    # framework pages without student data
    ("GET", "/openapi.json"): ("open", None),
    ("GET", "/docs"): ("open", None),
    ("MOUNT", "/docs/assets"): ("open", None),  # Swagger UI's files, served locally
    ("MOUNT", "/static"): ("open", None),
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers (HEAD left out), mounts as MOUNT."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120)
                context = getattr(route, "include_context", None)
                extra = getattr(context, "prefix", "") or ""
                yield from walk(route.original_router.routes, prefix + extra)
            elif getattr(route, "methods", None):
                for method in route.methods - {"HEAD"}:
                    yield method, prefix + route.path
            else:
                yield "MOUNT", prefix + route.path

    return set(walk(app.router.routes, ""))


def expected_to_see(kind: str, role: str, target: str) -> bool:
    if kind == "xlsx":  # the school list file: the county and the school's admin
        return role == "county_admin" or (role == "school_admin" and target != "other_school")
    if kind == "county":
        return role == "county_admin"
    if kind == "manage":  # naming the responsible adult, 销号: the county, the school admin
        return role in ("county_admin", "school_admin") and target in SEES[role]
    if kind == "upload":  # a school admin, their own school's export; the county, any school's
        return role in ("school_admin", "county_admin")
    return target in SEES[role]


# -- the world ---------------------------------------------------------------------------


def _pick_students(small_county) -> dict[str, tuple[str, str, str]]:
    """target -> (student, school, class) among pupils enrolled in 2025 (AS_OF's year)."""
    e = small_county.enrolments
    now = e[e["school_year"] == 2025]
    dropped = set(small_county.status_events.loc[lambda f: f["event"] != "enrol", "student_id"])
    now = now[~now["student_id"].isin(dropped)].sort_values("student_id")
    own = now[now["school_id"] == SCHOOL].iloc[0]
    other_class = now[(now["school_id"] == SCHOOL) & (now["class_id"] != own["class_id"])].iloc[0]
    other_school = now[now["school_id"] == OTHER_SCHOOL].iloc[0]
    return {
        name: (str(row["student_id"]), str(row["school_id"]), str(row["class_id"]))
        for name, row in zip(TARGETS, (own, other_class, other_school), strict=True)
    }


def _seed(session, picked: dict[str, tuple[str, str, str]]) -> dict[str, int]:
    """Two weeks of stored scores and one open case per picked student."""
    for as_of in WEEKS:
        run = queries.start_run(session, as_of=as_of, model_version="1")
        rows = [
            queries.WeeklyScoreIn(
                student_id=student_id,
                school_id=school_id,
                class_id=class_id,
                grade_level=7,
                risk_score=0.3,
                margin=0.0,
                rank_in_school=1,
                tier="high",
                escalation_level=0,
                reasons=(),
            )
            for student_id, school_id, class_id in picked.values()
        ]
        queries.save_weekly_scores(session, run.id, rows)
        queries.finish_run(session, run.id)
    return {
        name: queries.open_case(
            session, queries.CaseIn(student_id=sid, school_id=school, reason="high_tier")
        ).id
        for name, (sid, school, _) in picked.items()
    }


def _login(client: TestClient, username: str) -> str:
    """Log in to the pages; the CSRF token of the new session."""
    token = CSRF.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
    done = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]
    return CSRF.search(client.get("/").text).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def world(trained, small_county, migrated_template, tmp_path_factory) -> Iterator[World]:
    _, store, _ = trained
    home = tmp_path_factory.mktemp("access")
    db_path = home / "baoxue.db"
    shutil.copyfile(migrated_template, db_path)
    settings = make_settings(home / "home", db_path, store.tracking_uri)
    settings.mlflow.model_name = store.model_name
    picked = _pick_students(small_county)
    app = create_app(settings)
    with TestClient(app) as first:
        with app.state.sessions.begin() as session:
            case_ids = _seed(session, picked)
            own_class = picked["own_class"][2]
            users = {
                "county_admin": add_user(session, "m_county", PASSWORD, "county_admin"),
                "school_admin": add_user(session, "m_admin", PASSWORD, "school_admin", SCHOOL),
                "teacher": add_user(session, "m_teacher", PASSWORD, "teacher", SCHOOL, [own_class]),
                "researcher": add_user(session, "m_research", PASSWORD, "researcher"),
            }
        clients = {"county_admin": first} | {r: TestClient(app) for r in ROLES[1:]}
        tokens: dict[str, dict[str, str]] = {}
        csrf: dict[str, str] = {}
        for role, user in users.items():
            answer = clients[role].post(
                "/v1/auth/token", data={"username": user.username, "password": PASSWORD}
            )
            tokens[role] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            csrf[role] = _login(clients[role], user.username)
        targets = {
            name: Target(sid, school, klass, case_ids[name])
            for name, (sid, school, klass) in picked.items()
        }
        for school in (SCHOOL, OTHER_SCHOOL):  # the week's list files the batch would write
            lists = settings.paths.lists / AS_OF.isoformat()
            lists.mkdir(parents=True, exist_ok=True)
            (lists / f"{school}.xlsx").write_bytes(b"PK\x05\x06" + bytes(18))
        records = {name: records_json(small_county, {t.student_id}) for name, t in targets.items()}
        yield World(
            app, clients, tokens, csrf, {r: u.id for r, u in users.items()}, targets, records
        )
        for client in clients.values():
            client.close()


def _audit(world: World) -> list[AccessRow]:
    with world.app.state.sessions() as session:
        return recent_access(session, limit=100_000)


# -- the tests -----------------------------------------------------------------------------


def test_every_route_has_an_entry(world: World) -> None:
    routes = app_routes(world.app)
    assert routes - set(ROUTES) == set(), "add the new route(s) to the access matrix"
    assert set(ROUTES) - routes == set(), "the matrix names routes the app no longer has"


OK = (200, 201, 303)  # shown, created, saved and redirected
ALLOWED = dict.fromkeys(ROUTES, OK) | {
    ("POST", "/upload"): (422,),  # no file sent: the form again, with the reason
    # a change the case cannot take (closed already by the county; an owner who is not
    # staff of that school) is the form again with a message, not a refusal
    ("POST", "/cases/{case_id}/owner"): (*OK, 422),
    ("POST", "/cases/{case_id}/close"): (*OK, 422),
}
SCOPED = [(m, p) for (m, p), (kind, _) in ROUTES.items() if kind != "open"]


@pytest.mark.parametrize("route", SCOPED, ids=[f"{m} {p}" for m, p in SCOPED])
def test_every_role_reaches_only_its_students_and_refusals_are_audited(
    world: World, route: tuple[str, str]
) -> None:
    kind, call = ROUTES[route]
    assert call is not None
    problems: list[str] = []
    for role in ROLES:
        for target in TARGETS:
            t = world.targets[target]
            before = {row.id for row in _audit(world)}
            response = call(world, role, target)
            new = [row for row in _audit(world) if row.id not in before]
            where = f"{role} -> {target}: {response.status_code}"
            if response.status_code >= 500:
                problems.append(f"{where} server error")
            elif expected_to_see(kind, role, target):
                if response.status_code not in ALLOWED[route]:
                    problems.append(f"{where} refused in scope {response.text[:200]}")
            else:
                if response.status_code not in (403, 404):
                    problems.append(f"{where} NOT refused")
                if kind == "county":
                    continue  # names no student: a role check, nothing to audit
                mine = [row for row in new if row.user_id == world.user_ids[role]]
                refusals = [
                    row
                    for row in mine
                    if ("->" in row.action)
                    and (
                        kind == "upload"  # the viewer's own school, no student
                        or row.student_id == t.student_id
                        or row.school_id == t.school_id
                    )
                ]
                if not refusals:
                    problems.append(f"{where} refused but not audited ({mine})")
    assert not problems, "\n".join(problems)


def test_open_routes_never_fail_and_name_no_student(world: World) -> None:
    ids = [t.student_id for t in world.targets.values()]
    for role in ROLES:
        client = world.clients[role]
        for (method, path), (kind, _) in ROUTES.items():
            if kind != "open" or method != "GET" or "{" in path or path == "/":
                continue
            response = client.get(path, headers=world.tokens[role])
            assert response.status_code < 500, (role, path)
            assert not any(sid in response.text for sid in ids), (role, path)
