"""Measure the as-of attendance features on a large synthetic register.

    python bench/bench_attendance_features.py [--students 100000] [--full-register]

Builds, with numpy, a county of `--students` pupils in 100 schools over one school year
of 200 school days (two terms), an attendance register with about 5 % of student-days
not simply present (or every student-day with `--full-register`), and a few dropouts
and returns. Then times `attendance_features` for one as_of (the weekly scoring case) and
for 10 as_of dates, and `build_snapshot` for one, printing seconds and the peak resident
memory above the baseline while each ran (sampled every 5 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.attendance import attendance_features
from features.enrolment import active_spells, enrolled_population
from features.snapshot import build_snapshot
from features.tables import COLUMNS, RawTables, empty_table

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(label: str, fn: Callable[[], Any]) -> Any:
    baseline = rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    peak[0] = max(peak[0], rss_bytes())
    print(
        f"{label:<45} {seconds:6.2f} s   peak RSS +{(peak[0] - baseline) / 2**20:6.0f} MiB"
        f"   (process {peak[0] / 2**20:.0f} MiB)"
    )
    return result


def school_year_days() -> list[pd.Timestamp]:
    term1 = pd.bdate_range("2024-09-02", "2025-01-10")
    term2 = pd.bdate_range("2025-02-17", "2025-06-30")
    days = [d for d in term1.append(term2) if not (d.month == 10 and d.day <= 7)]
    return days[:200]


def county(n_students: int, *, full_register: bool, seed: int = 0) -> RawTables:
    rng = np.random.default_rng(seed)
    n_schools = 100
    days = pd.DatetimeIndex(school_year_days())
    school_ids = np.array([f"SCH{i:03d}" for i in range(n_schools)])
    student_ids = np.array([f"S{i:07d}" for i in range(n_students)])
    school_of = rng.integers(0, n_schools, n_students)
    calendar = pd.DataFrame(
        {
            "school_id": np.repeat(school_ids, len(days)),
            "date": np.tile(days.to_numpy(), n_schools),
        }
    ).astype({"school_id": "str", "date": "datetime64[ns]"})
    students = pd.DataFrame(
        {
            "student_id": student_ids,
            "sex": rng.choice(["F", "M"], n_students),
            "birth_date": pd.Timestamp("2011-01-01")
            + pd.to_timedelta(rng.integers(0, 365 * 6, n_students), unit="D"),
            **{f: rng.random(n_students) < 0.05 for f in COLUMNS["students"][3:9]},
            "left_behind": rng.choice(["none", "one_parent_away", "both_parents_away"], n_students),
            "migrant_child": rng.random(n_students) < 0.05,
            "guardian": rng.choice(["parents", "grandparents"], n_students),
            "boarding": rng.random(n_students) < 0.2,
        }
    ).astype({"student_id": "str", "sex": "str", "left_behind": "str", "guardian": "str"})
    enrolments = pd.DataFrame(
        {
            "student_id": student_ids,
            "school_year": np.int64(2024),
            "school_id": school_ids[school_of],
            "class_id": np.array([f"C{g}" for g in rng.integers(1, 10, n_students)]),
            "grade_level": rng.integers(1, 10, n_students).astype(np.int64),
            "start_date": pd.Timestamp("2024-08-01"),
            "end_date": pd.Timestamp("2025-07-31"),
        }
    ).astype({"student_id": "str", "school_id": "str", "class_id": "str"})
    # Register: every student-day, or the ~5 % that are not simply present.
    n_days = len(days)
    codes = rng.choice(5, size=n_students * n_days, p=[0.95, 0.02, 0.01, 0.01, 0.01]).astype(
        np.int8
    )
    keep = slice(None) if full_register else np.flatnonzero(codes > 0)
    statuses = np.array(["present", "late", "leave_sick", "leave_personal", "absent_unexcused"])
    attendance = pd.DataFrame(
        {
            "student_id": np.repeat(student_ids, n_days)[keep],
            "date": np.tile(days.to_numpy(), n_students)[keep],
            "status": statuses[codes[keep]],
        }
    ).astype({"student_id": "str", "status": "str", "date": "datetime64[ns]"})
    leavers = rng.choice(n_students, n_students // 100, replace=False)
    out_day = days[rng.integers(20, 150, len(leavers))]
    back = leavers[: len(leavers) // 2]
    status_events = pd.DataFrame(
        {
            "student_id": np.r_[student_ids[leavers], student_ids[back]],
            "date": np.r_[out_day.to_numpy(), (out_day[: len(back)] + pd.Timedelta(days=21))],
            "event": ["dropout"] * len(leavers) + ["return"] * len(back),
            "school_id": np.r_[school_ids[school_of[leavers]], school_ids[school_of[back]]],
        }
    ).astype({"student_id": "str", "event": "str", "school_id": "str", "date": "datetime64[ns]"})
    return RawTables(
        schools=empty_table("schools"),
        calendar=calendar,
        students=students,
        enrolments=enrolments,
        attendance=attendance,
        grades=empty_table("grades").astype(
            {"score": "float64", "max_score": "float64", "school_year": "int64", "term": "int64"}
        ),
        status_events=status_events,
        interventions=empty_table("interventions"),
        student_attributes=empty_table("student_attributes"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--full-register", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tables = county(args.students, full_register=args.full_register)
    print(
        f"county: {args.students} students x 200 school days, {len(tables.attendance):,}"
        f" attendance rows, built in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores"
    )
    as_of = dt.date(2025, 6, 16)
    as_ofs = [as_of - dt.timedelta(weeks=w) for w in range(10)]
    population = enrolled_population(tables, as_ofs=[as_of])
    population_10 = enrolled_population(tables, as_ofs=as_ofs)
    spells = active_spells(tables)
    measure("active_spells (enrolments + status events)", lambda: active_spells(tables))
    measure(
        f"attendance_features, 1 as_of ({len(population):,} rows)",
        lambda: attendance_features(tables, population=population, spells=spells),
    )
    measure(
        f"attendance_features, 10 as_ofs ({len(population_10):,} rows)",
        lambda: attendance_features(tables, population=population_10, spells=spells),
    )
    measure("build_snapshot, 1 as_of (all features)", lambda: build_snapshot(tables, as_of=as_of))


if __name__ == "__main__":
    main()
