"""Weekly lists: tiers and order (laws), the batch over two weeks, failures that leave last
week intact, and the CSV/XLSX files."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from pydantic import ValidationError
from sqlalchemy import func, select

from features.sources import write_export
from models.reasons import Action, ladder_alert
from serving.registry import LoadedModel, load_champion
from serving.services.list_files import (
    COLUMNS,
    TIER_FILLS,
    neutralise,
    stage_lists,
    write_csv,
    write_xlsx,
)
from serving.services.scoring import ReasonOut
from serving.services.weekly_lists import (
    CHANGES,
    ListRow,
    WeeklyList,
    assign_tiers,
    build_list,
    build_lists,
    change_since,
    list_order_key,
    order_list,
    run_weekly,
    run_weekly_job,
    school_capacity,
    term_start,
)
from serving.settings import MlflowSettings, PathSettings, Settings, TrainingSettings
from serving.storage import queries
from serving.storage.queries import InterventionIn
from serving.storage.tables import ScoreRun, WeeklyScore

WEEK_1 = dt.date(2025, 11, 10)
WEEK_2 = dt.date(2025, 11, 17)
SHARE = 0.05

# -- laws ------------------------------------------------------------------------------

standing = st.tuples(
    st.sampled_from(["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11"]),
    st.sampled_from([0.0, 0.01, 0.2, 0.2, 0.5, 0.9, 1.0]),
    st.sampled_from([0, 0, 0, 1, 2, 3]),
)


@settings(max_examples=200, deadline=None)
@given(
    now=st.lists(standing, max_size=11, unique_by=lambda t: t[0]),
    before=st.lists(standing, max_size=11, unique_by=lambda t: t[0]),
    capacity=st.integers(0, 5),
)
def test_a_list_is_ladder_first_then_risk_and_never_exceeds_capacity(
    now: list[tuple[str, float, int]], before: list[tuple[str, float, int]], capacity: int
) -> None:
    tiers = assign_tiers([(s, r) for s, r, _ in now], capacity)
    assert sum(t == "high" for t in tiers.values()) == min(capacity, len(now))
    assert sum(t == "medium" for t in tiers.values()) == min(3 * capacity, len(now)) - min(
        capacity, len(now)
    )
    by_risk = sorted(now, key=lambda t: (-t[1], t[0]))
    assert [tiers[s] for s, _, _ in by_risk] == sorted(
        (tiers[s] for s, _, _ in by_risk), key=["high", "medium", "low"].index
    )
    before_tiers = assign_tiers([(s, r) for s, r, _ in before], capacity)
    rows = order_list(
        [(s, tiers[s], level, r) for s, r, level in now],
        {s: (before_tiers[s], level, r) for s, r, level in before},
    )
    info = {s: (level, r) for s, r, level in now}
    on = [(s, tier) for s, tier, change in rows if change != "left"]
    keys = [list_order_key(info[s][0], info[s][1], s) for s, _ in on]
    assert keys == sorted(keys)
    assert sum(tier == "high" for _, tier in on) <= capacity
    assert all(info[s][0] > 0 or tier != "low" for s, tier in on)  # low only with a ladder
    assert {c for _, _, c in rows} <= set(CHANGES)
    left = [s for s, _, c in rows if c == "left"]
    assert rows[len(on) :] == [(s, tiers[s], "left") for s in left]


def test_change_since_last_week() -> None:
    assert change_since(("high", 0, 0.5), None) == "new"
    assert change_since(("high", 0, 0.5), ("low", 0, 0.4)) == "new"
    assert change_since(("high", 0, 0.5), ("medium", 0, 0.6)) == "rising"
    assert change_since(("medium", 0, 0.5), ("high", 0, 0.4)) == "falling"
    assert change_since(("high", 0, 0.52), ("high", 0, 0.5)) == "rising"
    assert change_since(("high", 0, 0.48), ("high", 0, 0.5)) == "falling"
    assert change_since(("high", 0, 0.505), ("high", 0, 0.5)) == "unchanged"
    assert change_since(("low", 0, 0.1), ("high", 0, 0.5)) == "left"
    assert change_since(("low", 0, 0.1), ("low", 2, 0.1)) == "left"
    assert change_since(("low", 0, 0.1), ("low", 0, 0.1)) is None
    assert change_since(("low", 1, 0.1), ("low", 0, 0.1)) == "new"


def test_capacity_and_term_start() -> None:
    assert school_capacity(100, capacity=None, capacity_share=0.05) == 5  # not 6 (float)
    assert school_capacity(101, capacity=None, capacity_share=0.05) == 6
    assert school_capacity(3, capacity=None, capacity_share=0.05) == 1
    assert school_capacity(300, capacity=7, capacity_share=0.05) == 7
    with pytest.raises(ValueError):
        school_capacity(10, capacity=-1, capacity_share=0.05)
    assert term_start(dt.date(2025, 11, 17)) == dt.date(2025, 9, 1)
    assert term_start(dt.date(2026, 1, 5)) == dt.date(2025, 9, 1)
    assert term_start(dt.date(2026, 3, 2)) == dt.date(2026, 2, 1)


# -- files -----------------------------------------------------------------------------


def _row(rank: int, tier: str, student_id: str = "S1", level: int = 0) -> ListRow:
    reason = ReasonOut(
        "attendance",
        "ABSENCE_RECENT",
        "unexcused_30d",
        6.0,
        1.2,
        "近30个上学日旷课6天",
        "6 unexcused absences in the last 30 school days",
    )
    return ListRow(
        rank=rank,
        student_id=student_id,
        class_id="C1",
        grade_level=8,
        risk_score=0.1234,
        tier=tier,
        change="new",
        ladder=ladder_alert(level, level),
        reasons=(reason,),
        actions=(Action("HOME_VISIT", "2天内家访", "home visit"),),
        visits_this_term=1,
    )


def _list(rows: tuple[ListRow, ...], class_id: str | None = None) -> WeeklyList:
    return WeeklyList("SCH1", class_id, WEEK_2, "7", 1, rows)


def test_csv_has_a_bom_and_chinese_headers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", _list((_row(1, "high", level=3), _row(2, "low"))))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][0] == "排名 rank" and rows[0][4] == "风险分(%) risk score (%)"
    assert len(rows[0]) == len(COLUMNS)
    assert rows[1][4] == "12.3" and rows[1][5] == "高" and rows[1][6] == "新增"
    assert "疑似辍学" in rows[1][7] and rows[2][7] == ""
    assert rows[1][8] == "近30个上学日旷课6天" and rows[1][9] == "2天内家访"


def test_xlsx_opens_with_frozen_headers_and_tier_fills(tmp_path: Path) -> None:
    rows = (_row(1, "high"), _row(2, "medium", "S2"), _row(3, "low", "S3"))
    path = write_xlsx(tmp_path / "x.xlsx", _list(rows, "C1"))
    sheet = load_workbook(path).active
    assert sheet.freeze_panes == "A3"
    assert [c.value for c in sheet[1]][:2] == ["排名", "学生编号"]
    assert [c.value for c in sheet[2]][:2] == ["rank", "student id"]
    tier_col = 1 + [k for k, *_ in COLUMNS].index("tier")
    fills = [sheet.cell(row=r, column=tier_col).fill.fgColor.rgb[-6:] for r in (3, 4, 5)]
    assert fills == [TIER_FILLS[t].fgColor.rgb[-6:] for t in ("high", "medium", "low")]
    assert sheet.column_dimensions["I"].width == 60


def test_formula_looking_values_are_neutralised(tmp_path: Path) -> None:
    for bad in ('=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx"):
        assert neutralise(bad) == "'" + bad
    assert neutralise("S001") == "S001" and neutralise(12) == 12
    evil = _row(1, "high", student_id="=cmd|' /C calc'!A0")
    write_csv(tmp_path / "x.csv", _list((evil,)))
    write_xlsx(tmp_path / "x.xlsx", _list((evil,)))
    text = (tmp_path / "x.csv").read_text(encoding="utf-8-sig")
    assert "'=cmd" in text
    cell = load_workbook(tmp_path / "x.xlsx").active.cell(row=3, column=2)
    assert cell.data_type == "s" and cell.value.startswith("'=")


def test_staged_files_appear_only_when_published(tmp_path: Path) -> None:
    staged = stage_lists(
        [_list((_row(1, "high"),)), _list((), "C/1")], lists_dir=tmp_path, as_of=WEEK_2
    )
    assert not (tmp_path / WEEK_2.isoformat()).exists()
    staged.publish()
    staged.finalize()
    names = sorted(str(p.relative_to(tmp_path)) for p in staged.files)
    assert names == [
        "2025-11-17/SCH1.csv",
        "2025-11-17/SCH1.xlsx",
        "2025-11-17/SCH1/C_1.csv",
        "2025-11-17/SCH1/C_1.xlsx",
    ]
    assert all(p.is_file() for p in staged.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025-11-17"]  # nothing left over


# -- the batch, on a real model and a real database ------------------------------------


@pytest.fixture(scope="module")
def loaded(trained, tmp_path_factory) -> LoadedModel:
    _, store, _ = trained
    return load_champion(store, tmp_path_factory.mktemp("cache") / "model")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _scores(sessions, as_of: dt.date) -> list[tuple]:
    with sessions() as session:
        return [
            (r.student_id, r.risk_score, r.tier, r.rank_in_school, r.run_id)
            for r in queries.scores_for(session, as_of)
        ]


def _run(sessions, loaded, tables, as_of, lists_dir, capacity=None):
    return run_weekly(
        sessions,
        loaded,
        tables,
        as_of=as_of,
        capacity=capacity,
        capacity_share=SHARE,
        lists_dir=lists_dir,
    )


def test_two_weeks_store_scores_lists_and_changes(
    db_sessions, loaded, small_county, tmp_path: Path
) -> None:
    lists_dir = tmp_path / "lists"
    first = _run(db_sessions, loaded, small_county, WEEK_1, lists_dir)
    # a home visit recorded this term, before the second week
    with db_sessions() as session, session.begin():
        someone = queries.scores_for(session, WEEK_1)[0]
        queries.add_intervention(
            session,
            InterventionIn(
                student_id=someone.student_id,
                school_id=someone.school_id,
                date=dt.date(2025, 11, 12),
                kind="home_visit",
                by_role="homeroom_teacher",
                outcome="contacted",
            ),
            recorded_by=None,
        )
    second = _run(db_sessions, loaded, small_county, WEEK_2, lists_dir)
    assert (first.as_of, second.as_of) == (WEEK_1, WEEK_2)
    assert second.model_version == loaded.version and second.run_id != first.run_id
    assert second.n_students == len(_scores(db_sessions, WEEK_2)) > 2000
    assert 0 < second.n_explained < second.n_students

    with db_sessions() as session:
        stored = queries.scores_for(session, WEEK_2)
        explained = {r.student_id for r in stored if r.reasons}
        on = {r.student_id for r in stored if r.tier != "low" or r.escalation_level > 0}
        assert explained <= on and len(on) == second.n_explained
        school_ids = sorted({r.school_id for r in stored})
        n_classes = len({(r.school_id, r.class_id) for r in stored})
        assert len(second.files) == 2 * (len(school_ids) + n_classes)
        assert queries.get_run(session, second.run_id).status == "done"
        seen = set()
        for school_id in school_ids:
            school, classes = build_lists(session, school_id=school_id, as_of=WEEK_2)
            rows = [r for r in stored if r.school_id == school_id]
            assert school.capacity == school_capacity(
                len(rows), capacity=None, capacity_share=SHARE
            )
            on_rows = [r for r in school.rows if r.change != "left"]
            assert sum(r.tier == "high" for r in on_rows) == school.capacity
            keys = [
                list_order_key(r.ladder.level if r.ladder else 0, r.risk_score, r.student_id)
                for r in on_rows
            ]
            assert keys == sorted(keys)
            assert [r.rank for r in school.rows] == list(range(1, len(school.rows) + 1))
            assert sum(len(c.rows) for c in classes.values()) == len(school.rows)
            seen |= {r.change for r in school.rows}
            for row in on_rows:
                assert bool(row.actions) == bool(row.reasons)
                assert len(row.actions) <= 3
            if school_id == someone.school_id:
                visited = [r for r in school.rows if r.student_id == someone.student_id]
                assert all(r.visits_this_term == 1 for r in visited)
            # the file says what the API says
            with (lists_dir / WEEK_2.isoformat() / f"{school_id}.csv").open(
                encoding="utf-8-sig"
            ) as f:
                lines = list(csv.reader(f))[1:]
            assert [line[1] for line in lines] == [r.student_id for r in school.rows]
        assert {"new", "unchanged"} <= seen
        assert seen <= set(CHANGES)

        one = build_list(session, school_id=school_ids[0], as_of=None)
        assert one.as_of == WEEK_2
        cls = one.rows[0].class_id
        in_class = build_list(session, school_id=school_ids[0], as_of=None, class_id=cls)
        assert [r.student_id for r in in_class.rows] == [
            r.student_id for r in one.rows if r.class_id == cls
        ]
        tight = build_list(session, school_id=school_ids[0], as_of=WEEK_2, capacity=1)
        assert tight.capacity == 1
        assert sum(r.tier == "high" for r in tight.rows if r.change != "left") <= 1


def test_a_failed_run_leaves_last_weeks_scores_and_files_and_a_rerun_completes(
    db_sessions, loaded, small_county, tmp_path: Path
) -> None:
    lists_dir = tmp_path / "lists"
    _run(db_sessions, loaded, small_county, WEEK_1, lists_dir)
    good = _run(db_sessions, loaded, small_county, WEEK_2, lists_dir)
    scores_before = _scores(db_sessions, WEEK_2)
    files_before = _digest(lists_dir)

    # 1. a row fails validation half-way through the row iterator (an over-long id)
    students = small_county.students.copy()
    ids = students["student_id"].astype(str)
    victim = sorted(ids)[len(ids) // 2]
    renamed = {victim: victim + "-" + "x" * 80}
    broken = small_county.replace(
        **{
            name: frame.assign(student_id=frame["student_id"].astype(str).replace(renamed))
            for name, frame in small_county.as_dict().items()
            if "student_id" in frame.columns
        }
    )
    with pytest.raises(ValidationError):
        _run(db_sessions, loaded, broken, WEEK_2, lists_dir)
    # 2. the lists folder cannot be written (a file where the folder should be)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):
        _run(db_sessions, loaded, small_county, WEEK_2, blocked / "lists")

    assert _scores(db_sessions, WEEK_2) == scores_before
    assert _digest(lists_dir) == files_before
    assert sorted(p.name for p in lists_dir.iterdir()) == [WEEK_1.isoformat(), WEEK_2.isoformat()]
    with db_sessions() as session:
        statuses = session.execute(select(ScoreRun.status).order_by(ScoreRun.id)).scalars()
        assert list(statuses) == ["done", "done", "failed", "failed"]
        assert queries.latest_run(session).id == good.run_id

    again = _run(db_sessions, loaded, small_county, WEEK_2, lists_dir)
    assert again.run_id > good.run_id
    after = _scores(db_sessions, WEEK_2)
    assert [s[:4] for s in after] == [s[:4] for s in scores_before]
    assert {s[4] for s in after} == {again.run_id}
    with db_sessions() as session:
        n = session.scalar(select(func.count()).select_from(WeeklyScore))
        assert n == len(_scores(db_sessions, WEEK_1)) + len(after)


def test_weekly_job_from_settings(trained, small_county, tmp_path: Path) -> None:
    _, store, _ = trained
    export = write_export(small_county, tmp_path / "export", fmt="parquet")
    settings = Settings(
        paths=PathSettings(home=tmp_path / "home"),
        mlflow=MlflowSettings(tracking_uri=store.tracking_uri, model_name=store.model_name),
        training=TrainingSettings(capacity_share=0.1),
    )
    result = run_weekly_job(settings, export_dir=export, as_of=WEEK_2, capacity=3)
    assert result.n_students > 2000 and result.files
    assert all(
        p.is_relative_to(tmp_path / "home" / "lists" / WEEK_2.isoformat()) for p in result.files
    )
    assert (tmp_path / "home" / "model-cache" / "meta.json").is_file()
    assert (tmp_path / "home" / "baoxue.db").is_file()


def test_the_weekly_run_opens_cases_for_alerts_and_the_high_tier(
    db_sessions, loaded, small_county, tmp_path: Path
) -> None:
    _run(db_sessions, loaded, small_county, WEEK_1, tmp_path / "lists")
    with db_sessions() as session:
        flagged = {
            s.student_id
            for s in queries.scores_for(session, WEEK_1)
            if s.tier == "high" or s.escalation_level > 0
        }
        opened = {c.student_id for c in queries.cases_for(session, status="open")}
    assert flagged and opened == flagged
    # a rerun of the same week opens no second case
    _run(db_sessions, loaded, small_county, WEEK_1, tmp_path / "lists")
    with db_sessions() as session:
        assert len(queries.cases_for(session, status="open")) == len(opened)
