"""Tests for the OULAD importer (features/oulad.py).

A hand-made OULAD of a few students checks each mapping rule of docs/oulad.md; the real
shipped data (/work/shared/data/oulad, when present) must import end to end.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.oulad import (
    OULAD_TABLES,
    ImportSummary,
    OuladInputError,
    import_oulad,
    oulad_to_tables,
    read_oulad,
)
from features.schemas import KEYS, schema
from features.tables import OPTIONAL_COLUMNS, RawTables
from tests.oulad import missing_reason, oulad_dir

SHIPPED = oulad_dir()
NAN = np.nan


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def small_oulad() -> dict[str, pd.DataFrame]:
    """Three students, two modules, one retake; OULAD's shapes and dtypes.

    AAA 2013J starts 2013-10-01 and runs 20 days (to 2013-10-21); AAA 2014B starts
    2014-02-01 (to 2014-02-21); BBB 2013J as AAA 2013J.

    * student 1, AAA 2013J, Pass: TMA on time, TMA late, banked CMA, exam without score;
      also in BBB 2013J (Fail, submits nothing) -> a second pseudonymous student.
    * student 2, AAA 2013J, Withdrawn on day 8 after one late TMA; retakes in 2014B (Pass)
      and misses the exam.
    * student 3, AAA 2013J, unregistered on day -2 -> left out of every table.
    """
    courses = pd.DataFrame(
        {
            "code_module": ["AAA", "AAA", "BBB"],
            "code_presentation": ["2013J", "2014B", "2013J"],
            "module_presentation_length": [20, 20, 20],
        }
    )
    assessments = pd.DataFrame(
        {
            "code_module": ["AAA"] * 6 + ["BBB"],
            "code_presentation": ["2013J"] * 4 + ["2014B"] * 2 + ["2013J"],
            "id_assessment": [11, 12, 13, 14, 21, 22, 31],
            "assessment_type": ["TMA", "TMA", "CMA", "Exam", "TMA", "Exam", "TMA"],
            "date": [5.0, 12.0, 12.0, NAN, 5.0, NAN, 8.0],
            "weight": [25.0, 25.0, 0.0, 100.0, 50.0, 100.0, 100.0],
        }
    )
    info = pd.DataFrame(
        {
            "code_module": ["AAA", "BBB", "AAA", "AAA", "AAA"],
            "code_presentation": ["2013J", "2013J", "2013J", "2014B", "2013J"],
            "id_student": [1, 1, 2, 2, 3],
            "gender": ["F", "F", "M", "M", "F"],
            "region": ["Wales"] * 5,
            "highest_education": [
                "HE Qualification",
                "HE Qualification",
                "No Formal quals",
                "No Formal quals",
                "A Level or Equivalent",
            ],
            "imd_band": ["10-20", "10-20", NAN, "50-60%", "0-10%"],
            "age_band": ["0-35", "0-35", "35-55", "35-55", "55<="],
            "num_of_prev_attempts": [0, 0, 0, 1, 0],
            "studied_credits": [60, 60, 120, 60, 30],
            "disability": ["N", "N", "Y", "Y", "N"],
            "final_result": ["Pass", "Fail", "Withdrawn", "Pass", "Withdrawn"],
        }
    )
    registration = pd.DataFrame(
        {
            "code_module": info["code_module"],
            "code_presentation": info["code_presentation"],
            "id_student": info["id_student"],
            "date_registration": [-10.0, -3.0, -5.0, -20.0, -30.0],
            "date_unregistration": [NAN, NAN, 8.0, NAN, -2.0],
        }
    )
    student_assessment = pd.DataFrame(
        {
            "id_assessment": [11, 12, 13, 14, 11, 21, 11],
            "id_student": [1, 1, 1, 1, 2, 2, 3],
            "date_submitted": [4, 15, -100, 18, 7, 5, 3],
            "is_banked": [0, 0, 1, 0, 0, 0, 0],
            "score": [70.0, 60.0, 80.0, NAN, 55.0, 90.0, 40.0],
        }
    )
    return {
        "courses": courses,
        "assessments": assessments,
        "studentInfo": info,
        "studentRegistration": registration,
        "studentAssessment": student_assessment,
    }


def _rows(frame: pd.DataFrame, student_id: str) -> pd.DataFrame:
    return frame[frame["student_id"] == student_id].reset_index(drop=True)


def _check_contract(tables: RawTables) -> None:
    """The invariants `load_export` checks: schemas, keys, foreign keys, calendar days."""
    for name, frame in tables.as_dict().items():
        if name == "interventions":
            continue
        sch = schema(name)
        absent = [c for c in sch.columns if c not in frame.columns]
        assert set(absent) <= set(OPTIONAL_COLUMNS.get(name, ())), name
        sch.remove_columns(absent).validate(frame, lazy=True)
        if name in KEYS:
            assert not frame.duplicated(list(KEYS[name])).any(), name
    students = set(tables.students["student_id"])
    schools = set(tables.schools["school_id"])
    for name in ("enrolments", "attendance", "grades", "status_events", "student_attributes"):
        assert set(getattr(tables, name)["student_id"]) <= students, name
    assert set(tables.calendar["school_id"]) <= schools
    assert set(tables.enrolments["school_id"]) <= schools
    assert set(tables.status_events["school_id"]) <= schools
    # Enrolment rows of one student never overlap.
    enrol = tables.enrolments.sort_values(["student_id", "start_date"])
    previous_end = enrol.groupby("student_id")["end_date"].shift()
    assert not (enrol["start_date"] <= previous_end).any()
    # Every attendance row lies on a school day of the enrolment in force on its date.
    att = tables.attendance.merge(tables.enrolments, on="student_id")
    att = att[(att["date"] >= att["start_date"]) & (att["date"] <= att["end_date"])]
    assert len(att) == len(tables.attendance)
    on_calendar = att.merge(tables.calendar, on=["school_id", "date"], how="left", indicator=True)
    assert (on_calendar["_merge"] == "both").all()
    # Status events alternate enrol / leaving in time for every student.
    events = tables.status_events.sort_values(["student_id", "date"], kind="stable")
    is_enrol = (events["event"] == "enrol").to_numpy()
    position = events.groupby("student_id").cumcount().to_numpy()
    assert (is_enrol == (position % 2 == 0)).all()
    assert not events.duplicated(["student_id", "date", "event"]).any()


@pytest.fixture
def tables() -> RawTables:
    return oulad_to_tables(small_oulad())


def test_small_oulad_meets_the_contract(tables: RawTables) -> None:
    _check_contract(tables)


def test_schools_calendar_and_one_student_per_module(tables: RawTables) -> None:
    assert list(tables.schools["school_id"]) == ["AAA", "BBB"]
    assert list(tables.schools["name"]) == ["OU module AAA", "OU module BBB"]
    assert set(tables.schools["level"]) == {"junior"}
    assert not tables.schools["rural"].any()
    aaa = tables.calendar[tables.calendar["school_id"] == "AAA"]["date"]
    # day 0..20 of two presentations: 21 + 21 days
    assert len(aaa) == 42
    assert aaa.min() == _ts("2013-10-01") and aaa.max() == _ts("2014-02-21")
    assert sorted(tables.students["student_id"]) == ["AAA-1", "AAA-2", "BBB-1"]


def test_unregistered_before_day_0_is_left_out_everywhere(tables: RawTables) -> None:
    for name, frame in tables.as_dict().items():
        if "student_id" in frame.columns:
            assert "AAA-3" not in set(frame["student_id"]), name


def test_students_and_attributes(tables: RawTables) -> None:
    students = tables.students.set_index("student_id")
    assert students.loc["AAA-1", "sex"] == "F"
    assert students.loc["AAA-1", "poverty_registered"]  # imd "10-20" (no %)
    assert not students.loc["AAA-2", "poverty_registered"]  # first presentation: no imd
    assert students.loc["AAA-2", "disability"]
    # synthetic birth date: middle of the age band at the first presentation's start
    assert students.loc["AAA-1", "birth_date"] == _ts("1988-10-01")
    assert students.loc["AAA-2", "birth_date"] == _ts("1968-10-01")
    attrs = tables.student_attributes.pivot(index="student_id", columns="attribute", values="value")
    assert attrs.loc["AAA-1", "imd_band"] == 1.0
    assert np.isnan(attrs.loc["AAA-2", "imd_band"])  # row omitted: missing imd band
    assert attrs.loc["AAA-2", "age_band"] == 1.0
    assert attrs.loc["AAA-2", "highest_education"] == 0.0
    # taken from the first presentation, so a later retake does not leak into it
    assert attrs.loc["AAA-2", "num_of_prev_attempts"] == 0.0
    assert attrs.loc["AAA-2", "registration_lead_days"] == 5.0
    assert attrs.loc["BBB-1", "studied_credits"] == 60.0


def test_retake_gives_two_enrolments(tables: RawTables) -> None:
    enrol = _rows(tables.enrolments, "AAA-2")
    assert list(enrol["school_year"]) == [2013, 2014]
    assert list(enrol["class_id"]) == ["AAA-2013J", "AAA-2014B"]
    assert list(enrol["start_date"]) == [_ts("2013-10-01"), _ts("2014-02-01")]
    assert list(enrol["end_date"]) == [_ts("2013-10-21"), _ts("2014-02-21")]
    assert set(tables.enrolments["grade_level"]) == {9}


def test_status_events(tables: RawTables) -> None:
    events = _rows(tables.status_events, "AAA-2")
    assert list(zip(events["date"], events["event"], strict=True)) == [
        (_ts("2013-09-26"), "enrol"),
        (_ts("2013-10-09"), "dropout"),  # day 8 of 2013J
        (_ts("2014-01-12"), "enrol"),  # day -20 of 2014B
        (_ts("2014-02-21"), "graduate"),  # last day of 2014B
    ]
    fail = _rows(tables.status_events, "BBB-1")
    assert list(fail["event"]) == ["enrol", "graduate"]


def test_attendance_late_absent_banked(tables: RawTables) -> None:
    att = {
        (s, d.strftime("%Y-%m-%d")): status
        for s, d, status in tables.attendance.itertuples(index=False)
    }
    assert att == {
        # TMA 12 late and banked CMA 13 share day 12: the worst status stays
        ("AAA-1", "2013-10-13"): "late",
        ("AAA-2", "2013-10-06"): "late",  # TMA 11 submitted on day 7, due day 5
        # nothing for AAA-2 on day 12 / 20 of 2013J: unregistered on day 8
        ("AAA-2", "2014-02-21"): "absent_unexcused",  # missed the 2014B exam (day 20)
        ("BBB-1", "2013-10-09"): "absent_unexcused",  # never submitted TMA 31
    }


def test_grades(tables: RawTables) -> None:
    grades = _rows(tables.grades, "AAA-1").set_index("subject")
    assert sorted(grades.index) == ["cma_j1", "exam_j1", "tma_j1", "tma_j2"]
    assert (grades["max_score"] == 100.0).all()
    assert (grades["school_year"] == 2013).all()
    assert grades.loc["tma_j1", "exam"] == "monthly" and grades.loc["tma_j1", "term"] == 1
    assert grades.loc["tma_j1", "date"] == _ts("2013-10-06")  # deadline day 5 > submitted 4
    assert grades.loc["tma_j2", "date"] == _ts("2013-10-16")  # submitted day 15 > due 12
    assert grades.loc["tma_j2", "term"] == 2
    assert grades.loc["cma_j1", "date"] == _ts("2013-10-13")  # banked: known at deadline
    assert grades.loc["cma_j1", "score"] == 80.0
    assert grades.loc["exam_j1", "exam"] == "final"
    assert grades.loc["exam_j1", "date"] == _ts("2013-10-21")  # no exam date: last day
    assert np.isnan(grades.loc["exam_j1", "score"])
    retake = _rows(tables.grades, "AAA-2")
    assert list(zip(retake["school_year"], retake["subject"], strict=True)) == [
        (2013, "tma_j1"),
        (2014, "tma_b1"),
    ]


def test_withdrawn_without_date_drops_out_on_the_last_day() -> None:
    oulad = small_oulad()
    reg = oulad["studentRegistration"]
    reg.loc[2, "date_unregistration"] = NAN  # student 2, AAA 2013J, Withdrawn
    events = _rows(oulad_to_tables(oulad).status_events, "AAA-2")
    assert list(events["event"])[:2] == ["enrol", "dropout"]
    assert events["date"].iloc[1] == _ts("2013-10-21")


def test_unregistered_non_withdrawn_is_a_dropout() -> None:
    oulad = small_oulad()
    oulad["studentRegistration"].loc[1, "date_unregistration"] = 0.0  # BBB-1, Fail
    events = _rows(oulad_to_tables(oulad).status_events, "BBB-1")
    assert list(events["event"]) == ["enrol", "dropout"]
    assert events["date"].iloc[1] == _ts("2013-10-01")


def test_same_year_presentations_share_one_enrolment_row() -> None:
    """2013B then 2013J: the key (student, school year) allows one row; grades stay apart."""
    oulad = small_oulad()
    oulad["courses"].loc[2] = ["BBB", "2013B", 20]  # BBB-1 moves to 2013B (Feb)
    oulad["studentInfo"].loc[1, "code_presentation"] = "2013B"
    oulad["studentRegistration"].loc[1, "code_presentation"] = "2013B"
    oulad["assessments"].loc[6, "code_presentation"] = "2013B"
    # ...and retakes BBB in 2013J
    oulad["courses"].loc[3] = ["BBB", "2013J", 20]
    oulad["assessments"].loc[7] = ["BBB", "2013J", 41, "TMA", 8.0, 100.0]
    info = oulad["studentInfo"]
    info.loc[5] = info.loc[1]
    info.loc[5, "code_presentation"] = "2013J"
    info.loc[5, "final_result"] = "Pass"
    oulad["studentRegistration"].loc[5] = ["BBB", "2013J", 1, -30.0, NAN]
    sa = oulad["studentAssessment"]
    sa.loc[7] = [31, 1, 8, 0, 50.0]
    sa.loc[8] = [41, 1, 8, 0, 65.0]
    tables = oulad_to_tables(oulad)
    _check_contract(tables)
    enrol = _rows(tables.enrolments, "BBB-1")
    assert len(enrol) == 1
    assert enrol.loc[0, "start_date"] == _ts("2013-02-01")
    assert enrol.loc[0, "end_date"] == _ts("2013-10-21")
    assert enrol.loc[0, "class_id"] == "BBB-2013J"
    assert sorted(_rows(tables.grades, "BBB-1")["subject"]) == ["tma_b1", "tma_j1"]
    # graduate from 2013B (day 20) then enrol again on 2013-09-01 (day -30 of 2013J)
    events = _rows(tables.status_events, "BBB-1")
    assert list(events["event"]) == ["enrol", "graduate", "enrol", "graduate"]


def test_overlapping_presentations_truncate_rows_and_merge_spells() -> None:
    """2013J (long) overlaps 2014B: the earlier row ends before the later one starts, and a
    registration while still active is no new enrol (and the old leaving is no dropout)."""
    oulad = small_oulad()
    oulad["courses"].loc[0, "module_presentation_length"] = 200  # AAA 2013J to 2014-04-19
    reg = oulad["studentRegistration"]
    reg.loc[2, "date_unregistration"] = 130.0  # leaves 2013J on 2014-02-08
    tables = oulad_to_tables(oulad)
    _check_contract(tables)
    enrol = _rows(tables.enrolments, "AAA-2")
    assert list(enrol["end_date"]) == [_ts("2014-01-31"), _ts("2014-02-21")]
    events = _rows(tables.status_events, "AAA-2")
    assert list(zip(events["date"], events["event"], strict=True)) == [
        (_ts("2013-09-26"), "enrol"),
        (_ts("2014-02-21"), "graduate"),
    ]


def test_csv_and_parquet_inputs_agree(tmp_path: Path) -> None:
    oulad = small_oulad()
    csv_dir, parquet_dir = tmp_path / "csv", tmp_path / "parquet"
    csv_dir.mkdir()
    parquet_dir.mkdir()
    for name, frame in oulad.items():
        frame.to_parquet(parquet_dir / f"{name}.parquet", index=False)
        # the original layout: every field quoted, CRLF, missing as empty fields ...
        text = frame.astype("object").where(frame.notna(), "")
        if name == "studentAssessment":  # ... or as "?" in some copies
            text["score"] = text["score"].replace("", "?")
        text.to_csv(
            csv_dir / f"{name}.csv", index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n"
        )
    from_csv = oulad_to_tables(read_oulad(csv_dir))
    from_parquet = oulad_to_tables(read_oulad(parquet_dir))
    for name in from_csv.as_dict():
        pd.testing.assert_frame_equal(
            getattr(from_csv, name), getattr(from_parquet, name), check_dtype=False
        )
    pd.testing.assert_frame_equal(from_csv.grades, oulad_to_tables(oulad).grades)


@pytest.mark.parametrize("missing", OULAD_TABLES)
def test_missing_table_is_named(tmp_path: Path, missing: str) -> None:
    for name, frame in small_oulad().items():
        if name != missing:
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    with pytest.raises(OuladInputError, match=missing):
        read_oulad(tmp_path)


def test_missing_column_is_named() -> None:
    oulad = small_oulad()
    oulad["studentRegistration"] = oulad["studentRegistration"].drop(columns="date_unregistration")
    with pytest.raises(OuladInputError, match="studentRegistration.*date_unregistration"):
        oulad_to_tables(oulad)


def test_bad_values_are_refused() -> None:
    oulad = small_oulad()
    oulad["studentAssessment"].loc[0, "score"] = 101.0
    with pytest.raises(OuladInputError, match="score"):
        oulad_to_tables(oulad)


def test_import_writes_an_export(tmp_path: Path) -> None:
    src = tmp_path / "oulad"
    src.mkdir()
    for name, frame in small_oulad().items():
        frame.to_parquet(src / f"{name}.parquet", index=False)
    summary = import_oulad(src, tmp_path / "export", fmt="csv")
    assert isinstance(summary, ImportSummary)
    assert summary.rows["students"] == 3
    assert summary.registrations_read == 5 and summary.registrations_left_out == 1
    assert summary.dropouts_by_presentation == {"2013J": 1}
    written = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert written == [
        "attendance.csv",
        "calendar.csv",
        "enrolments.csv",
        "grades.csv",
        "schools.csv",
        "status_events.csv",
        "student_attributes.csv",
        "students.csv",
    ]


@pytest.mark.skipif(not SHIPPED.is_dir(), reason=missing_reason())
def test_shipped_oulad_imports(tmp_path: Path) -> None:
    began = time.perf_counter()
    summary = import_oulad(SHIPPED, tmp_path / "oulad", fmt="parquet")
    seconds = time.perf_counter() - began
    assert seconds < 30, f"import took {seconds:.1f} s"
    assert summary.registrations_read == 21_333
    assert summary.registrations_left_out == 1_783
    assert summary.rows == {
        "schools": 7,
        "calendar": 3_052,
        "students": 19_171,
        "enrolments": 19_428,
        "attendance": 70_414,
        "grades": 121_692,
        "status_events": 39_040,
        "student_attributes": 114_354,
    }
    assert summary.dropouts_by_presentation == {"2013B": 1_045, "2013J": 1_677, "2014B": 1_804}
    _check_contract(oulad_to_tables(read_oulad(SHIPPED)))


@pytest.mark.skipif(not SHIPPED.is_dir(), reason=missing_reason())
def test_shipped_oulad_passes_load_export(tmp_path: Path) -> None:
    from features.sources import load_export

    import_oulad(SHIPPED, tmp_path / "oulad", fmt="parquet")
    loaded = load_export(tmp_path / "oulad")
    assert len(loaded.tables.enrolments) == 19_428
