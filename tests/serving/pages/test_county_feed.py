"""The county dashboard warns about a school whose feed looks broken, over HTTP.

The pages' database (newest week 2024-03-11) beside a real export in the data folder the
weekly batch reads: a synthetic county in which one school stopped recording absences
from 2024-02-26, its last two school weeks before that week. That school gets the
warning; the others, whose records keep arriving, do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.feeds import school_of_rows
from serving.app import create_app
from serving.settings import Settings
from tests.serving.pages.test_pages import log_in

STOPPED = pd.Timestamp("2024-02-26")
WARNING = re.compile(
    r'class="alert level-1 feed-warning" data-school="([\w-]+)" data-check="(\w+)"'
)


@pytest.fixture(scope="module")
def county():
    from features.synthetic import generate_county

    return generate_county(n_students=400, n_years=1, seed=1)


@pytest.fixture(scope="module")
def quiet_school(county) -> str:
    """The school with the most absences in the two weeks, whose feed the test stops."""
    absences = county.attendance[county.attendance["status"] != "present"]
    rows = school_of_rows(county, absences)
    return str(rows.loc[rows["date"] >= STOPPED, "school_id"].value_counts().index[0])


def _client(settings: Settings, tables) -> Iterator[TestClient]:
    from features.sources import write_export

    write_export(tables, settings.paths.data, fmt="parquet")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def stopped_client(settings, county, quiet_school) -> Iterator[TestClient]:
    att = county.attendance
    spells = school_of_rows(county, att)
    pupils = set(
        spells.loc[
            (spells["school_id"] == quiet_school) & (spells["date"] >= STOPPED), "student_id"
        ]
    )
    gone = att["student_id"].isin(pupils) & (att["date"] >= STOPPED) & (att["status"] != "present")
    yield from _client(settings, county.replace(attendance=att.loc[~gone]))


@pytest.fixture
def healthy_client(settings, county) -> Iterator[TestClient]:
    yield from _client(settings, county)


def test_a_school_that_stopped_recording_absences_is_warned_about(stopped_client, quiet_school):
    log_in(stopped_client, "county_admin")
    html = stopped_client.get("/").text
    assert WARNING.findall(html) == [(quiet_school, "no_absences")]
    assert "数据上报可能中断的学校" in html and "考勤数据可能中断" in html
    # only that school: every other school of the export stays unmentioned
    section = html[html.index('class="card alerts feed-warnings"') :]
    section = section[: section.index("</section>")]
    others = set(re.findall(r"\b((?:C|T)\d\d[A-Z]\d?)\b", section)) - {quiet_school}
    assert others == set()

    english = stopped_client.get("/?lang=en").text
    assert "no absences recorded for 2 school weeks" in english
    assert f"School {quiet_school}: no absences recorded from 2024-02-26" in english


def test_no_warning_while_every_feed_arrives(healthy_client):
    log_in(healthy_client, "county_admin")
    html = healthy_client.get("/").text
    assert "全县控辍保学概况" in html
    assert WARNING.findall(html) == [] and "feed-warnings" not in html


def test_no_export_no_warning(client):
    log_in(client, "county_admin")
    html = client.get("/").text
    assert "全县控辍保学概况" in html and "feed-warnings" not in html
