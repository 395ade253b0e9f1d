"""A seeded synthetic county: demo data, test data and notebook data for the whole product.

`generate_county` builds one poor rural county (a county town plus 2-15 townships) and
simulates its compulsory-school pupils school year by school year: enrolment and
progression (with the grade 6 -> 7 move to the township junior school), a real school
calendar, absences, exam results, transfers, suspensions, dropouts and returns
(劝返复学). A hidden latent risk per pupil, driven by hardship, left-behind status,
over-age, low achievement and grade, drives all of it; the signal a model can see is
noisy on purpose. Every assumption and its source is in docs/synthetic-county.md.

The output is a `RawTables` with the in-memory dtypes of `features.tables`. The same seed
gives identical frames. Everything is vectorised with numpy over pupils x school days;
Python loops run only over the rare events (dropouts, transfers, absence episodes).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from features.holidays import SchoolYearCalendar, school_year_calendar
from features.names import GRADE_NUMERALS
from features.schemas import empty_frame
from features.tables import (
    ATTENDANCE_STATUSES,
    EVENTS,
    EXAMS,
    GUARDIANS,
    HARDSHIP_FLAGS,
    INTERVENTION_KINDS,
    LEFT_BEHIND,
    OUTCOMES,
    ROLES,
    RawTables,
    default_enrolment_end,
    default_enrolment_start,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Assumptions (each is explained, with its source or rationale, in docs/synthetic-county.md)
# --------------------------------------------------------------------------------------

COUNTY_NAME = "宝溪县"  # fictional
COUNTY_TOWN = "城关镇"
TOWNSHIP_NAMES = (
    "青石镇", "柳河乡", "白岩镇", "龙潭乡", "石门镇", "桃源乡", "高坪镇", "马鞍乡",
    "双溪镇", "金竹乡", "红岩镇", "杨柳乡", "太平镇", "新场乡", "黄泥乡",
)  # fmt: skip
VILLAGE_NAMES = (
    "上坝", "下寨", "中岭", "岩脚", "河口", "坪上", "沙坝", "竹林", "新村", "田坎", "松树",
    "大湾",
)  # fmt: skip

STUDENTS_PER_TOWNSHIP = 1500  # pupils per township when choosing how many townships
COUNTY_TOWN_SHARE = 0.30  # share of pupils in county-town schools
NINE_YEAR_SCHOOL_PROB = 0.35  # a township has a 九年一贯制 school
RURAL_TO_TOWN_JUNIOR = 0.06  # rural grade-6 leavers who go to a county-town junior school
COHORT_TREND = 0.95  # each new grade-1 cohort relative to the previous one (falling births)

# Pupils' names: a surname drawn by its share of the population (approximate shares,
# per cent, of China's most common surnames), then a given name of one character
# (P_SINGLE_GIVEN) or two, from characters common in names of children born 2008-2020,
# separate lists for girls and boys. Names come from their own random stream
# (NAME_STREAM), so adding or changing them leaves every other column of a seed as it was.
SURNAMES = (
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("赵", 2.3),
    ("黄", 2.2), ("吴", 2.1), ("周", 1.9), ("徐", 1.6), ("孙", 1.5), ("马", 1.5), ("朱", 1.3),
    ("胡", 1.3), ("郭", 1.2), ("何", 1.2), ("林", 1.1), ("高", 1.1), ("罗", 1.0), ("郑", 0.9),
    ("梁", 0.9), ("谢", 0.8), ("宋", 0.7), ("唐", 0.7), ("许", 0.7), ("韩", 0.7), ("冯", 0.6),
    ("邓", 0.6), ("曹", 0.6), ("彭", 0.6), ("曾", 0.6), ("肖", 0.6), ("田", 0.6), ("董", 0.6),
    ("袁", 0.5), ("潘", 0.5), ("于", 0.5), ("蒋", 0.5), ("蔡", 0.5), ("余", 0.5), ("杜", 0.5),
    ("叶", 0.5), ("程", 0.5), ("苏", 0.4), ("魏", 0.4), ("吕", 0.4), ("丁", 0.4), ("任", 0.4),
    ("沈", 0.4), ("姚", 0.4), ("卢", 0.4), ("姜", 0.4), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("汪", 0.3), ("范", 0.3), ("金", 0.3), ("石", 0.3), ("廖", 0.3), ("贾", 0.3),
    ("夏", 0.2), ("韦", 0.2), ("付", 0.2), ("方", 0.2), ("白", 0.2), ("邹", 0.2), ("孟", 0.2),
    ("熊", 0.2), ("秦", 0.2), ("邱", 0.2), ("江", 0.2), ("尹", 0.1), ("薛", 0.1), ("段", 0.1),
    ("雷", 0.1), ("侯", 0.1), ("龙", 0.1), ("史", 0.1), ("陶", 0.1), ("黎", 0.1), ("贺", 0.1),
)  # fmt: skip
GIVEN_FIRST = {
    "M": "子宇浩俊梓一家嘉志天明文博睿晨思泽铭宏建佳鹏金立伟永国世春海",
    "F": "欣梓子雨诗佳思可一紫语晓雅心美婉玉丽春海秋若芷依梦",
}
GIVEN_SECOND = {
    "M": "轩然宇杰豪博辰航睿泽涛阳鑫磊宁昊晨毅凯强鹏伟林宏斌成飞龙勇峰",
    "F": "怡涵萱琪雨彤妍悦婷静颖瑶蕊琳洁雪娜倩璇晴菲霞丹萍",
}
P_SINGLE_GIVEN = 0.10
NAME_STREAM = 0x6E616D65  # "name": the names' random stream, next to the seed

# Per-grade yearly probability that an average enrolled pupil starts a dropout.
DROPOUT_TARGET: dict[int, float] = {
    1: 0.0025, 2: 0.0022, 3: 0.0025, 4: 0.0030, 5: 0.0038, 6: 0.0050,
    7: 0.0160, 8: 0.0190, 9: 0.0170,
}  # fmt: skip
SEPT_PEAK = 7.0  # extra hazard (times baseline) on the first day of term 1, decaying
SEPT_PEAK_GRADE7 = 18.0  # not showing up at the junior school after grade 6
SPRING_PEAK = 10.0  # first day of term 2, after the Spring Festival break
PEAK_DECAY_DAYS = 4.0  # e-folding of the term-start peaks, in school days
RELAPSE_COEF = 1.2  # log-hazard added for a 辍返生 (x3.3)
P_RETURN_FIRST = 0.60  # a first-time dropout is persuaded back (劝返) within the data
P_RETURN_AGAIN = 0.35
P_TRANSFER_OUT = 0.008  # per year; migrant children x5
P_SUSPEND = 0.0012  # per year; disabled pupils x8
P_REPEAT = 0.004  # per year, concentrated on low achievers
P_TRANSFER_IN = 0.005  # new pupils from outside the county, share of enrolment per year
RISK_NOISE_SD = 0.95  # unobserved family and personal circumstances (log-hazard sd)
P_DROPOUT_RAMP = 0.6  # share of dropouts preceded by weeks of growing absence
NEAR_MISS_RATIO = 2.0  # disengagement runs that end with the pupil back, per dropout
EPISODE_RATE = 0.10  # short unexcused absence episodes per pupil-year (average pupil)

# Daily absence probabilities of an average pupil (by status).
P_UNEXCUSED = 0.0045
P_SICK = 0.012
P_PERSONAL = 0.006
P_LATE = 0.010

PRESENT, LATE, SICK, PERSONAL, UNEXCUSED = range(5)
assert ATTENDANCE_STATUSES[UNEXCUSED] == "absent_unexcused"
EV = {name: i for i, name in enumerate(EVENTS)}
KIND = {name: i for i, name in enumerate(INTERVENTION_KINDS)}
ROLE = {name: i for i, name in enumerate(ROLES)}
OUTCOME = {name: i for i, name in enumerate(OUTCOMES)}
SUBJECTS = ("chinese", "math", "english", "physics")
NEVER = 1_000_000  # a day index meaning "does not happen this year"

# Pupil states between school years.
IN_SCHOOL, PENDING_RETURN, PENDING_RESUME, GONE = 1, 2, 3, 9

# School kinds.
TOWN_PRIMARY, CENTRAL_PRIMARY, VILLAGE_PRIMARY, JUNIOR, NINE_YEAR, TOWN_JUNIOR = range(6)
CLASS_TARGET = {
    TOWN_PRIMARY: 48,
    CENTRAL_PRIMARY: 42,
    VILLAGE_PRIMARY: 30,
    JUNIOR: 48,
    NINE_YEAR: 40,
    TOWN_JUNIOR: 50,
}


# --------------------------------------------------------------------------------------
# Geography
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geography:
    """Schools as parallel arrays (index = school number) plus catchments."""

    school_id: np.ndarray
    name: np.ndarray
    township: np.ndarray  # township number; 0 is the county town
    township_name: tuple[str, ...]
    kind: np.ndarray
    catch_school: np.ndarray  # schools that take grade 1 (primary or nine-year)
    catch_weight: np.ndarray
    junior_of: np.ndarray  # per school: the junior school its grade-6 pupils go to, -1 = town
    town_juniors: np.ndarray
    township_minority: np.ndarray
    township_poverty: np.ndarray
    township_risk: np.ndarray

    @property
    def rural(self) -> np.ndarray:
        return self.township > 0

    @property
    def level(self) -> np.ndarray:
        out = np.full(self.kind.shape, "primary", dtype=object)
        out[(self.kind == JUNIOR) | (self.kind == TOWN_JUNIOR)] = "junior"
        out[self.kind == NINE_YEAR] = "nine_year"
        return out


def _n_townships(n_students: int) -> int:
    return int(np.clip(round(n_students / STUDENTS_PER_TOWNSHIP), 2, 15))


def _build_geography(n_students: int, rng: np.random.Generator) -> _Geography:
    """Townships, their schools and how many pupils each primary catchment takes."""
    n_town = _n_townships(n_students)
    names = (COUNTY_TOWN, *TOWNSHIP_NAMES[:n_town])
    ids: list[str] = []
    labels: list[str] = []
    tship: list[int] = []
    kinds: list[int] = []
    weights: list[float] = []  # share of the county's grade-1 intake (0 for juniors)

    def add(sid: str, label: str, t: int, kind: int, w: float) -> None:
        ids.append(sid)
        labels.append(label)
        tship.append(t)
        kinds.append(kind)
        weights.append(w)

    n_town_primary = int(np.clip(round(n_students * COUNTY_TOWN_SHARE / 2000), 1, 4))
    n_town_junior = int(np.clip(round(n_students * COUNTY_TOWN_SHARE / 3000), 1, 3))
    town_w = rng.dirichlet(np.full(n_town_primary, 8.0)) * COUNTY_TOWN_SHARE
    for k in range(n_town_primary):
        add(f"C00P{k + 1}", f"{COUNTY_NAME}第{k + 1}实验小学", 0, TOWN_PRIMARY, town_w[k])
    for k in range(n_town_junior):
        add(f"C00J{k + 1}", f"{COUNTY_NAME}第{k + 1}中学", 0, TOWN_JUNIOR, 0.0)

    t_share = rng.dirichlet(np.full(n_town, 6.0)) * (1 - COUNTY_TOWN_SHARE)
    for t in range(1, n_town + 1):
        tname = names[t]
        code = f"T{t:02d}"
        has_nine = rng.random() < NINE_YEAR_SCHOOL_PROB
        n_village = int(rng.integers(2, 5))
        village_parts = rng.dirichlet(np.full(n_village, 3.0)) * 0.35
        parts = np.concatenate([[0.45], village_parts, [0.20 if has_nine else 0.0]])
        if not has_nine:
            parts[0] += 0.20
        parts = parts * t_share[t - 1]
        add(f"{code}P0", f"{tname}中心小学", t, CENTRAL_PRIMARY, parts[0])
        villages = rng.choice(len(VILLAGE_NAMES), size=n_village, replace=False)
        for k, v in enumerate(villages):
            add(
                f"{code}P{k + 1}",
                f"{tname}{VILLAGE_NAMES[v]}小学",
                t,
                VILLAGE_PRIMARY,
                parts[k + 1],
            )
        add(f"{code}J", f"{tname}中学", t, JUNIOR, 0.0)
        if has_nine:
            add(f"{code}N", f"{tname}九年一贯制学校", t, NINE_YEAR, parts[-1])

    kind = np.array(kinds)
    township = np.array(tship)
    w = np.array(weights)
    catch = np.flatnonzero(w > 0)
    junior_of = np.full(len(ids), -1)
    for s in range(len(ids)):
        if kind[s] == NINE_YEAR:
            junior_of[s] = s
        elif kind[s] in (CENTRAL_PRIMARY, VILLAGE_PRIMARY):
            junior_of[s] = np.flatnonzero((township == township[s]) & (kind == JUNIOR))[0]
    # Ethnic-minority share: most townships few, some (minority villages) many.
    minority = np.where(
        rng.random(n_town + 1) < 0.4, rng.beta(3, 7, n_town + 1), rng.beta(1, 20, n_town + 1)
    )
    minority[0] = 0.08
    poverty = rng.normal(0.0, 0.35, n_town + 1)
    poverty[0] = 0.0
    return _Geography(
        school_id=np.array(ids, dtype=object),
        name=np.array(labels, dtype=object),
        township=township,
        township_name=names,
        kind=kind,
        catch_school=catch,
        catch_weight=w[catch] / w[catch].sum(),
        junior_of=junior_of,
        town_juniors=np.flatnonzero(kind == TOWN_JUNIOR),
        township_minority=minority,
        township_poverty=poverty,
        township_risk=rng.normal(0.0, 0.20, n_town + 1),
    )


def _schools_frame(geo: _Geography) -> pd.DataFrame:
    """The `schools` table."""
    return pd.DataFrame(
        {
            "school_id": pd.Series(geo.school_id, dtype="str"),
            "name": pd.Series(geo.name, dtype="str"),
            "county": pd.Series([COUNTY_NAME] * len(geo.school_id), dtype="str"),
            "township": pd.Series([geo.township_name[t] for t in geo.township], dtype="str"),
            "level": pd.Series(geo.level, dtype="str"),
            "rural": geo.rural.astype(bool),
        }
    )


# --------------------------------------------------------------------------------------
# Pupils
# --------------------------------------------------------------------------------------

_STATIC = (
    "male", "birth", "poverty", "dibao", "tekun", "disability", "orphan", "single",
    "left", "migrant", "guardian", "minority", "ability", "subject_eff", "r_static",
    "catch", "junior", "u_class",
)  # fmt: skip
_DYNAMIC = ("grade", "state", "returned", "drift", "start_day", "first_event", "last_row")


@dataclass
class _Population:
    """All pupils ever seen, as parallel arrays; grows as cohorts and transfers arrive."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return 0 if not self.arrays else int(self.arrays["male"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def append(self, new: dict[str, np.ndarray]) -> None:
        if not self.arrays:
            self.arrays = new
        else:
            self.arrays = {k: np.concatenate([v, new[k]]) for k, v in self.arrays.items()}


def _draw_pupils(
    rng: np.random.Generator,
    geo: _Geography,
    grades: np.ndarray,
    school_year: int,
    first_event: int,
    start_day: np.ndarray,
    migrant_boost: float = 0.0,
) -> dict[str, np.ndarray]:
    """New pupils in `grades` arriving in `school_year` (hardship, family, ability)."""
    n = grades.shape[0]
    catch = geo.catch_school[rng.choice(geo.catch_school.shape[0], size=n, p=geo.catch_weight)]
    t = geo.township[catch]
    rural = t > 0
    # Family hardship: a latent level with a township effect; the county town is better off.
    h = rng.normal(size=n) + geo.township_poverty[t] - 0.8 * ~rural
    poverty = h > 1.2
    dibao = 0.8 * h + rng.normal(0.0, 0.6, n) > 1.55
    orphan = rng.random(n) < 0.0035 * np.exp(0.4 * h)
    disability = rng.random(n) < 0.013 * np.exp(0.2 * h)
    tekun = (orphan & (rng.random(n) < 0.6)) | (disability & poverty & (rng.random(n) < 0.2))
    single = ~orphan & (rng.random(n) < 0.065 * np.exp(0.35 * h))
    migrant = rng.random(n) < np.where(rural, 0.01, 0.18 + migrant_boost)
    # Left-behind: parents of poorer rural families work away more often.
    u = rng.random(n)
    shift = np.exp(0.15 * h)
    p_both = np.where(rural, 0.17, 0.05) * shift
    p_one = np.where(rural, 0.22, 0.08) * shift
    left = np.where(u < p_both, 2, np.where(u < p_both + p_one, 1, 0))
    left[migrant | orphan] = 0
    g = rng.random((n,))
    guardian = np.zeros(n, dtype=np.int64)
    guardian[(left == 2) & (g < 0.80)] = 1
    guardian[(left == 2) & (g >= 0.80) & (g < 0.95)] = 2
    guardian[(left == 2) & (g >= 0.95)] = 3
    guardian[(left == 1) & (g < 0.10 + 0.30 * single)] = 1
    guardian[(left == 0) & (g < 0.03)] = 1
    g_orphan = g[orphan]
    guardian[orphan] = np.where(g_orphan < 0.5, 1, np.where(g_orphan < 0.85, 2, 3))
    minority = rng.random(n) < geo.township_minority[t]
    male = rng.random(n) < 0.52
    # Over-age at entry (late entry or earlier repetition), commoner in poor rural places.
    p_late = np.where(rural, 0.14, 0.06) * np.exp(0.3 * h) * np.where(disability, 2.5, 1.0)
    extra = (rng.random(n) < p_late).astype(np.int64) + (rng.random(n) < 0.2 * p_late)
    entry_year = school_year - (grades - 1) - extra
    months = (entry_year - 7 - 1970) * 12 + 8  # 1 September of entry_year - 7
    birth = months.astype("datetime64[M]").astype("datetime64[D]") + rng.integers(0, 365, n)
    ability = rng.normal(size=n) - 0.25 * h - 0.6 * disability - 0.2 * extra
    r_static = (
        0.55 * poverty
        + 0.35 * dibao
        + 0.50 * tekun
        + 0.60 * disability
        + 0.60 * orphan
        + 0.35 * single
        + 0.30 * (left == 1)
        + 0.60 * (left == 2)
        + 0.20 * migrant
        + 0.15 * male
        - 0.55 * ability
        + geo.township_risk[t]
        + rng.normal(0.0, RISK_NOISE_SD, n)
    )
    junior = geo.junior_of[catch].copy()
    to_town = (junior < 0) | (~poverty & (rng.random(n) < RURAL_TO_TOWN_JUNIOR))
    to_town &= geo.kind[catch] != NINE_YEAR
    junior[to_town] = rng.choice(geo.town_juniors, size=int(to_town.sum()))
    return {
        "male": male,
        "birth": birth,
        "poverty": poverty,
        "dibao": dibao,
        "tekun": tekun,
        "disability": disability,
        "orphan": orphan,
        "single": single,
        "left": left,
        "migrant": migrant,
        "guardian": guardian,
        "minority": minority,
        "ability": ability,
        "subject_eff": rng.normal(0.0, 0.4, (n, len(SUBJECTS))),
        "r_static": r_static,
        "catch": catch,
        "junior": junior,
        "u_class": rng.random(n),
        "grade": grades.astype(np.int64),
        "state": np.full(n, IN_SCHOOL, dtype=np.int64),
        "returned": np.zeros(n, dtype=bool),
        "drift": np.zeros(n),
        "start_day": start_day.astype(np.int64),
        "first_event": np.full(n, first_event, dtype=np.int64),
        "last_row": np.full(n, -1, dtype=np.int64),
    }


def _over_age_years(birth: np.ndarray, grade: np.ndarray, school_year: int) -> np.ndarray:
    """Whole years a pupil is older than the usual age for the grade on 1 September."""
    age_days = (np.datetime64(date(school_year, 9, 1)) - birth).astype(np.int64)
    age = np.floor(age_days / 365.25).astype(np.int64)
    over: np.ndarray = np.clip(age - (grade + 5), 0, 4)
    return over


# --------------------------------------------------------------------------------------
# One school year
# --------------------------------------------------------------------------------------


def _cum_hazard_profile(cal: SchoolYearCalendar, grade: int) -> np.ndarray:
    """Cumulative seasonal hazard over school days, length n_days + 1 (starts at 0)."""
    d = cal.n_days
    k = np.arange(d)
    s = np.ones(d)
    sept = SEPT_PEAK_GRADE7 if grade == 7 else SEPT_PEAK
    s += sept * np.exp(-k / PEAK_DECAY_DAYS)
    after = k - cal.term2_start
    s[after >= 0] += SPRING_PEAK * np.exp(-after[after >= 0] / PEAK_DECAY_DAYS)
    return np.concatenate([[0.0], np.cumsum(s)])


def _calibrate_scale(weight: np.ndarray, exposure: np.ndarray, target: float) -> float:
    """Hazard scale c with mean(1 - exp(-c * weight * exposure)) == target (bisection)."""
    lo, hi = -30.0, 5.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        p = np.mean(-np.expm1(-np.exp(mid) * weight * exposure))
        lo, hi = (mid, hi) if p < target else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


@dataclass
class _YearLog:
    """What the rare-event loop writes for one school year (rows index the year's pupils)."""

    forced: np.ndarray  # (rows, days) int8, -1 = not forced
    events: list[tuple[int, int, int]] = field(default_factory=list)  # row, day, event
    interventions: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    decline_day: np.ndarray = field(default_factory=lambda: np.empty(0))
    decline_mag: np.ndarray = field(default_factory=lambda: np.empty(0))


def _write_ramp(
    log: _YearLog, rng: np.random.Generator, row: int, lo: int, d0: int, peak: float
) -> None:
    """Absence spells that grow longer and more frequent towards day `d0`."""
    span = max(d0 - lo, 1)
    d = lo
    while d < d0:
        prog = 1.0 - (d0 - d) / span
        if rng.random() < peak * (0.2 + 0.8 * prog):
            end = min(d + 1 + int(rng.poisson(2.0 * prog)), d0)
            log.forced[row, d:end] = UNEXCUSED if rng.random() < 0.8 else PERSONAL
            d = end + 1
        else:
            d += 1


def _contact_interventions(
    log: _YearLog, rng: np.random.Generator, row: int, a: int, b: int, back: bool
) -> None:
    """The escalation ladder for an absence run on days [a, b): call, then home visit."""
    if b - a >= 1:
        out = OUTCOME["contacted"] if rng.random() < 0.75 else OUTCOME["not_reached"]
        log.interventions.append((row, a, KIND["phone_call"], ROLE["homeroom_teacher"], out))
    if b - a >= 2:
        if back:
            out = OUTCOME["returned"] if rng.random() < 0.7 else OUTCOME["contacted"]
        else:
            out = OUTCOME["refused"] if rng.random() < 0.5 else OUTCOME["contacted"]
        log.interventions.append((row, a + 1, KIND["home_visit"], ROLE["homeroom_teacher"], out))


@dataclass(frozen=True)
class _RowPlan:
    """The sampled first events of one eventful pupil-year."""

    start: int
    onset: int
    transfer: int
    suspend: int
    near: int
    lam: float


def _story(
    log: _YearLog,
    rng: np.random.Generator,
    row: int,
    plan: _RowPlan,
    cum: np.ndarray,
    cal: SchoolYearCalendar,
    returned: bool,
) -> tuple[list[tuple[int, int]], int, bool]:
    """Play out one eventful pupil-year: active segments, end state, 辍返生 flag."""
    n_days, t2 = cal.n_days, cal.term2_start
    segments: list[tuple[int, int]] = []
    cur = plan.start
    onset, transfer, suspend = plan.onset, plan.transfer, plan.suspend
    first = min(onset, transfer, suspend)
    if plan.near < NEVER:
        run = int(rng.integers(2, 7))
        if plan.near + run + 5 < first:
            lo = max(cur, plan.near - int(rng.integers(10, 36)))
            _write_ramp(log, rng, row, lo, plan.near, float(rng.uniform(0.1, 0.4)))
            log.forced[row, plan.near : plan.near + run] = UNEXCUSED
            _contact_interventions(log, rng, row, plan.near, plan.near + run, back=True)
            log.decline_day[row] = plan.near
            log.decline_mag[row] = rng.uniform(0.1, 0.5)
    for _ in range(4):
        t = min(onset, transfer, suspend)
        if t >= n_days:
            segments.append((cur, n_days))
            return segments, IN_SCHOOL, returned
        if t == transfer:
            segments.append((cur, t))
            log.events.append((row, t, EV["transfer_out"]))
            return segments, GONE, returned
        if t == suspend:
            segments.append((cur, t))
            log.events.append((row, t, EV["suspend"]))
            if t < t2 and rng.random() < 0.5:
                log.events.append((row, t2, EV["resume"]))
                segments.append((t2, n_days))
                return segments, IN_SCHOOL, returned
            return segments, PENDING_RESUME, returned
        # A dropout: disengagement, an unexcused run, then the school records it.
        d0 = onset
        d_rec = min(d0 + 2 + int(rng.geometric(0.25)), n_days - 1)
        if rng.random() < P_DROPOUT_RAMP:
            lo = max(cur, d0 - int(rng.integers(10, 41)))
            _write_ramp(log, rng, row, lo, d0, float(rng.uniform(0.1, 0.45)))
            mag = rng.uniform(0.3, 1.0)
        else:
            mag = rng.uniform(0.0, 0.3)
        if log.decline_day[row] >= NEVER:
            log.decline_day[row] = d0
            log.decline_mag[row] = mag
        log.forced[row, d0:d_rec] = UNEXCUSED
        segments.append((cur, d_rec))
        log.events.append((row, d_rec, EV["dropout"]))
        comes_back = rng.random() < (P_RETURN_AGAIN if returned else P_RETURN_FIRST)
        _contact_interventions(log, rng, row, d0, d_rec, back=False)
        notice = OUTCOME["returned"] if comes_back else OUTCOME["refused"]
        log.interventions.append(
            (row, min(d_rec + 3, n_days - 1), KIND["return_notice"], ROLE["township"], notice)
        )
        if not comes_back:
            return segments, GONE, returned
        if rng.random() < 0.5:
            back = d_rec + int(rng.integers(10, 31))
        else:
            back = t2 if d_rec < t2 else n_days
        if back >= n_days - 5:
            return segments, PENDING_RETURN, returned
        returned = True
        log.events.append((row, back, EV["return"]))
        log.interventions.append(
            (row, back, KIND["talk_at_school"], ROLE["homeroom_teacher"], OUTCOME["contacted"])
        )
        cur = back
        transfer = suspend = NEVER
        target = cum[back] + rng.exponential() / (plan.lam * np.exp(RELAPSE_COEF))
        onset = int(np.searchsorted(cum, target)) - 1
        onset = onset if onset < n_days - 5 else NEVER
    segments.append((cur, n_days))
    return segments, IN_SCHOOL, returned


def _assign_classes(
    school: np.ndarray, grade: np.ndarray, u: np.ndarray, kind: np.ndarray
) -> np.ndarray:
    """Class number (0-based) within school and grade: even splits of ~CLASS_TARGET pupils."""
    frame = pd.DataFrame({"key": school * 10 + grade, "u": u})
    size = frame.groupby("key")["u"].transform("size").to_numpy()
    rank = frame.groupby("key")["u"].rank(method="first").to_numpy() - 1
    target = np.vectorize(CLASS_TARGET.get)(kind)
    n_classes = np.maximum(1, np.ceil(size / (target + 6))).astype(np.int64)
    klass: np.ndarray = (rank * n_classes // size).astype(np.int64)
    return klass


def _exam_schedule(cal: SchoolYearCalendar) -> list[tuple[int, str, int]]:
    """(term, exam, school-day index) of the year's exams: one monthly, a midterm, a final
    per term (the grades key allows one exam of each kind per term and subject)."""
    y = cal.school_year

    def on_or_after(d: date) -> int:
        return int(np.searchsorted(cal.days, np.datetime64(d)))

    t2 = cal.term2_start
    return [
        (1, "monthly", on_or_after(date(y, 10, 12))),
        (1, "midterm", on_or_after(date(y, 11, 10))),
        (1, "final", t2 - 3),
        (2, "monthly", max(t2 + 15, on_or_after(date(y + 1, 3, 25)))),
        (2, "midterm", on_or_after(date(y + 1, 4, 25))),
        (2, "final", cal.n_days - 4),
    ]


@dataclass
class _Out:
    """Rows of every table, as lists of numpy column chunks, until the frames are built."""

    enrolments: list[dict[str, np.ndarray]] = field(default_factory=list)
    attendance: list[dict[str, np.ndarray]] = field(default_factory=list)
    grades: list[dict[str, np.ndarray]] = field(default_factory=list)
    events: list[dict[str, np.ndarray]] = field(default_factory=list)
    interventions: list[dict[str, np.ndarray]] = field(default_factory=list)
    last_school: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    last_grade: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def _simulate_year(
    pop: _Population,
    geo: _Geography,
    cal: SchoolYearCalendar,
    rng: np.random.Generator,
    out: _Out,
) -> None:
    """Simulate one school year for every pupil in school, and move them on."""
    y, n_days = cal.school_year, cal.n_days
    idx = np.flatnonzero(np.isin(pop["state"], (IN_SCHOOL, PENDING_RETURN, PENDING_RESUME)))
    n = idx.shape[0]
    grade = pop["grade"][idx]
    state = pop["state"][idx]
    start = pop["start_day"][idx]
    school = np.where(grade <= 6, pop["catch"][idx], pop["junior"][idx])
    kind = geo.kind[school]
    junior = grade >= 7

    # Activating events: first entry, return or resumption at the start of the year.
    first_ev = pop["first_event"][idx]
    act_rows = np.flatnonzero((first_ev >= 0) | (state != IN_SCHOOL))
    act_event = np.where(
        state[act_rows] == PENDING_RETURN,
        EV["return"],
        np.where(state[act_rows] == PENDING_RESUME, EV["resume"], first_ev[act_rows]),
    )
    returned = pop["returned"][idx] | (state == PENDING_RETURN)

    # Latent risk this year.
    over = _over_age_years(pop["birth"][idx], grade, y)
    logw = (
        pop["r_static"][idx]
        + 0.45 * np.minimum(over, 3)
        + 0.40 * ((over >= 2) & junior)
        + RELAPSE_COEF * returned
    )
    z = (logw - logw.mean()) / (logw.std() + 1e-9)

    # Hazards and first events.
    lam = np.zeros(n)
    onset = np.full(n, NEVER, dtype=np.int64)
    near = np.full(n, NEVER, dtype=np.int64)
    cums = {g: _cum_hazard_profile(cal, g) for g in range(1, 10)}
    for g in range(1, 10):
        rows = np.flatnonzero(grade == g)
        if rows.size == 0:
            continue
        cum = cums[g]
        w = np.exp(logw[rows])
        exposure = cum[n_days - 5] - cum[np.minimum(start[rows], n_days - 5)]
        base_w = np.exp(logw[rows] - RELAPSE_COEF * returned[rows])
        c = _calibrate_scale(base_w, exposure, DROPOUT_TARGET[g])
        lam[rows] = c * w
        target = cum[start[rows]] + rng.exponential(size=rows.size) / lam[rows]
        on = np.searchsorted(cum, target) - 1
        onset[rows] = np.where(on < n_days - 5, on, NEVER)
        p_drop = -np.expm1(-lam[rows] * exposure)
        is_near = rng.random(rows.size) < np.minimum(0.3, NEAR_MISS_RATIO * p_drop)
        frac = rng.random(rows.size)
        lo_c = cum[np.minimum(start[rows], n_days - 5)]
        nt = np.searchsorted(cum, lo_c + frac * (cum[n_days - 5] - lo_c)) - 1
        near[rows] = np.where(is_near, np.clip(nt, start[rows], n_days - 6), NEVER)
    migrant = pop["migrant"][idx]
    p_tr = P_TRANSFER_OUT * np.where(migrant, 5.0, 1.0)
    does_tr = rng.random(n) < p_tr
    tr_day = np.where(
        rng.random(n) < 0.4, n_days - 1, start + (rng.random(n) * (n_days - 1 - start)).astype(int)
    )
    transfer = np.where(does_tr, np.maximum(tr_day, start + 1), NEVER)
    p_su = P_SUSPEND * np.where(pop["disability"][idx], 8.0, 1.0)
    sus_day = start + (rng.random(n) * np.maximum(n_days - 5 - start, 1)).astype(int)
    suspend = np.where(rng.random(n) < p_su, np.maximum(sus_day, start + 1), NEVER)

    log = _YearLog(
        forced=np.full((n, n_days), -1, dtype=np.int8),
        decline_day=np.full(n, NEVER, dtype=np.int64),
        decline_mag=np.zeros(n),
    )
    # Short unexcused episodes (most end after a phone call; some reach the 3-day rule).
    ep_rate = EPISODE_RATE * np.exp(0.9 * z) * np.where(junior, 1.5, 1.0)
    n_ep = rng.poisson(ep_rate)
    for row in np.repeat(np.arange(n), n_ep).tolist():
        a = int(rng.integers(start[row], n_days))
        b = min(a + int(rng.geometric(0.45)), n_days)
        code = UNEXCUSED if rng.random() < 0.75 else PERSONAL
        log.forced[row, a:b] = code
        if code == UNEXCUSED and b - a >= 2:
            _contact_interventions(log, rng, row, a, b, back=True)

    # The rare eventful pupil-years, one by one.
    active = np.arange(n_days)[None, :] >= start[:, None]
    end_state = np.full(n, IN_SCHOOL, dtype=np.int64)
    eventful = np.flatnonzero(
        (onset < NEVER) | (transfer < NEVER) | (suspend < NEVER) | (near < NEVER)
    )
    for row in eventful.tolist():
        g = int(grade[row])
        plan = _RowPlan(
            int(start[row]),
            int(onset[row]),
            int(transfer[row]),
            int(suspend[row]),
            int(near[row]),
            float(lam[row]),
        )
        segments, end_state[row], returned[row] = _story(
            log, rng, int(row), plan, cums[g], cal, bool(returned[row])
        )
        active[row] = False
        for a, b in segments:
            active[row, a:b] = True
    graduates = (end_state == IN_SCHOOL) & (grade == 9)
    active[graduates, n_days - 1] = False

    # Attendance: a register of non-present days on days the pupil is in school.
    daily = _daily_attendance(rng, z, junior, pop["disability"][idx], returned, cal)
    daily = np.where(log.forced >= 0, log.forced, daily)
    daily[~active] = PRESENT
    r_att, d_att = np.nonzero(daily)
    out.attendance.append(
        {
            "pupil": idx[r_att],
            "date": cal.days[d_att],
            "status": daily[r_att, d_att],
        }
    )

    # Enrolment rows and classes.
    klass = _assign_classes(school, grade, pop["u_class"][idx], kind)
    out.enrolments.append(
        {
            "pupil": idx,
            "school_year": np.full(n, y),
            "school": school,
            "klass": klass,
            "grade": grade,
        }
    )

    # Exam results.
    out.grades.extend(_year_grades(rng, pop, idx, grade, school, z, daily, active, log, cal))

    # Status events.
    ev_rows = [act_rows, np.flatnonzero(graduates)]
    ev_days = [
        np.where(act_event == EV["transfer_in"], start[act_rows], 0),
        np.full(graduates.sum(), n_days - 1),
    ]
    ev_codes = [act_event, np.full(graduates.sum(), EV["graduate"])]
    if log.events:
        rare = np.array(log.events, dtype=np.int64)
        ev_rows.append(rare[:, 0])
        ev_days.append(rare[:, 1])
        ev_codes.append(rare[:, 2])
    rows_all = np.concatenate(ev_rows)
    out.events.append(
        {
            "pupil": idx[rows_all],
            "date": cal.days[np.concatenate(ev_days)],
            "event": np.concatenate(ev_codes),
            "school": school[rows_all],
        }
    )

    # Interventions: the ladder's contacts (above) plus routine support.
    out.interventions.append(_year_interventions(rng, pop, idx, grade, over, active, log, cal))

    # Move on: graduate, repeat, progress; remember pending returns and resumptions.
    repeat = (end_state == IN_SCHOOL) & (grade < 9)
    repeat &= rng.random(n) < P_REPEAT * np.exp(-1.2 * pop["ability"][idx]) / 2.0
    new_grade = np.where((end_state == IN_SCHOOL) & ~repeat, grade + 1, grade)
    new_state = np.where(graduates, GONE, end_state)
    pop["grade"][idx] = new_grade
    pop["state"][idx] = new_state
    pop["returned"][idx] = returned
    pop["start_day"][idx] = 0
    pop["first_event"][idx] = -1
    pop["drift"][idx] += rng.normal(0.0, 0.25, n)
    out.last_school[idx] = school
    out.last_grade[idx] = grade
    logger.debug(
        "school year %d: %d pupils, %d dropouts, %d attendance rows",
        y,
        n,
        sum(1 for e in log.events if e[2] == EV["dropout"]),
        r_att.size,
    )


def _daily_attendance(
    rng: np.random.Generator,
    z: np.ndarray,
    junior: np.ndarray,
    disability: np.ndarray,
    returned: np.ndarray,
    cal: SchoolYearCalendar,
) -> np.ndarray:
    """Background status codes (pupils x school days): sporadic leave, lateness, truancy."""
    n, n_days = z.shape[0], cal.n_days
    month = cal.days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    k = np.arange(n_days)
    winter = np.isin(month, (12, 1, 2, 3)).astype(float)
    term_start = ((k < 5) | ((k >= cal.term2_start) & (k < cal.term2_start + 5))).astype(float)
    p_unexc = (
        P_UNEXCUSED
        * np.exp(0.8 * z - 0.32)
        * np.where(junior, 1.4, 1.0)
        * np.where(returned, 2.5, 1.0)
    )
    p_unexc = np.minimum(p_unexc, 0.15)
    p_sick = P_SICK * np.exp(0.15 * z + 0.8 * disability)
    p_pers = P_PERSONAL * np.exp(0.35 * z)
    p_late = P_LATE * np.exp(0.3 * z)
    u = rng.random((n, n_days), dtype=np.float32)
    codes = np.zeros((n, n_days), dtype=np.int8)
    thr = (p_unexc[:, None] * (1.0 + 0.8 * term_start)[None, :]).astype(np.float32)
    codes[u < thr] = UNEXCUSED
    thr += (p_sick[:, None] * (1.0 + 0.6 * winter)[None, :]).astype(np.float32)
    codes[(u < thr) & (codes == 0)] = SICK
    thr += p_pers[:, None].astype(np.float32)
    codes[(u < thr) & (codes == 0)] = PERSONAL
    thr += p_late[:, None].astype(np.float32)
    codes[(u < thr) & (codes == 0)] = LATE
    return codes


def _year_grades(
    rng: np.random.Generator,
    pop: _Population,
    idx: np.ndarray,
    grade: np.ndarray,
    school: np.ndarray,
    z: np.ndarray,
    daily: np.ndarray,
    active: np.ndarray,
    log: _YearLog,
    cal: SchoolYearCalendar,
) -> list[dict[str, np.ndarray]]:
    """Exam results of the year: one row per pupil in school on the exam day and subject."""
    junior = grade >= 7
    mu = np.where(junior, 0.66, 0.80)
    sd = np.where(junior, 0.17, 0.12)
    base = (
        pop["ability"][idx]
        + pop["drift"][idx]
        - 0.10 * np.maximum(z, 0.0) * np.maximum(grade - 6, 0)
    )
    lag = rng.integers(3, 8, size=(school.max() + 1, 6))
    chunks = []
    for e, (term, exam, day) in enumerate(_exam_schedule(cal)):
        rows = np.flatnonzero(active[:, day])
        missed = np.isin(daily[rows, day], (SICK, PERSONAL, UNEXCUSED))
        missed |= rng.random(rows.size) < 0.002
        until = log.decline_day[rows] - day
        closeness = np.where((until > 0) & (until <= 60), 1.0 - until / 60.0, 0.0)
        level = base[rows] - log.decline_mag[rows] * closeness
        known = cal.days[day] + lag[school[rows], e]
        for s, subject in enumerate(SUBJECTS):
            min_grade = {"chinese": 1, "math": 1, "english": 3, "physics": 8}[subject]
            take = grade[rows] >= min_grade
            if not take.any():
                continue
            r = rows[take]
            max_score = np.where(junior[r] & (subject != "physics"), 120.0, 100.0)
            frac = mu[r] + sd[r] * (
                level[take] + pop["subject_eff"][idx[r], s] + rng.normal(0.0, 0.45, r.size)
            )
            score = np.round(np.clip(frac, 0.02, 1.0) * max_score * 2.0) / 2.0
            score[missed[take]] = np.nan
            chunks.append(
                {
                    "pupil": idx[r],
                    "school_year": np.full(r.size, cal.school_year),
                    "term": np.full(r.size, term),
                    "exam": np.full(r.size, EXAMS.index(exam)),
                    "subject": np.full(r.size, s),
                    "score": score,
                    "max_score": max_score,
                    "date": known[take],
                }
            )
    return chunks


def _year_interventions(
    rng: np.random.Generator,
    pop: _Population,
    idx: np.ndarray,
    grade: np.ndarray,
    over: np.ndarray,
    active: np.ndarray,
    log: _YearLog,
    cal: SchoolYearCalendar,
) -> dict[str, np.ndarray]:
    """The year's recorded support: the ladder's contacts plus routine visits and aid."""
    n, n_days, t2 = idx.shape[0], cal.n_days, cal.term2_start
    hardship = pop["poverty"][idx] | pop["dibao"][idx] | pop["tekun"][idx] | pop["orphan"][idx]
    both_away = pop["left"][idx] == 2
    parts: list[tuple[np.ndarray, np.ndarray, int, int, np.ndarray]] = []

    def add(rows: np.ndarray, days: np.ndarray, kind: str, role: str, outcome: np.ndarray) -> None:
        keep = active[rows, days]
        parts.append((rows[keep], days[keep], KIND[kind], ROLE[role], outcome[keep]))

    for lo, hi in ((0, t2), (t2, n_days)):
        rows = np.flatnonzero(hardship)
        add(rows, np.full(rows.size, lo), "financial_aid", "county", np.full(rows.size, 0))
        p_visit = np.where(hardship | both_away, 0.35, 0.06)
        rows = np.flatnonzero(rng.random(n) < p_visit)
        days = rng.integers(lo, hi, rows.size)
        outcome = np.where(
            rng.random(rows.size) < 0.9, OUTCOME["contacted"], OUTCOME["not_reached"]
        )
        add(rows, days, "home_visit", "homeroom_teacher", outcome)
        rows = np.flatnonzero(pop["disability"][idx] & (rng.random(n) < 0.3))
        add(rows, rng.integers(lo, hi, rows.size), "send_teaching", "subject_teacher",
            np.full(rows.size, OUTCOME["contacted"]))  # fmt: skip
        rows = np.flatnonzero((pop["ability"][idx] < -1.3) & (rng.random(n) < 0.15))
        add(rows, rng.integers(lo, hi, rows.size), "peer_mentor", "homeroom_teacher",
            np.full(rows.size, OUTCOME["contacted"]))  # fmt: skip
    rows = np.flatnonzero(both_away & (rng.random(n) < 0.3))
    add(rows, rng.integers(0, 20, rows.size), "proxy_parent", "subject_teacher",
        np.full(rows.size, OUTCOME["contacted"]))  # fmt: skip
    rows = np.flatnonzero((grade == 9) & (over >= 2) & (rng.random(n) < 0.3))
    outcome = np.where(rng.random(rows.size) < 0.5, OUTCOME["contacted"], OUTCOME["refused"])
    add(rows, rng.integers(t2, n_days - 1, rows.size), "vocational_referral", "principal", outcome)
    rows_l = [p[0] for p in parts]
    days_l = [p[1] for p in parts]
    kinds_l = [np.full(p[0].size, p[2]) for p in parts]
    roles_l = [np.full(p[0].size, p[3]) for p in parts]
    outs_l = [p[4] for p in parts]
    if log.interventions:
        rare = np.array(log.interventions, dtype=np.int64)
        rows_l.append(rare[:, 0])
        days_l.append(rare[:, 1])
        kinds_l.append(rare[:, 2])
        roles_l.append(rare[:, 3])
        outs_l.append(rare[:, 4])
    rows = np.concatenate(rows_l)
    return {
        "pupil": idx[rows],
        "date": cal.days[np.concatenate(days_l)],
        "kind": np.concatenate(kinds_l),
        "by_role": np.concatenate(roles_l),
        "outcome": np.concatenate(outs_l),
    }


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------


def _cat(chunks: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.concatenate([c[key] for c in chunks])


def _str(values: np.ndarray, vocabulary: np.ndarray | tuple[str, ...] | None = None) -> pd.Series:
    """A `str` column, from codes into `vocabulary` or from values."""
    if vocabulary is not None:
        values = np.asarray(vocabulary, dtype=object)[values]
    return pd.Series(values, dtype="str")


def _dates(values: np.ndarray) -> pd.Series:
    return pd.Series(values.astype("datetime64[ns]"))


def _pupil_names(male: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible Chinese name per pupil (object array of str), a given name to suit the
    pupil's sex; `rng` is the names' own stream (the same draws whatever `male` holds)."""
    n = male.shape[0]
    chars, shares = zip(*SURNAMES, strict=True)
    weights = np.asarray(shares, dtype=np.float64)
    picked = rng.choice(len(chars), size=n, p=weights / weights.sum())
    surname = np.asarray(chars, dtype=object)[picked]
    single = rng.random(n) < P_SINGLE_GIVEN
    given = np.empty(n, dtype=object)
    for sex, rows in (("M", male), ("F", ~male)):
        first = np.asarray(list(GIVEN_FIRST[sex]), dtype=object)
        second = np.asarray(list(GIVEN_SECOND[sex]), dtype=object)
        a = first[rng.integers(0, first.size, n)]
        b = second[rng.integers(0, second.size, n)]
        # one character for a single given name, or where both lists drew the same one
        given[rows] = np.where(single | (a == b), b, a + b)[rows]
    names: np.ndarray = surname + given
    return names


def _students_frame(
    pop: _Population,
    geo: _Geography,
    out: _Out,
    ids: np.ndarray,
    rng: np.random.Generator,
    names_rng: np.random.Generator,
) -> pd.DataFrame:
    """The `students` table; boarding depends on the last school attended; names come
    from `names_rng` only."""
    kind = geo.kind[out.last_school]
    g = out.last_grade
    p_board = np.select(
        [kind == JUNIOR, kind == TOWN_JUNIOR, (kind == NINE_YEAR) & (g >= 4),
         (kind == CENTRAL_PRIMARY) & (g >= 4), kind == TOWN_PRIMARY],
        [0.55, 0.20, 0.40, 0.15, 0.02],
        default=0.0,
    )  # fmt: skip
    p_board = np.minimum(p_board * np.where(pop["left"] == 2, 1.3, 1.0), 0.95)
    boarding = rng.random(pop.n) < p_board
    return pd.DataFrame(
        {
            "student_id": _str(ids),
            "sex": _str(np.where(pop["male"], "M", "F")),
            "birth_date": _dates(pop["birth"]),
            "poverty_registered": pop["poverty"].astype(bool),
            "dibao": pop["dibao"].astype(bool),
            "tekun": pop["tekun"].astype(bool),
            "disability": pop["disability"].astype(bool),
            "orphan": pop["orphan"].astype(bool),
            "single_parent": pop["single"].astype(bool),
            "left_behind": _str(pop["left"], LEFT_BEHIND),
            "migrant_child": pop["migrant"].astype(bool),
            "guardian": _str(pop["guardian"], GUARDIANS),
            "boarding": boarding,
            "ethnic_minority": pop["minority"].astype(bool),
            "name": _str(_pupil_names(pop["male"].astype(bool), names_rng)),
        }
    )


def _build_frames(
    pop: _Population,
    geo: _Geography,
    calendars: list[SchoolYearCalendar],
    out: _Out,
    rng: np.random.Generator,
    names_rng: np.random.Generator,
) -> RawTables:
    """Turn the simulated rows into the frames of `RawTables` (pupils' names from
    `names_rng`, class names "N年级(M)班" from grade and class number)."""
    ids = np.array([f"S{k:06d}" for k in range(pop.n)], dtype=object)
    schools = _schools_frame(geo)
    n_schools = len(geo.school_id)
    all_days = np.concatenate([c.days for c in calendars])
    calendar = pd.DataFrame(
        {
            "school_id": _str(np.repeat(np.arange(n_schools), all_days.size), geo.school_id),
            "date": _dates(np.tile(all_days, n_schools)),
        }
    )
    enr = out.enrolments
    years = _cat(enr, "school_year")
    school = _cat(enr, "school")
    grade = _cat(enr, "grade")
    klass = _cat(enr, "klass")
    class_id = (
        pd.Series(geo.school_id[school], dtype="str")
        + "-Y"
        + pd.Series(years).astype("str")
        + "-G"
        + pd.Series(grade).astype("str")
        + "-C"
        + pd.Series(klass + 1).astype("str")
    )
    start = {c.school_year: default_enrolment_start(c.school_year) for c in calendars}
    end = {c.school_year: default_enrolment_end(c.school_year) for c in calendars}
    enrolments = pd.DataFrame(
        {
            "student_id": _str(_cat(enr, "pupil"), ids),
            "school_year": years.astype(np.int64),
            "school_id": _str(school, geo.school_id),
            "class_id": class_id.astype("str"),
            "grade_level": grade.astype(np.int64),
            "start_date": pd.Series(years).map(start).astype("datetime64[ns]"),
            "end_date": pd.Series(years).map(end).astype("datetime64[ns]"),
            "class_name": (
                pd.Series(np.asarray(GRADE_NUMERALS, dtype=object)[grade - 1], dtype="str")
                + "年级("
                + pd.Series(klass + 1).astype("str")
                + ")班"
            ).astype("str"),
        }
    )
    att = out.attendance
    attendance = pd.DataFrame(
        {
            "student_id": _str(_cat(att, "pupil"), ids),
            "date": _dates(_cat(att, "date")),
            "status": _str(_cat(att, "status"), ATTENDANCE_STATUSES),
        }
    )
    gr = out.grades
    grades = pd.DataFrame(
        {
            "student_id": _str(_cat(gr, "pupil"), ids),
            "school_year": _cat(gr, "school_year").astype(np.int64),
            "term": _cat(gr, "term").astype(np.int64),
            "exam": _str(_cat(gr, "exam"), EXAMS),
            "subject": _str(_cat(gr, "subject"), SUBJECTS),
            "score": _cat(gr, "score").astype(np.float64),
            "max_score": _cat(gr, "max_score").astype(np.float64),
            "date": _dates(_cat(gr, "date")),
        }
    )
    ev = out.events
    status_events = pd.DataFrame(
        {
            "student_id": _str(_cat(ev, "pupil"), ids),
            "date": _dates(_cat(ev, "date")),
            "event": _str(_cat(ev, "event"), EVENTS),
            "school_id": _str(_cat(ev, "school"), geo.school_id),
        }
    )
    iv = out.interventions
    interventions = pd.DataFrame(
        {
            "student_id": _str(_cat(iv, "pupil"), ids),
            "date": _dates(_cat(iv, "date")),
            "kind": _str(_cat(iv, "kind"), INTERVENTION_KINDS),
            "by_role": _str(_cat(iv, "by_role"), ROLES),
            "outcome": _str(_cat(iv, "outcome"), OUTCOMES),
        }
    )
    students = _students_frame(pop, geo, out, ids, rng, names_rng)
    seen = np.zeros(pop.n, dtype=bool)
    seen[_cat(enr, "pupil")] = True
    students = students[seen].reset_index(drop=True)

    def tidy(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        return frame.sort_values(keys, kind="stable").reset_index(drop=True)

    return RawTables(
        schools=schools,
        calendar=calendar,
        students=students,
        enrolments=tidy(enrolments, ["student_id", "school_year"]),
        attendance=tidy(attendance, ["student_id", "date"]),
        grades=tidy(grades, ["student_id", "school_year", "term", "date", "exam", "subject"]),
        status_events=tidy(status_events, ["student_id", "date"]),
        interventions=tidy(interventions, ["student_id", "date"]),
        student_attributes=empty_frame("student_attributes"),
    )


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def generate_county(
    n_students: int = 20_000, n_years: int = 3, seed: int = 0, first_school_year: int = 2023
) -> RawTables:
    """A seeded synthetic county: every table of an export, `n_years` school years long.

    Parameters
    ----------
    n_students : pupils enrolled in grades 1-9 in the first school year (approximately).
    n_years : school years to simulate, starting with `first_school_year`.
    seed : the same seed gives identical frames.
    first_school_year : the year the first simulated school year starts (2019-2030 minus
        `n_years - 1`, the span of the tabled holidays).

    Returns
    -------
    RawTables with the in-memory dtypes of `features.tables` (schema: `features.schemas`).
    """
    if n_students < 50 or n_years < 1:
        raise ValueError("need at least 50 students and one school year")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    calendars = [school_year_calendar(first_school_year + k) for k in range(n_years)]
    geo = _build_geography(n_students, rng)
    pop = _Population()
    out = _Out()
    per_grade = n_students / 9.0
    for k, cal in enumerate(calendars):
        if k == 0:
            sizes = rng.multinomial(n_students, np.full(9, 1 / 9))
            grades = np.repeat(np.arange(1, 10), sizes)
        else:
            n_new = int(rng.poisson(per_grade * COHORT_TREND**k))
            grades = np.ones(n_new, dtype=np.int64)
        pop.append(
            _draw_pupils(rng, geo, grades, cal.school_year, EV["enrol"], np.zeros(grades.size))
        )
        n_in = int(rng.poisson(P_TRANSFER_IN * n_students))
        when = rng.random(n_in)
        start_day = np.where(
            when < 0.6,
            0,
            np.where(when < 0.85, cal.term2_start, rng.integers(1, cal.n_days - 10, n_in)),
        )
        pop.append(
            _draw_pupils(
                rng,
                geo,
                rng.integers(2, 10, n_in),
                cal.school_year,
                EV["transfer_in"],
                start_day,
                migrant_boost=0.15,
            )
        )
        out.last_school = np.concatenate(
            [out.last_school, np.zeros(pop.n - out.last_school.size, dtype=np.int64)]
        )
        out.last_grade = np.concatenate(
            [out.last_grade, np.zeros(pop.n - out.last_grade.size, dtype=np.int64)]
        )
        _simulate_year(pop, geo, cal, rng, out)
    names_rng = np.random.default_rng([seed, NAME_STREAM])
    tables = _build_frames(pop, geo, calendars, out, rng, names_rng)
    logger.info(
        "synthetic county: %d schools, %d students, %d school years from %d, "
        "%d attendance rows, %d grade rows in %.1fs",
        len(tables.schools),
        len(tables.students),
        n_years,
        first_school_year,
        len(tables.attendance),
        len(tables.grades),
        time.perf_counter() - t0,
    )
    return tables


def _school_year_of(dates: pd.Series) -> pd.Series:
    """School year a date belongs to (a school year starts on 1 August)."""
    return (dates.dt.year - (dates.dt.month < 8)).astype(np.int64)


def county_rates(tables: RawTables) -> pd.DataFrame:
    """Yearly dropout rates by grade and the share of students in each hardship group.

    Returns one tidy frame with columns `measure`, `group`, `school_year`, `grade_level`,
    `count`, `total`, `rate`:

    * `measure == "dropout_rate"`: dropout events / students enrolled, per school year and
      grade (`group` = "grade_<g>"), per school year for primary (1-6), junior (7-9) and all
      grades (`grade_level` NA), and pooled over all years (`school_year` NA).
    * `measure == "share"`: share of students (rows of `students`) in each hardship flag,
      left-behind status, guardian, and migrant, boarding, minority and sex groups
      (`school_year`, `grade_level` NA).
    """
    enr = tables.enrolments[["student_id", "school_year", "grade_level"]]
    drop = tables.status_events.loc[
        tables.status_events["event"] == "dropout", ["student_id", "date"]
    ]
    drop = drop.assign(school_year=_school_year_of(drop["date"]))
    drop = drop.merge(enr, on=["student_id", "school_year"], how="left")
    events = drop.groupby(["school_year", "grade_level"]).size()
    enrolled = enr.groupby(["school_year", "grade_level"]).size()
    base = pd.DataFrame({"total": enrolled, "count": events}).fillna(0).reset_index()
    base["band"] = np.where(base["grade_level"] <= 6, "primary", "junior")

    rows: list[pd.DataFrame] = []
    per = base.assign(group="grade_" + base["grade_level"].astype("str"))
    rows.append(per)
    for band in ("primary", "junior", "all"):
        sub = base if band == "all" else base[base["band"] == band]
        yearly = sub.groupby("school_year")[["count", "total"]].sum().reset_index()
        rows.append(yearly.assign(group=band, grade_level=pd.NA))
        pooled = sub[["count", "total"]].sum().to_frame().T
        rows.append(pooled.assign(group=band, grade_level=pd.NA, school_year=pd.NA))
    pooled_grade = base.groupby("grade_level")[["count", "total"]].sum().reset_index()
    rows.append(
        pooled_grade.assign(
            group="grade_" + pooled_grade["grade_level"].astype("str"), school_year=pd.NA
        )
    )
    dropout = pd.concat(rows, ignore_index=True).assign(measure="dropout_rate")

    students = tables.students
    total = len(students)
    shares: dict[str, int] = {flag: int(students[flag].sum()) for flag in HARDSHIP_FLAGS}
    for status in LEFT_BEHIND[1:]:
        shares[f"left_behind={status}"] = int((students["left_behind"] == status).sum())
    for who in GUARDIANS[1:]:
        shares[f"guardian={who}"] = int((students["guardian"] == who).sum())
    for flag in ("migrant_child", "boarding", "ethnic_minority"):
        if flag in students:
            shares[flag] = int(students[flag].sum())
    shares["sex=M"] = int((students["sex"] == "M").sum())
    share = pd.DataFrame(
        {
            "measure": "share",
            "group": list(shares),
            "count": list(shares.values()),
            "total": total,
            "school_year": pd.NA,
            "grade_level": pd.NA,
        }
    )
    result = pd.concat([dropout, share], ignore_index=True)
    result = result[["measure", "group", "school_year", "grade_level", "count", "total"]]
    result["school_year"] = result["school_year"].astype("Int64")
    result["grade_level"] = result["grade_level"].astype("Int64")
    result["count"] = result["count"].astype(np.int64)
    result["total"] = result["total"].astype(np.int64)
    result["rate"] = result["count"] / result["total"].where(result["total"] > 0)
    return result.reset_index(drop=True)
