"""Ids no database holds, sent to the pages (issue 21 item 9): a case id or an owner id
past the database's integer range, a school id longer than the contract allows. Each
answered 500 before; now each is a 404 or 422, and every refusal is audited, with what the
audit cannot hold cut to its column instead of the row being skipped."""

from __future__ import annotations

import pytest

from serving.audit import ACTION_MAX
from tests.serving.pages.conftest import LATEST, audit_rows
from tests.serving.pages.test_case_pages import case_id_of
from tests.serving.pages.test_pages import csrf_of, log_in

HUGE = 99999999999999999999  # past 2**63 - 1 (SQLite's integer) and 2**31 - 1 (PostgreSQL's)
PG_ONLY = 2**31  # fits SQLite's integer, not an Integer column on PostgreSQL


@pytest.mark.parametrize("case_id", [HUGE, PG_ONLY, 0, -1])
def test_a_case_id_out_of_range_is_not_found_not_a_500(client, case_id):
    log_in(client, "county_admin")
    page = client.get(f"/cases/{case_id}")
    assert page.status_code in (404, 422), page.text
    assert "internal_error" not in page.text


@pytest.mark.parametrize("route", ["plan", "owner", "close"])
def test_a_case_change_with_an_id_out_of_range_is_refused_not_a_500(client, route):
    log_in(client, "principal_a")
    token = csrf_of(client.get("/").text)
    data = {"csrf_token": token, "plan": "x", "owner": "1", "status": "returned", "reason": "x"}
    answer = client.post(f"/cases/{HUGE}/{route}", data=data)
    assert answer.status_code in (404, 422), answer.text
    assert "internal_error" not in answer.text


@pytest.mark.parametrize("owner", [str(2**70), str(PG_ONLY), "-1"])
def test_an_owner_id_out_of_range_is_a_422_not_a_500(client, owner):
    log_in(client, "principal_a")
    client.get("/")  # opens the week's cases
    case_id = case_id_of(client, "STU-A07")
    token = csrf_of(client.get(f"/cases/{case_id}").text)
    answer = client.post(f"/cases/{case_id}/owner", data={"csrf_token": token, "owner": owner})
    assert answer.status_code == 422, answer.text
    assert "owner" in answer.text and "internal_error" not in answer.text


def test_a_long_school_id_in_a_list_download_is_not_found_and_audited(client):
    log_in(client, "county_admin")
    school_id = "S" * 120
    answer = client.get(f"/lists/{school_id}/{LATEST.isoformat()}.xlsx")
    assert answer.status_code == 404, answer.text
    rows = [a for a in audit_rows(client) if a.action.startswith("GET /lists/")]
    assert len(rows) == 1  # audited, not skipped
    assert len(rows[0].action) <= ACTION_MAX
    assert rows[0].school_id is None or len(rows[0].school_id) <= 64


def test_a_refused_long_school_id_is_audited_not_a_500(client):
    log_in(client, "principal_a")  # not the county: refused before any file is looked at
    answer = client.get(f"/lists/{'S' * 120}/{LATEST.isoformat()}.xlsx")
    assert answer.status_code in (403, 404), answer.text
    rows = [a for a in audit_rows(client) if a.action.startswith("GET /lists/")]
    assert len(rows) == 1 and len(rows[0].action) <= ACTION_MAX
