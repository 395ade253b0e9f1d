"""The snapshot: shape, dtypes, one pass equals many, and no record from the future."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import CATALOG, catalog_for, feature_columns, spec
from features.snapshot import ID_COLUMNS, build_snapshot, build_snapshots
from features.synthetic import generate_county
from features.tables import ATTENDANCE_STATUSES, EVENTS, RawTables
from tests.features import frames as F

D = dt.date


@pytest.fixture(scope="module")
def county() -> RawTables:
    """A small synthetic county: two school years from September 2023."""
    return generate_county(n_students=150, n_years=2, seed=7)


@pytest.fixture(scope="module")
def tiny_county() -> RawTables:
    """The smallest synthetic county, for the property test (it builds two snapshots per
    example)."""
    return generate_county(n_students=60, n_years=2, seed=3)


def test_columns_dtypes_order_and_catalog(county: RawTables) -> None:
    snapshot = build_snapshot(county, as_of=D(2024, 3, 11))
    assert tuple(snapshot.columns[:4]) == ID_COLUMNS
    features = feature_columns(snapshot)
    assert list(snapshot.columns[4:]) == features
    assert features == [s.name for s in CATALOG]  # no student_attributes in this county
    assert snapshot["student_id"].is_unique
    assert snapshot["student_id"].tolist() == sorted(snapshot["student_id"])
    assert (snapshot["as_of"] == pd.Timestamp("2024-03-11")).all()
    assert snapshot["as_of"].dtype == "datetime64[ns]"
    for name in features:
        assert str(snapshot[name].dtype) == spec(name).dtype, name
        if spec(name).dtype == "int64":
            assert snapshot[name].notna().all()
    assert [s.name for s in catalog_for(snapshot)] == features
    assert snapshot["escalation_level"].between(0, 3).all()
    assert (snapshot["escalation_level"] == snapshot["unexcused_run"].clip(upper=3)).all()


def test_the_population_is_the_enrolled_and_active_students(county: RawTables) -> None:
    as_of = D(2024, 11, 11)
    snapshot = build_snapshot(county, as_of=as_of)
    events = county.status_events
    before = events[events["date"] < pd.Timestamp(as_of)].sort_values("date", kind="stable")
    last = before.groupby("student_id")["event"].last()
    gone = set(last[last.isin(["dropout", "transfer_out", "suspend", "graduate"])].index)
    assert gone, "the synthetic county should have leavers by November of year two"
    assert not gone & set(snapshot["student_id"])


def test_one_pass_equals_one_snapshot_per_date(county: RawTables) -> None:
    as_ofs = [D(2023, 9, 4), D(2024, 2, 26), D(2024, 3, 11), D(2024, 9, 9), D(2025, 4, 7)]
    together = build_snapshots(county, as_ofs=[as_ofs[2], *as_ofs, as_ofs[0]])
    separate = pd.concat([build_snapshot(county, as_of=day) for day in as_ofs], ignore_index=True)
    pd.testing.assert_frame_equal(together, separate)
    assert together["as_of"].nunique() == len(as_ofs)


def test_ethnic_minority_is_never_a_column(county: RawTables) -> None:
    assert "ethnic_minority" in county.students.columns
    attrs = F.frame(
        "student_attributes",
        [("S000001", "ethnic_minority", 1.0)],
        ["student_id", "attribute", "value"],
    )
    snapshot = build_snapshot(county.replace(student_attributes=attrs), as_of=D(2024, 3, 11))
    assert not [c for c in snapshot.columns if "ethnic" in c]


def test_names_never_reach_the_snapshot(county: RawTables) -> None:
    """Pupils' and classes' names are for people: no snapshot column holds them, and
    other names give the same snapshot to the last bit."""
    as_ofs = [D(2023, 11, 6), D(2024, 3, 11)]
    snapshot = build_snapshots(county, as_ofs=as_ofs)
    assert county.students["name"].notna().all() and county.enrolments["class_name"].notna().all()
    assert not {"name", "class_name"} & set(snapshot.columns)
    text = snapshot.select_dtypes(exclude="number").astype("str")
    names = set(county.students["name"]) | set(county.enrolments["class_name"])
    assert not text.isin(names).any().any()
    renamed = county.replace(
        students=county.students.assign(name="某" + county.students["name"]),
        enrolments=county.enrolments.assign(class_name="一年级(9)班"),
    )
    pd.testing.assert_frame_equal(build_snapshots(renamed, as_ofs=as_ofs), snapshot)
    # nor can an attribute smuggle one in
    attrs = F.frame(
        "student_attributes",
        [("S000001", "name", 1.0), ("S000001", "class_name", 2.0)],
        ["student_id", "attribute", "value"],
    )
    one = build_snapshot(county.replace(student_attributes=attrs), as_of=D(2024, 3, 11))
    assert not [c for c in one.columns if "name" in c]


def test_student_attributes_become_extra_float_columns(county: RawTables) -> None:
    ids = sorted(county.students["student_id"])[:3]
    attrs = F.frame(
        "student_attributes",
        [(ids[0], "distance_km", 4.5), (ids[1], "distance_km", 1.0), (ids[0], "siblings", 2.0)],
        ["student_id", "attribute", "value"],
    )
    snapshot = build_snapshot(county.replace(student_attributes=attrs), as_of=D(2023, 10, 9))
    assert feature_columns(snapshot)[-2:] == ["extra_distance_km", "extra_siblings"]
    by_id = snapshot.set_index("student_id")
    assert by_id.loc[ids[0], "extra_distance_km"] == 4.5
    assert by_id.loc[ids[1], "extra_siblings"] != by_id.loc[ids[1], "extra_siblings"]  # NaN
    assert snapshot["extra_siblings"].dtype == "float64"
    assert spec("extra_siblings").reason_code == "EXTRA_SIBLINGS"


def test_a_date_with_nobody_enrolled_gives_an_empty_frame_with_all_columns(
    county: RawTables,
) -> None:
    snapshot = build_snapshot(county, as_of=D(2031, 1, 6))
    assert snapshot.empty
    assert list(snapshot.columns) == [*ID_COLUMNS, *(s.name for s in CATALOG)]


def test_hand_made_snapshot_numbers() -> None:
    tables = F.tables(
        students_rows=[F.student("A", poverty_registered=True), F.student("B")],
        attendance=[
            ("A", "2024-09-05", "absent_unexcused"),
            ("A", "2024-09-06", "absent_unexcused"),
        ],
        status_events=[("B", "2024-09-04", "dropout", "S1")],
    )
    snapshot = build_snapshot(tables, as_of=D(2024, 9, 9))
    assert snapshot["student_id"].tolist() == ["A"]
    row = snapshot.iloc[0]
    assert (row["unexcused_run"], row["escalation_level"], row["unexcused_30d"]) == (2, 2, 2)
    assert (row["hardship_count"], row["grade_level"], row["school_id"]) == (1, 7, "S1")


# --- No leakage: records dated on or after as_of never change the snapshot -------------

AS_OFS = [D(2023, 11, 13), D(2024, 2, 27), D(2024, 9, 2), D(2025, 1, 6), D(2025, 3, 3)]


@st.composite
def future_changes(draw: st.DrawFn, tables: RawTables) -> tuple[dt.date, RawTables]:
    """An as_of and a copy of `tables` with arbitrary changes dated on or after it."""
    as_of = draw(st.sampled_from(AS_OFS))
    cut = pd.Timestamp(as_of)
    students = sorted(tables.students["student_id"])
    schools = sorted(tables.schools["school_id"])
    # Days from as_of on, often as_of itself or the days right after it.
    offset = st.one_of(st.just(0), st.integers(0, 14), st.integers(0, 400))
    day = offset.map(lambda n: cut + pd.Timedelta(days=n))
    student = st.sampled_from(students)

    def future_only(frame: pd.DataFrame, keep_fraction: float) -> pd.DataFrame:
        future = frame["date"] >= cut
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        drop = future & (rng.random(len(frame)) > keep_fraction)
        return frame[~drop]

    keep = draw(st.floats(0.0, 1.0))
    attendance = future_only(tables.attendance, keep)
    new_att = draw(
        st.lists(st.tuples(student, day, st.sampled_from(ATTENDANCE_STATUSES)), max_size=30)
    )
    attendance = pd.concat(
        [attendance, pd.DataFrame(new_att, columns=["student_id", "date", "status"])],
        ignore_index=True,
    )
    grades = future_only(tables.grades, keep)
    new_grades = draw(
        st.lists(
            st.tuples(
                student,
                st.sampled_from([2023, 2024]),
                st.sampled_from([1, 2]),
                st.sampled_from(["monthly", "midterm", "final"]),
                st.sampled_from(["chinese", "math", "english"]),
                st.one_of(st.none(), st.floats(0, 100)),
                day,
            ),
            max_size=20,
        )
    )
    grade_rows = pd.DataFrame(
        [
            (s, y, t, e, sub, np.nan if v is None else v, 100.0, d)
            for s, y, t, e, sub, v, d in new_grades
        ],
        columns=[
            "student_id",
            "school_year",
            "term",
            "exam",
            "subject",
            "score",
            "max_score",
            "date",
        ],
    )
    grades = pd.concat([grades, grade_rows], ignore_index=True)
    events = future_only(tables.status_events, keep)
    new_events = draw(
        st.lists(
            st.tuples(student, day, st.sampled_from(EVENTS), st.sampled_from(schools)), max_size=10
        )
    )
    events = pd.concat(
        [events, pd.DataFrame(new_events, columns=["student_id", "date", "event", "school_id"])],
        ignore_index=True,
    )
    calendar = future_only(tables.calendar, draw(st.floats(0.0, 1.0)))
    new_days = draw(st.lists(st.tuples(st.sampled_from(schools), day), max_size=30))
    calendar = pd.concat(
        [calendar, pd.DataFrame(new_days, columns=["school_id", "date"])], ignore_index=True
    ).drop_duplicates()
    changed = tables.replace(
        attendance=attendance.astype({"date": "datetime64[ns]"}),
        grades=grades.astype({"date": "datetime64[ns]"}),
        status_events=events.astype({"date": "datetime64[ns]"}),
        calendar=calendar.astype({"date": "datetime64[ns]"}),
    )
    return as_of, changed


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_records_dated_on_or_after_as_of_never_change_the_snapshot(
    tiny_county: RawTables, data: st.DataObject
) -> None:
    as_of, changed = data.draw(future_changes(tiny_county))
    pd.testing.assert_frame_equal(
        build_snapshot(tiny_county, as_of=as_of), build_snapshot(changed, as_of=as_of)
    )


def test_the_leakage_check_would_notice_a_record_from_the_day_before(
    tiny_county: RawTables,
) -> None:
    as_of = D(2024, 3, 11)
    base = build_snapshot(tiny_county, as_of=as_of)
    student = base["student_id"].iloc[0]
    last_school_day = tiny_county.calendar["date"][
        tiny_county.calendar["date"] < pd.Timestamp(as_of)
    ].max()
    extra = pd.DataFrame(
        {"student_id": [student], "date": [last_school_day], "status": ["absent_unexcused"]}
    )
    attendance = pd.concat([tiny_county.attendance, extra], ignore_index=True)
    changed = build_snapshot(tiny_county.replace(attendance=attendance), as_of=as_of)
    row = changed.set_index("student_id").loc[student]
    assert row["unexcused_run"] >= 1
    assert not changed.equals(base)


def test_a_snapshot_prepares_enrolment_rows_and_status_events_once(
    county: RawTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They feed four steps; each step recomputing them was a fifth of one pupil's snapshot
    # (POST /v1/score). Counted, not replaced: the real functions run.
    import features.academics
    import features.enrolment
    import features.snapshot

    calls: dict[str, int] = {"enrolment_rows": 0, "status_events": 0, "school_days": 0}

    def counting(module: object, name: str) -> None:
        real = getattr(module, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module in (features.enrolment, features.academics, features.snapshot):
        if hasattr(module, "enrolment_rows"):
            counting(module, "enrolment_rows")
    for module in (features.enrolment, features.snapshot):
        counting(module, "status_events")
    import features.attendance
    import features.school_calendar

    counting(features.attendance, "school_days")
    monkeypatch.setattr(features.school_calendar, "school_days", features.attendance.school_days)

    snapshot = build_snapshot(county, as_of=D(2024, 11, 4))

    assert len(snapshot) > 0
    assert calls == {"enrolment_rows": 1, "status_events": 1, "school_days": 1}
