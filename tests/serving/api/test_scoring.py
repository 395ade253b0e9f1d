"""Scoring over HTTP with a real model: the session's `trained` champion, the weekly
batch run on `small_county`, and `POST /v1/score` given one school's records as JSON.

The API's scores must equal the batch's for the same students and as_of.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.sources import json_records
from features.tables import ALL_TABLES, RawTables
from serving.app import create_app
from serving.audit import recent_access
from serving.services.users import add_user, get_viewer
from serving.services.weekly_lists import run_weekly
from serving.storage import queries
from tests.serving.api.conftest import PASSWORD, bearer, make_settings

AS_OF = dt.date(2026, 3, 16)  # a Monday in the county's third spring term
SCHOOL = "T01J"


def records_json(tables: RawTables, student_ids: set[str]) -> dict[str, list[dict]]:
    """The tables of `student_ids` (and every school and school day) as JSON rows."""
    out: dict[str, list[dict]] = {}
    for name in ALL_TABLES:
        frame = getattr(tables, name)
        if "student_id" in frame.columns and name != "schools":
            frame = frame[frame["student_id"].isin(student_ids)]
        out[name] = json_records(frame)
    return out


@pytest.fixture(scope="module")
def county_api(trained, small_county, api_template, tmp_path_factory):
    """A started app on the trained champion, with one batch week stored and users of
    school T01J (an admin and a teacher of one class)."""
    _, store, _ = trained
    home = tmp_path_factory.mktemp("scoring-api")
    db_path = home / "baoxue.db"
    shutil.copyfile(api_template.path, db_path)
    settings = make_settings(home / "home", db_path, store.tracking_uri)
    settings.mlflow.model_name = store.model_name
    with TestClient(create_app(settings)) as client:
        state = client.app.state
        loaded = state.models.require()
        result = run_weekly(
            state.sessions,
            loaded,
            small_county,
            as_of=AS_OF,
            capacity=None,
            capacity_share=settings.training.capacity_share,
            lists_dir=home / "lists",
        )
        with state.sessions.begin() as session:
            batch = {r.student_id: r for r in queries.scores_for(session, AS_OF, SCHOOL)}
            a_class = sorted({r.class_id for r in batch.values()})[0]
            viewers = {
                "admin": add_user(session, "admin_t01j", PASSWORD, "school_admin", SCHOOL),
                "teacher": add_user(
                    session, "teacher_t01j", PASSWORD, "teacher", SCHOOL, [a_class]
                ),
            }
            viewers = {k: get_viewer(session, v.id) for k, v in viewers.items()}
        yield client, batch, a_class, viewers, result, loaded


def test_api_scores_equal_the_batch_scores_for_the_same_students_and_as_of(
    county_api, small_county
):
    client, batch, _, viewers, _, loaded = county_api
    body = {"as_of": AS_OF.isoformat(), "tables": records_json(small_county, set(batch))}
    response = client.post("/v1/score", json=body, headers=bearer(viewers["admin"]))
    assert response.status_code == 200, response.json()
    out = response.json()
    assert out["model_version"] == loaded.version
    scored = {s["student_id"]: s for s in out["students"]}
    assert set(scored) == set(batch)
    api = np.array([scored[s]["risk_score"] for s in sorted(batch)])
    stored = np.array([batch[s].risk_score for s in sorted(batch)])
    np.testing.assert_allclose(api, stored, rtol=0, atol=1e-9)
    assert {s: scored[s]["tier"] for s in batch} == {s: r.tier for s, r in batch.items()}
    top = max(scored.values(), key=lambda s: s["risk_score"])
    assert (
        len(top["reasons"]) == 3 and top["reasons"][0]["text_zh"] and top["reasons"][0]["text_en"]
    )
    assert top["actions"] and top["actions"][0]["text_zh"]
    laddered = [s for s in scored.values() if s["ladder"]]
    assert all(s["ladder"]["level"] == batch[s["student_id"]].escalation_level for s in laddered)


def test_scoring_scope_researcher_teacher_and_other_school(county_api, small_county, viewers):
    client, batch, a_class, team, _, _ = county_api
    own = sorted(s for s, r in batch.items() if r.class_id == a_class)[:3]
    records = records_json(small_county, set(batch))
    body = {"as_of": AS_OF.isoformat(), "tables": records}
    whole_school = client.post("/v1/score", json=body, headers=bearer(team["teacher"]))
    assert whole_school.status_code == 403
    assert whole_school.json()["error"] == "not_your_student"
    mine = client.post(
        "/v1/score", json={**body, "student_ids": own}, headers=bearer(team["teacher"])
    )
    assert mine.status_code == 200
    assert [s["student_id"] for s in mine.json()["students"]] == own
    assert all(s["tier"] is None for s in mine.json()["students"])  # a subset has no tier
    other = client.post("/v1/score", json=body, headers=bearer(viewers["admin_a"]))
    assert other.status_code == 403
    researcher = client.post("/v1/score", json=body, headers=bearer(viewers["researcher"]))
    assert researcher.status_code == 403 and researcher.json()["error"] == "forbidden"
    unknown = client.post(
        "/v1/score", json={**body, "student_ids": ["S999999"]}, headers=bearer(team["admin"])
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "student_not_found"


def test_records_breaking_the_contract_are_named_by_table_row_and_column(county_api, small_county):
    client, batch, _, team, _, _ = county_api
    records = records_json(small_county, set(sorted(batch)[:5]))
    records["grades"][3] = {**records["grades"][3], "score": "eighty"}
    del records["students"][1]["sex"]
    body = {"as_of": AS_OF.isoformat(), "tables": records}
    response = client.post("/v1/score", json=body, headers=bearer(team["admin"]))
    assert response.status_code == 422
    out = response.json()
    assert out["error"] == "invalid_records"
    found = {(v["table"], v["row"], v["column"]) for v in out["violations"]}
    assert ("grades", 3, "score") in found
    assert ("students", 1, "sex") in found
    assert "eighty" not in response.text  # cell values are not echoed


def test_model_health_list_and_student_record_with_the_real_model(county_api):
    client, batch, a_class, team, result, loaded = county_api
    model = client.get("/v1/model", headers=bearer(team["teacher"]))
    assert model.status_code == 200
    assert model.json()["version"] == loaded.version and model.json()["test_metrics"]
    assert model.json()["data_fingerprint"] == loaded.data_fingerprint
    assert client.get("/health").json()["status"] == "ok"
    listed = client.get(f"/v1/lists/{SCHOOL}", headers=bearer(team["teacher"])).json()
    assert listed["rows"] and {r["class_id"] for r in listed["rows"]} == {a_class}
    student = listed["rows"][0]["student_id"]
    record = client.get(f"/v1/students/{student}", headers=bearer(team["teacher"])).json()
    assert record["current"]["risk_score"] == pytest.approx(batch[student].risk_score)
    assert record["current"]["as_of"] == AS_OF.isoformat()
    assert client.post("/v1/admin/reload", headers=bearer(team["admin"])).status_code == 403


@pytest.mark.bench
def test_student_record_latency(county_api):
    """p50/p99 of GET /v1/students/{id} through TestClient (run with -m bench)."""
    client, batch, _, team, _, _ = county_api
    headers = bearer(team["admin"])
    ids = sorted(batch)
    timings = []
    for i in range(300):
        started = time.perf_counter()
        assert client.get(f"/v1/students/{ids[i % len(ids)]}", headers=headers).status_code == 200
        timings.append(time.perf_counter() - started)
    p50, p99 = np.percentile(timings, [50, 99]) * 1000
    print(f"GET /v1/students/{{id}}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def test_a_refused_scoring_request_writes_one_audit_row_with_its_count(county_api, small_county):
    # Issue 21 item 6: a refusal once wrote one audit row per posted student (5,000 rows
    # from one request); now one row says how many students the request named.
    client, batch, _, team, _, _ = county_api
    body = {"as_of": AS_OF.isoformat(), "tables": records_json(small_county, set(batch))}
    with client.app.state.sessions() as session:
        before = {row.id for row in recent_access(session, limit=100_000)}
    refused = client.post("/v1/score", json=body, headers=bearer(team["teacher"]))
    assert refused.status_code == 403
    with client.app.state.sessions() as session:
        new = [row for row in recent_access(session, limit=100_000) if row.id not in before]
    assert len(new) == 1
    (row,) = new
    assert row.action == f"POST /v1/score -> not_your_student ({len(batch)} students)"
    assert (row.username, row.school_id, row.student_id) == ("teacher_t01j", SCHOOL, None)
