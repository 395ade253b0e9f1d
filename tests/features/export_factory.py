"""A tiny, hand-built valid county export for tests of reading and validation.

Two schools (a primary and a junior school), twenty students, September and October
2024 as school days (weekdays, minus the National Day week). Built as `RawTables` with
the in-memory dtypes, so `write_export` can put it on disk as CSV or Parquet. Every
student but S020 has a name; every class of the primary school has a class name, those
of the junior school have none (shown as derived "N年级(M)班").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.sources import ExportFormat, write_export
from features.tables import RawTables

SCHOOL_YEAR = 2024
N_STUDENTS = 20


def _dates(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")


def school_days() -> pd.DatetimeIndex:
    """Weekdays of September and October 2024 except the National Day week (Oct 1-7)."""
    days = pd.bdate_range("2024-09-02", "2024-10-31")
    holiday = (days >= "2024-10-01") & (days <= "2024-10-07")
    return days[~holiday]


def student_ids() -> list[str]:
    return [f"S{i:03d}" for i in range(1, N_STUDENTS + 1)]


PUPIL_NAMES = (
    "王浩然", "李欣怡", "张子轩", "刘雨萱", "陈一鸣", "杨诗涵", "赵宇航", "黄可馨", "吴俊杰",
    "周梓涵", "徐天佑", "孙雅琪", "马晨阳", "朱思彤", "胡博文", "郭语嫣", "何家豪", "林晓雪",
    "阿卜杜热合曼·买买提明",
)  # fmt: skip


def build_tables() -> RawTables:
    """The valid export, in memory."""
    schools = pd.DataFrame(
        {
            "school_id": ["P01", "J01"],
            "name": ["石桥小学", "石桥初级中学"],
            "county": ["青山县", "青山县"],
            "township": ["石桥镇", "石桥镇"],
            "level": ["primary", "junior"],
            "rural": [True, False],
        }
    )
    days = school_days()
    calendar = pd.DataFrame(
        {
            "school_id": ["P01"] * len(days) + ["J01"] * len(days),
            "date": _dates([d.strftime("%Y-%m-%d") for d in days] * 2),
        }
    )
    ids = student_ids()
    n = len(ids)
    flag = [i % 4 == 0 for i in range(n)]
    students = pd.DataFrame(
        {
            "student_id": ids,
            "sex": ["F" if i % 2 else "M" for i in range(n)],
            "birth_date": _dates([f"{2013 - i // 10}-0{1 + i % 9}-15" for i in range(n)]),
            "poverty_registered": flag,
            "dibao": [i % 5 == 0 for i in range(n)],
            "tekun": [False] * n,
            "disability": [i == 7 for i in range(n)],
            "orphan": [False] * n,
            "single_parent": [i % 6 == 0 for i in range(n)],
            "left_behind": [
                ("none", "one_parent_away", "both_parents_away")[i % 3] for i in range(n)
            ],
            "migrant_child": [i % 7 == 0 for i in range(n)],
            "guardian": [
                ("parents", "grandparents", "relatives", "other")[i % 4] for i in range(n)
            ],
            "boarding": [i >= 10 for i in range(n)],
            "ethnic_minority": [i % 9 == 0 for i in range(n)],
            "name": pd.Series([*PUPIL_NAMES, None], dtype="str"),
        }
    )
    # S001-S010 at the primary school (grades 5-6), S011-S020 at the junior school (7-8).
    enrolments = pd.DataFrame(
        {
            "student_id": ids,
            "school_year": [SCHOOL_YEAR] * n,
            "school_id": ["P01"] * 10 + ["J01"] * 10,
            "class_id": [f"{'P01' if i < 10 else 'J01'}-{5 + i // 5}" for i in range(n)],
            "grade_level": [5 + i // 5 for i in range(n)],
            "start_date": _dates(["2024-08-01"] * n),
            "end_date": _dates(["2025-07-31"] * n),
            "class_name": pd.Series(
                [f"{'五六'[i // 5]}年级(1)班" if i < 10 else None for i in range(n)], dtype="str"
            ),
        }
    )
    statuses = ("late", "absent_unexcused", "leave_sick", "leave_personal", "present")
    attendance_rows = [
        (ids[i], days[(3 * i + k) % len(days)].strftime("%Y-%m-%d"), statuses[(i + k) % 5])
        for i in range(n)
        for k in range(i % 4)
    ]
    attendance = pd.DataFrame(
        {
            "student_id": [r[0] for r in attendance_rows],
            "date": _dates([r[1] for r in attendance_rows]),
            "status": [r[2] for r in attendance_rows],
        }
    )
    subjects = ("chinese", "math")
    grades = pd.DataFrame(
        {
            "student_id": [s for s in ids for _ in subjects],
            "school_year": [SCHOOL_YEAR] * (2 * n),
            "term": [1] * (2 * n),
            "exam": ["monthly"] * (2 * n),
            "subject": list(subjects) * n,
            "score": [float("nan") if i == 5 else 60.0 + (i * 7) % 40 for i in range(2 * n)],
            "max_score": [100.0] * (2 * n),
            "date": _dates(["2024-10-15"] * (2 * n)),
        }
    )
    status_events = pd.DataFrame(
        {
            "student_id": [*ids, "S013"],
            "date": _dates(["2024-09-02"] * n + ["2024-10-28"]),
            "event": ["enrol"] * n + ["dropout"],
            "school_id": ["P01"] * 10 + ["J01"] * 10 + ["J01"],
        }
    )
    interventions = pd.DataFrame(
        {
            "student_id": ["S013", "S013"],
            "date": _dates(["2024-10-29", "2024-10-30"]),
            "kind": ["phone_call", "home_visit"],
            "by_role": ["homeroom_teacher", "principal"],
            "outcome": ["not_reached", "contacted"],
        }
    )
    student_attributes = pd.DataFrame(
        {
            "student_id": ["S001", "S002", "S002"],
            "attribute": ["distance_km", "distance_km", "siblings"],
            "value": [3.5, 12.0, 2.0],
        }
    )
    return RawTables(
        schools=schools,
        calendar=calendar,
        students=students,
        enrolments=enrolments,
        attendance=attendance,
        grades=grades,
        status_events=status_events,
        interventions=interventions,
        student_attributes=student_attributes,
    )


def write_valid_export(out_dir: Path, fmt: ExportFormat = "csv") -> Path:
    """Write the valid export to `out_dir` and return it."""
    return write_export(build_tables(), out_dir, fmt)
