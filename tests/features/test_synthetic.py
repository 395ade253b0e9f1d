"""The synthetic county: deterministic, valid against the contract, and realistic enough.

The default run uses small counties (a few thousand pupils); the rate and timing checks
that need many rare events, and the speed check, run on a 20,000-pupil county marked slow.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.holidays import SPRING_FESTIVAL, school_year_calendar
from features.sources import load_export, write_export
from features.synthetic import GIVEN_FIRST, GIVEN_SECOND, SURNAMES, county_rates, generate_county
from features.tables import (
    ACTIVE_EVENTS,
    ATTENDANCE_STATUSES,
    COLUMNS,
    EVENTS,
    EXAMS,
    GUARDIANS,
    INTERVENTION_KINDS,
    LEAVING_EVENTS,
    LEFT_BEHIND,
    OUTCOMES,
    ROLES,
    SCHOOL_LEVELS,
    RawTables,
    fingerprint,
)
from features.validation import validate_tables

EXPECTED_DTYPES = {
    "schools": ["str", "str", "str", "str", "str", "bool"],
    "calendar": ["str", "datetime64[ns]"],
    "students": ["str", "str", "datetime64[ns]", *["bool"] * 6, "str", "bool", "str"]
    + ["bool", "bool", "str"],
    "enrolments": ["str", "int64", "str", "str", "int64", "datetime64[ns]", "datetime64[ns]"]
    + ["str"],
    "attendance": ["str", "datetime64[ns]", "str"],
    "grades": ["str", "int64", "int64", "str", "str", "float64", "float64", "datetime64[ns]"],
    "status_events": ["str", "datetime64[ns]", "str", "str"],
    "interventions": ["str", "datetime64[ns]", "str", "str", "str"],
}
KEYS = {
    "schools": ["school_id"],
    "calendar": ["school_id", "date"],
    "students": ["student_id"],
    "enrolments": ["student_id", "school_year"],
    "attendance": ["student_id", "date"],
    "grades": ["student_id", "school_year", "term", "exam", "subject"],
}


@pytest.fixture(scope="module")
def county() -> RawTables:
    """A small county: 2,500 pupils, three school years."""
    return generate_county(n_students=2_500, n_years=3, seed=7)


@pytest.fixture(scope="module")
def big_county() -> RawTables:
    """The documented county: 20,000 pupils, three school years, seed 0."""
    return generate_county(n_students=20_000, n_years=3, seed=0)


def _school_year(dates: pd.Series) -> pd.Series:
    return dates.dt.year - (dates.dt.month < 8)


def _last_dropout_windows(tables: RawTables) -> pd.DataFrame:
    drop = tables.status_events[tables.status_events["event"] == "dropout"]
    return drop[["student_id", "date"]].reset_index(drop=True)


# ----------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames() -> None:
    a = generate_county(n_students=600, n_years=2, seed=3)
    b = generate_county(n_students=600, n_years=2, seed=3)
    for name, frame in a.as_dict().items():
        pd.testing.assert_frame_equal(frame, getattr(b, name), check_exact=True)


def test_different_seeds_give_different_counties() -> None:
    a = generate_county(n_students=600, n_years=2, seed=3)
    b = generate_county(n_students=600, n_years=2, seed=4)
    assert not a.students.equals(b.students)
    assert not a.attendance.equals(b.attendance)
    assert not a.grades.equals(b.grades)


def test_names_leave_every_other_value_of_a_seed_as_it_was() -> None:
    """Names and class names come from their own random stream: every other column of a
    seed is byte-identical to the county generated before they existed (fingerprints
    taken then). Golden tests downstream (weekly batch, model scores) rely on this; a
    deliberate change of the generator updates both numbers."""
    before = {(600, 2, 3): "888f9d3273166eb9", (2_500, 3, 7): "4044537cb9cbf6a9"}
    for (n_students, n_years, seed), expected in before.items():
        county = generate_county(n_students=n_students, n_years=n_years, seed=seed)
        without = county.replace(
            students=county.students.drop(columns="name"),
            enrolments=county.enrolments.drop(columns="class_name"),
        )
        assert fingerprint(without) == expected, (n_students, n_years, seed)


def test_rejects_years_outside_the_holiday_table() -> None:
    with pytest.raises(ValueError):
        generate_county(n_students=300, n_years=3, first_school_year=2029)


# ------------------------------------------------------------------- shape and dtypes


def test_columns_and_dtypes_follow_tables_module(county: RawTables) -> None:
    for name, dtypes in EXPECTED_DTYPES.items():
        frame = getattr(county, name)
        assert tuple(frame.columns) == COLUMNS[name], name
        assert [str(d) for d in frame.dtypes] == dtypes, name
        assert len(frame) > 0, name
        assert frame.index.equals(pd.RangeIndex(len(frame))), name
    assert county.student_attributes.empty


def test_codes_are_in_the_contract_vocabularies(county: RawTables) -> None:
    assert set(county.schools["level"]) == set(SCHOOL_LEVELS)
    assert set(county.students["sex"]) == {"F", "M"}
    assert set(county.students["left_behind"]) == set(LEFT_BEHIND)
    assert set(county.students["guardian"]) <= set(GUARDIANS)
    assert set(county.attendance["status"]) == set(ATTENDANCE_STATUSES) - {"present"}
    assert set(county.grades["exam"]) == set(EXAMS)
    assert set(county.status_events["event"]) <= set(EVENTS)
    assert {"enrol", "graduate", "dropout", "return", "transfer_out"} <= set(
        county.status_events["event"]
    )
    assert set(county.interventions["kind"]) <= set(INTERVENTION_KINDS)
    assert set(county.interventions["by_role"]) <= set(ROLES)
    assert set(county.interventions["outcome"]) <= set(OUTCOMES)


def test_keys_are_unique(county: RawTables) -> None:
    for name, key in KEYS.items():
        assert not getattr(county, name).duplicated(key).any(), name


def test_foreign_keys_hold(county: RawTables) -> None:
    students = set(county.students["student_id"])
    schools = set(county.schools["school_id"])
    for name in ("enrolments", "attendance", "grades", "status_events", "interventions"):
        assert set(getattr(county, name)["student_id"]) <= students, name
    for name in ("calendar", "enrolments", "status_events"):
        assert set(getattr(county, name)["school_id"]) <= schools, name
    assert students == set(county.enrolments["student_id"])


def test_passes_contract_validation_in_memory() -> None:
    assert validate_tables(generate_county(n_students=700, n_years=2, seed=5)) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_export_loads_back(tmp_path: Path, fmt: str) -> None:
    tables = generate_county(n_students=800, n_years=2, seed=11)
    write_export(tables, tmp_path / "export", fmt=fmt)  # type: ignore[arg-type]
    loaded = load_export(tmp_path / "export").tables
    assert len(loaded.attendance) == len(tables.attendance)
    pd.testing.assert_frame_equal(loaded.grades, tables.grades, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.students, tables.students)


# --------------------------------------------------------------------------- calendar


@pytest.mark.parametrize("school_year", range(2019, 2031))
def test_school_calendar_is_a_chinese_school_year(school_year: int) -> None:
    cal = school_year_calendar(school_year)
    days = pd.DatetimeIndex(cal.days)
    sf = pd.Timestamp(SPRING_FESTIVAL[school_year + 1])
    assert 185 <= cal.n_days <= 200
    assert days.is_monotonic_increasing and days.is_unique
    assert pd.Timestamp(date(school_year, 9, 1)) <= days[0] <= pd.Timestamp(date(school_year, 9, 3))
    term1_end, term2_start = days[cal.term2_start - 1], days[cal.term2_start]
    assert term1_end.month == 1 and 8 <= term1_end.day <= 24
    assert pd.Timedelta(days=10) <= term2_start - sf <= pd.Timedelta(days=17)
    assert days[-1].month == 7 and days[-1].day <= 12
    assert not any(d in days for d in pd.date_range(f"{school_year}-10-01", periods=7))
    assert not any(d in days for d in pd.date_range(f"{school_year + 1}-05-01", periods=5))
    assert pd.Timestamp(f"{school_year + 1}-01-01") not in days
    assert (days.day_of_week >= 5).sum() <= 2  # make-up Saturdays/Sundays (调休) only


def test_every_school_has_the_county_calendar(county: RawTables) -> None:
    per_school = county.calendar.groupby("school_id")["date"].apply(frozenset)
    assert per_school.nunique() == 1
    years = set(_school_year(county.calendar["date"]))
    assert years == {2023, 2024, 2025}


# -------------------------------------------------------------------------- geography


def test_geography_has_townships_with_their_schools() -> None:
    schools = generate_county(n_students=20_000, n_years=1, seed=0).schools
    rural = schools[schools["rural"]]
    assert 8 <= rural["township"].nunique() <= 15
    per_township = rural.groupby("township")["level"].agg(lambda s: s.value_counts().to_dict())
    for counts in per_township:
        assert counts.get("junior", 0) == 1
        assert counts.get("primary", 0) >= 3  # central plus village schools
    town = schools[~schools["rural"]]
    assert set(town["level"]) >= {"primary", "junior"}
    assert town["township"].nunique() == 1


def test_class_sizes_and_class_ids(county: RawTables) -> None:
    enr = county.enrolments.merge(county.schools[["school_id", "rural"]], on="school_id")
    assert (enr["class_id"].str.split("-").str[0] == enr["school_id"]).all()
    assert (
        (enr.groupby("class_id")[["school_id", "school_year", "grade_level"]].nunique() == 1)
        .all()
        .all()
    )
    sizes = enr.groupby(["class_id", "rural"]).size()
    assert sizes.max() <= 60
    town_sizes = sizes.xs(False, level="rural")
    assert 35 <= town_sizes.median() <= 52


def test_pupils_have_plausible_names_that_fit_their_sex(county: RawTables) -> None:
    students = county.students
    names = students["name"]
    assert names.notna().all()
    assert names.str.fullmatch(r"[\u4e00-\u9fff]{2,3}").all()
    surnames = {s for s, _ in SURNAMES}
    assert names.str[0].isin(surnames).all()
    assert names.str.len().between(2, 3).all() and (names.str.len() == 3).mean() > 0.8
    for sex in ("F", "M"):
        given = names[students["sex"] == sex].str[1:]
        allowed = set(GIVEN_FIRST[sex]) | set(GIVEN_SECOND[sex])
        assert given.map(lambda g, ok=allowed: set(g) <= ok).all(), sex
        assert given.str[-1].isin(set(GIVEN_SECOND[sex])).all(), sex
    # common surnames come first, and most pupils of a class have a name of their own
    assert names.str[0].value_counts().index[0] in {"王", "李", "张"}
    enrolled = county.enrolments.merge(students[["student_id", "name"]], on="student_id")
    per_class = enrolled.groupby(["school_year", "class_id"])["name"]
    assert (per_class.nunique() / per_class.size()).mean() > 0.95
    other = generate_county(n_students=2_500, n_years=3, seed=8).students["name"]
    assert (names.head(200).to_numpy() != other.head(200).to_numpy()).mean() > 0.9


def test_class_names_name_the_grade_and_the_class_number(county: RawTables) -> None:
    enrolments = county.enrolments
    numerals = "一二三四五六七八九"
    parts = enrolments["class_name"].str.extract(r"^(.)年级\((\d+)\)班$")
    assert parts.notna().all().all()
    assert (parts[0].map(numerals.index) + 1 == enrolments["grade_level"]).all()
    number = enrolments["class_id"].str.extract(r"-C(\d+)$")[0]
    assert (parts[1] == number).all()
    assert enrolments.groupby("class_id")["class_name"].nunique().max() == 1


def test_grade_levels_match_school_levels(county: RawTables) -> None:
    enr = county.enrolments.merge(county.schools[["school_id", "level"]], on="school_id")
    assert enr.loc[enr["level"] == "primary", "grade_level"].between(1, 6).all()
    assert enr.loc[enr["level"] == "junior", "grade_level"].between(7, 9).all()


def test_enrolment_dates_are_the_school_year_defaults(county: RawTables) -> None:
    enr = county.enrolments
    assert (enr["start_date"] == pd.to_datetime(enr["school_year"].astype(str) + "-08-01")).all()
    assert (
        enr["end_date"] == pd.to_datetime((enr["school_year"] + 1).astype(str) + "-07-31")
    ).all()


# ------------------------------------------------------------------------ progression


def test_grades_progress_and_pupils_move_to_junior_school(county: RawTables) -> None:
    enr = county.enrolments.sort_values(["student_id", "school_year"])
    nxt = enr.groupby("student_id").shift(-1)
    pairs = enr.assign(
        next_year=nxt["school_year"], next_grade=nxt["grade_level"], next_school=nxt["school_id"]
    ).dropna(subset=["next_year"])
    assert (pairs["next_year"] == pairs["school_year"] + 1).all()
    step = pairs["next_grade"] - pairs["grade_level"]
    assert step.isin([0, 1]).all()
    assert 0 < (step == 0).mean() < 0.03  # a few repeat a grade (incl. returned dropouts)
    levels = county.schools.set_index("school_id")["level"]
    moving = pairs[(pairs["grade_level"] == 6) & (pairs["next_grade"] == 7)]
    from_primary = moving["school_id"].map(levels) == "primary"
    assert (moving.loc[from_primary, "school_id"] != moving.loc[from_primary, "next_school"]).all()
    from_nine = moving["school_id"].map(levels) == "nine_year"
    assert (moving.loc[from_nine, "school_id"] == moving.loc[from_nine, "next_school"]).all()


def test_birth_dates_fit_grades_with_some_over_age(county: RawTables) -> None:
    enr = county.enrolments.merge(county.students[["student_id", "birth_date"]])
    sept = pd.to_datetime(enr["school_year"].astype(str) + "-09-01")
    over = (sept - enr["birth_date"]).dt.days / 365.25 - (enr["grade_level"] + 5)
    assert over.min() >= 0
    assert (over < 1).mean() > 0.8
    junior = enr["grade_level"] >= 7
    age = (sept - enr["birth_date"]).dt.days / 365.25
    share_14_plus_in_g7_8 = (age[junior & (enr["grade_level"] <= 8)] >= 14).mean()
    assert 0.02 < share_14_plus_in_g7_8 < 0.25


def test_status_events_tell_a_consistent_story(county: RawTables) -> None:
    ev = county.status_events.sort_values(["student_id", "date"], kind="stable")
    first = ev.groupby("student_id").head(1)
    assert first["event"].isin(["enrol", "transfer_in"]).all()
    first_day = county.calendar["date"].min()
    enrol = ev[ev["event"] == "enrol"]
    enrol_years = _school_year(enrol["date"])
    # enrol: everyone in the first year, then only grade-1 entrants
    later = enrol.assign(school_year=enrol_years).merge(county.enrolments)
    later = later[later["school_year"] > 2023]
    assert (later["grade_level"] == 1).all()
    assert (enrol.loc[enrol_years == 2023, "date"] == first_day).all()
    # a leaving event is followed by nothing, or by its re-activating partner
    nxt = ev.groupby("student_id")["event"].shift(-1)
    partner = {"dropout": "return", "suspend": "resume"}
    for leaving in LEAVING_EVENTS:
        follow = nxt[ev["event"] == leaving].dropna()
        assert follow.isin([partner.get(leaving, "-")]).all(), leaving
    assert not (ev["event"].isin(ACTIVE_EVENTS) & nxt.isin(ACTIVE_EVENTS)).any()


def test_graduation_is_on_the_last_school_day_of_grade_9(county: RawTables) -> None:
    grad = county.status_events[county.status_events["event"] == "graduate"]
    grad = grad.assign(school_year=_school_year(grad["date"])).merge(county.enrolments)
    assert (grad["grade_level"] == 9).all()
    last_day = county.calendar.groupby(_school_year(county.calendar["date"]))["date"].max()
    assert (grad["date"].to_numpy() == grad["school_year"].map(last_day).to_numpy()).all()


def test_no_records_while_out_of_school(county: RawTables) -> None:
    """Attendance only between an activating event and the next leaving event (exclusive)."""
    ev = county.status_events
    periods = ev.assign(active=ev["event"].isin(ACTIVE_EVENTS))[["student_id", "date", "active"]]
    periods = periods.sort_values("date", kind="stable")
    att = county.attendance[["student_id", "date"]].sort_values("date", kind="stable")
    merged = pd.merge_asof(att, periods, on="date", by="student_id")
    assert merged["active"].eq(True).all()
    # no exam results long after a dropout that never returned
    last = ev.sort_values("date", kind="stable").groupby("student_id").tail(1)
    gone = last[last["event"] == "dropout"][["student_id", "date"]]
    late = county.grades.merge(gone, on="student_id", suffixes=("", "_drop"))
    assert (late["date"] <= late["date_drop"] + pd.Timedelta(days=14)).all()


def test_attendance_only_on_school_days(county: RawTables) -> None:
    att = county.attendance.assign(school_year=_school_year(county.attendance["date"]))
    att = att.merge(county.enrolments[["student_id", "school_year", "school_id"]], how="left")
    assert att["school_id"].notna().all()
    days = set(zip(county.calendar["school_id"], county.calendar["date"], strict=True))
    assert all(k in days for k in zip(att["school_id"], att["date"], strict=True))


# ----------------------------------------------------------------------------- grades


def test_scores_fit_their_scales(county: RawTables) -> None:
    gr = county.grades.merge(county.enrolments[["student_id", "school_year", "grade_level"]])
    assert (gr["score"].dropna() >= 0).all()
    assert (gr["score"].dropna() <= gr.loc[gr["score"].notna(), "max_score"]).all()
    primary = gr["grade_level"] <= 6
    assert (gr.loc[primary, "max_score"] == 100).all()
    main = ~primary & gr["subject"].isin(["chinese", "math", "english"])
    assert (gr.loc[main, "max_score"] == 120).all()
    assert (gr.loc[gr["subject"] == "english", "grade_level"] >= 3).all()
    assert (gr.loc[gr["subject"] == "physics", "grade_level"] >= 8).all()
    missed = gr["score"].isna().mean()
    assert 0.005 < missed < 0.06
    frac = gr["score"] / gr["max_score"]
    assert 0.6 < frac.mean() < 0.85
    per_term = gr.groupby(["student_id", "school_year", "term", "subject"])["exam"].nunique()
    assert per_term.max() == 3


def test_results_become_known_a_few_days_after_a_school_day(county: RawTables) -> None:
    gr = county.grades.drop_duplicates(["school_year", "term", "exam", "date"])
    school_days = pd.DatetimeIndex(county.calendar["date"].unique()).sort_values()
    pos = school_days.searchsorted(gr["date"]) - 1
    lag = (gr["date"].to_numpy() - school_days[pos].to_numpy()) / np.timedelta64(1, "D")
    assert (lag >= 1).all() and (lag <= 14).all()


def test_pupils_who_drop_out_had_lower_scores(county: RawTables) -> None:
    drop_ids = set(_last_dropout_windows(county)["student_id"])
    frac = county.grades["score"] / county.grades["max_score"]
    by_student = frac.groupby(county.grades["student_id"]).mean()
    dropped = by_student.index.isin(list(drop_ids))
    assert by_student[dropped].mean() < by_student[~dropped].mean() - 0.05


# --------------------------------------------------------------------- families, rates


def test_hardship_and_left_behind_shares(county: RawTables) -> None:
    rates = county_rates(county)
    share = rates[rates["measure"] == "share"].set_index("group")["rate"]
    assert 0.06 <= share["poverty_registered"] <= 0.16
    assert 0.03 <= share["dibao"] <= 0.09
    assert share["tekun"] < 0.012
    assert 0.003 <= share["disability"] <= 0.03
    assert share["orphan"] < 0.012
    assert 0.035 <= share["single_parent"] <= 0.09
    assert 0.12 <= share["left_behind=one_parent_away"] <= 0.25
    assert 0.08 <= share["left_behind=both_parents_away"] <= 0.22
    assert 0.08 <= share["ethnic_minority"] <= 0.30
    assert 0.49 <= share["sex=M"] <= 0.56


def test_families_are_consistent(county: RawTables) -> None:
    s = county.students
    both = s["left_behind"] == "both_parents_away"
    assert (s.loc[both, "guardian"] != "parents").all()
    assert (s.loc[both, "guardian"] == "grandparents").mean() > 0.65
    assert (s.loc[s["migrant_child"], "left_behind"] == "none").all()
    assert (s.loc[s["orphan"], "guardian"] != "parents").all()
    assert (
        s.loc[s["poverty_registered"], "dibao"].mean()
        > 3 * s.loc[~s["poverty_registered"], "dibao"].mean()
    )


def test_rural_pupils_are_left_behind_town_pupils_migrant(county: RawTables) -> None:
    last = county.enrolments.sort_values("school_year").groupby("student_id").tail(1)
    s = county.students.merge(last[["student_id", "school_id", "grade_level"]]).merge(
        county.schools[["school_id", "rural"]]
    )
    rural = s[s["rural"]]
    assert 0.17 <= (rural["left_behind"] == "one_parent_away").mean() <= 0.28
    assert 0.13 <= (rural["left_behind"] == "both_parents_away").mean() <= 0.23
    assert s.loc[~s["rural"], "migrant_child"].mean() > 5 * rural["migrant_child"].mean()
    rural_junior = rural[rural["grade_level"] >= 7]
    assert 0.4 <= rural_junior["boarding"].mean() <= 0.7


def test_county_rates_count_dropouts_per_enrolled_pupil(county: RawTables) -> None:
    rates = county_rates(county)
    assert list(rates.columns) == [
        "measure", "group", "school_year", "grade_level", "count", "total", "rate"
    ]  # fmt: skip
    per = rates[(rates["measure"] == "dropout_rate") & rates["grade_level"].notna()]
    yearly = per[per["school_year"].notna()]
    assert yearly["total"].sum() == len(county.enrolments)
    n_drop = (county.status_events["event"] == "dropout").sum()
    assert yearly["count"].sum() == n_drop
    pooled = rates[(rates["group"] == "all") & rates["school_year"].isna()].iloc[0]
    assert pooled["rate"] == pytest.approx(n_drop / len(county.enrolments))


def test_junior_dropout_rate_exceeds_primary(county: RawTables) -> None:
    rates = county_rates(county)
    pooled = rates[(rates["measure"] == "dropout_rate") & rates["school_year"].isna()]
    pooled = pooled.set_index("group")["rate"]
    assert pooled["primary"] < 0.012
    assert 0.006 < pooled["junior"] < 0.04
    assert pooled["junior"] > 2 * pooled["primary"]


def test_absences_rise_before_a_dropout(county: RawTables) -> None:
    """Unexcused absence in the 4 weeks before a dropout is far above the usual level."""
    att = county.attendance
    unexcused = att[att["status"] == "absent_unexcused"]
    drops = _last_dropout_windows(county)
    window = pd.Timedelta(days=28)
    merged = unexcused.merge(drops, on="student_id", suffixes=("", "_drop"))
    before = merged[
        (merged["date"] < merged["date_drop"]) & (merged["date"] >= merged["date_drop"] - window)
    ]
    per_dropout = (
        before.groupby(["student_id", "date_drop"])
        .size()
        .reindex(pd.MultiIndex.from_frame(drops), fill_value=0)
    )
    # ~20 school days in 4 weeks; the usual pupil misses well under one of them
    school_days = county.calendar.drop_duplicates("date").shape[0]
    ever_dropped = unexcused["student_id"].isin(set(drops["student_id"]))
    others = ever_dropped.eq(False).sum() / (
        county.enrolments["student_id"].isin(set(drops["student_id"])).eq(False).sum()
        * school_days
        / 3
    )
    assert per_dropout.mean() > 3.0
    assert per_dropout.mean() > 10 * others * 20
    # earlier weeks (2-6 weeks before, before the final run) are raised too, but noisily
    early = merged[
        (merged["date"] < merged["date_drop"] - pd.Timedelta(days=14))
        & (merged["date"] >= merged["date_drop"] - pd.Timedelta(days=42))
    ]
    early_rate = len(early) / (len(drops) * 20)
    assert early_rate > 2 * others
    assert (per_dropout <= 2).mean() < 0.3


def test_interventions_follow_absences(county: RawTables) -> None:
    iv = county.interventions
    assert (iv["kind"] == "home_visit").sum() > 0
    notice = iv[iv["kind"] == "return_notice"]
    assert set(notice["by_role"]) == {"township"}
    drops = _last_dropout_windows(county)
    assert set(notice["student_id"]) <= set(drops["student_id"])


# ------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_generation_of_the_documented_county_is_fast() -> None:
    started = time.perf_counter()
    tables = generate_county(n_students=20_000, n_years=3, seed=0)
    elapsed = time.perf_counter() - started
    assert elapsed < 20.0
    first_year = tables.enrolments[tables.enrolments["school_year"] == 2023]
    assert 19_000 <= len(first_year) <= 21_000


@pytest.mark.slow
def test_documented_county_passes_validation(big_county: RawTables) -> None:
    assert validate_tables(big_county) == []


@pytest.mark.slow
def test_dropout_rates_by_grade_are_in_the_policy_range(big_county: RawTables) -> None:
    rates = county_rates(big_county)
    pooled = rates[(rates["measure"] == "dropout_rate") & rates["school_year"].isna()]
    pooled = pooled.set_index("group")["rate"]
    assert 0.003 <= pooled["primary"] <= 0.008
    assert 0.01 <= pooled["junior"] <= 0.03
    for g in range(1, 7):
        assert 0.0008 <= pooled[f"grade_{g}"] <= 0.01, g
    for g in range(7, 10):
        assert 0.01 <= pooled[f"grade_{g}"] <= 0.035, g
    yearly = rates[(rates["group"].isin(["primary", "junior"])) & rates["school_year"].notna()]
    assert yearly["rate"].between(0.002, 0.035).all()


@pytest.mark.slow
def test_dropouts_peak_after_spring_festival_and_in_september(big_county: RawTables) -> None:
    """Dropouts recorded per school day: term starts vs the middle of the terms."""
    school_days = pd.DatetimeIndex(big_county.calendar["date"].unique()).sort_values()
    drops = big_county.status_events[big_county.status_events["event"] == "dropout"]
    per_day = drops.groupby("date").size().reindex(school_days, fill_value=0)
    position = pd.Series(0, index=school_days)
    for year in (2023, 2024, 2025):
        cal = school_year_calendar(year)
        idx = school_days.get_indexer(pd.DatetimeIndex(cal.days))
        k = np.arange(cal.n_days)
        position.iloc[idx] = np.select(
            [k < 20, (k >= cal.term2_start) & (k < cal.term2_start + 20)], [1, 2], 0
        )
    rate = per_day.groupby(position.to_numpy()).mean()
    assert rate[1] > 2 * rate[0]  # September: first 4 weeks of term 1
    assert rate[2] > 2 * rate[0]  # after the Spring Festival: first 4 weeks of term 2


@pytest.mark.slow
def test_dropout_returners_relapse_more(big_county: RawTables) -> None:
    ev = big_county.status_events
    returned = set(ev.loc[ev["event"] == "return", "student_id"])
    drops = ev[ev["event"] == "dropout"].groupby("student_id").size()
    assert (drops > 1).sum() > 0
    relapse = (drops[drops.index.isin(list(returned))] > 1).mean()
    assert relapse > 0.05
