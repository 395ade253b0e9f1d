"""Drift report: PSI by hand, a planted broken attendance feed on a small county."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.feeds import school_of_rows
from training.drift import (
    assign_tiers,
    population_stability_index,
    run_drift,
    severity,
)
from training.drift_report import log_drift_to_mlflow, render_markdown, write_drift_report

DATE_FROM = dt.date(2025, 5, 26)
DATE_TO = dt.date(2025, 6, 23)
ATTENDANCE_FEATURES = ("unexcused_14d", "leave_14d", "unexcused_30d", "leave_30d")


class AbsenceScorer:
    """A stand-in model: more recent absence, more risk (deterministic, no fitting)."""

    def risk_scores(self, snapshot: pd.DataFrame) -> np.ndarray:
        raw = snapshot["unexcused_30d"].to_numpy(float) + snapshot["leave_30d"].to_numpy(float)
        return 1.0 - np.exp(-0.3 * raw - 0.01)


@pytest.fixture(scope="module")
def county():
    from features.synthetic import generate_county

    return generate_county(n_students=1500, n_years=2, seed=5)


@pytest.fixture(scope="module")
def busiest_school(county) -> str:
    absences = county.attendance[county.attendance["status"] != "present"]
    return str(school_of_rows(county, absences)["school_id"].value_counts().index[0])


@pytest.fixture(scope="module")
def planted(county, busiest_school):
    """The county with every attendance row of one school's pupils deleted from DATE_FROM."""
    att = county.attendance
    rows = school_of_rows(county, att)
    pupils = set(
        rows.loc[
            (rows["school_id"] == busiest_school) & (rows["date"] >= pd.Timestamp(DATE_FROM)),
            "student_id",
        ]
    )
    drop = att["student_id"].isin(pupils) & (att["date"] >= pd.Timestamp(DATE_FROM))
    return county.replace(attendance=att.loc[~drop].reset_index(drop=True))


@pytest.fixture(scope="module")
def unchanged_report(county):
    return run_drift(county, date_from=DATE_FROM, date_to=DATE_TO, model=AbsenceScorer())


@pytest.fixture(scope="module")
def planted_report(planted):
    return run_drift(planted, date_from=DATE_FROM, date_to=DATE_TO, model=AbsenceScorer())


def test_psi_is_zero_for_identical_samples_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=2000)
    assert population_stability_index(sample, sample) == 0.0
    assert population_stability_index(sample, sample + 0.05) < 0.1
    assert population_stability_index(sample, sample + 1.0) > 0.25
    flags = np.array([0] * 90 + [1] * 10)
    assert population_stability_index(flags, flags) == 0.0
    assert population_stability_index(flags, np.array([0] * 50 + [1] * 50)) > 0.25


def test_missing_values_are_their_own_bin():
    known = np.arange(100, dtype=float)
    half_missing = np.where(np.arange(100) % 2 == 0, np.nan, known)
    assert population_stability_index(known, half_missing) > 0.25
    assert population_stability_index([np.nan] * 10, [np.nan] * 10) == 0.0
    assert np.isnan(population_stability_index([], [1.0]))


def test_severity_thresholds():
    assert [severity(v) for v in (0.0, 0.099, 0.1, 0.25, 0.26)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "major",
    ]


def test_tiers_follow_the_capacity_rule():
    scored = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2025-06-02"),
            "school_id": "A",
            "student_id": [f"S{i:02d}" for i in range(41)],
            "risk_score": np.linspace(1.0, 0.0, 41),
        }
    )
    tiers = assign_tiers(scored)
    # ceil(5 % of 41) = 3 high, the next 6 medium
    assert tiers.tolist() == ["high"] * 3 + ["medium"] * 6 + ["low"] * 32


def test_unchanged_county_has_no_feed_warning(unchanged_report):
    assert unchanged_report.feed_warnings == ()
    assert unchanged_report.recent_as_ofs == 5
    assert unchanged_report.reference_to < DATE_FROM
    assert set(unchanged_report.tiers["tier"]) == {"high", "medium", "low"}
    assert unchanged_report.tiers["recent_share"].sum() == pytest.approx(1.0)


def test_planted_gap_is_flagged_and_attendance_psi_rises(
    unchanged_report, planted_report, busiest_school
):
    warned = [(w.school_id, w.check) for w in planted_report.feed_warnings]
    assert warned == [(busiest_school, "no_absences")]
    assert busiest_school in planted_report.feed_sentences[0]
    for name in ATTENDANCE_FEATURES:
        assert planted_report.psi(name) > unchanged_report.psi(name), name
    assert planted_report.score.recent_mean < unchanged_report.score.recent_mean
    # the reference weeks are untouched
    assert planted_report.reference_rows == unchanged_report.reference_rows


def test_calendar_and_grades_checks(county):
    school = sorted(county.calendar["school_id"].unique())[0]
    cal = county.calendar
    stopped = cal[~((cal["school_id"] == school) & (cal["date"] >= pd.Timestamp("2025-06-01")))]
    report = run_drift(county.replace(calendar=stopped), date_from=DATE_FROM, date_to=DATE_TO)
    assert (school, "calendar_stops") in [(w.school_id, w.check) for w in report.feed_warnings]

    graded = school_of_rows(county, county.grades)
    spring = (graded["school_id"] == school) & (graded["date"] >= pd.Timestamp("2025-02-01"))
    lost = set(graded.loc[spring, "student_id"])
    grades = county.grades
    keep = ~(grades["student_id"].isin(lost) & (grades["date"] >= pd.Timestamp("2025-02-01")))
    report = run_drift(
        county.replace(grades=grades.loc[keep]),
        date_from=dt.date(2025, 6, 2),
        date_to=dt.date(2025, 7, 28),
    )
    assert [(w.school_id, w.check) for w in report.feed_warnings] == [(school, "no_grades")]
    # within the grace after the term's end its grades are not due yet
    term_end = pd.Timestamp(county.calendar["date"].max()).date()
    early = run_drift(
        county.replace(grades=grades.loc[keep]),
        date_from=dt.date(2025, 6, 2),
        date_to=term_end + dt.timedelta(days=7),
    )
    assert "no_grades" not in {w.check for w in early.feed_warnings}


def test_markdown_names_the_school(planted_report, busiest_school):
    text = render_markdown(planted_report)
    assert f"**{busiest_school}** (no_absences)" in text
    assert "risk_score PSI" in text
    top = planted_report.features["feature"].iloc[0]
    assert f"`{top}`" in text


def test_write_drift_report_leaves_a_complete_folder(planted_report, tmp_path):
    out = tmp_path / "drift"
    out.mkdir()
    (out / "stale.txt").write_text("last week")
    write_drift_report(planted_report, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "features.csv",
        "feed_warnings.csv",
        "report.md",
        "score_distribution.png",
        "tiers.csv",
        "top_psi.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift"]
    features = pd.read_csv(out / "features.csv")
    assert len(features) == len(planted_report.features)
    assert (out / "top_psi.png").read_bytes()[:4] == b"\x89PNG"


def test_log_drift_to_mlflow(planted_report, tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.conftest import make_store

    store = make_store(tmp_path / "mlflow")
    run_id = log_drift_to_mlflow(planted_report, store)
    run = MlflowClient(tracking_uri=store.tracking_uri).get_run(run_id)
    assert run.data.tags["baoxue.kind"] == "drift"
    assert run.data.metrics["feed_warnings"] == 1.0
    assert run.data.metrics["psi_unexcused_14d"] == pytest.approx(
        planted_report.psi("unexcused_14d")
    )
    artifacts = {
        a.path
        for folder in ("drift", "plots")
        for a in MlflowClient(tracking_uri=store.tracking_uri).list_artifacts(run_id, folder)
    }
    assert {"drift/report.md", "drift/features.csv", "plots/top_psi.png"} <= artifacts
