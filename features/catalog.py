"""The feature catalog: one entry per snapshot feature column.

Each `FeatureSpec` names the feature's reason group (how a teacher reads it), a stable
upper-case ``reason_code`` (what `models.explain` reports and `models.reasons` maps to
wording and actions), its dtype, a monotone hint for LightGBM (+1 means a higher value
never lowers the risk, -1 the opposite, 0 no constraint; set only where the domain makes
the direction obvious) and two sentence templates with ``{value}`` for the student's own
value. `render_reason` fills them in.

Changing a feature's meaning, name or dtype changes `CATALOG_VERSION`; a fitted model
records the version it was trained with (`models.contract`).

``ethnic_minority`` is for fairness audits only: it is not in the catalog and never a
snapshot column. Neither are a pupil's ``name`` (personal data, shown to the pupil's
teachers only) and the ``class_name`` (a label for people, the same for a whole class).

Columns ``extra_<attribute>`` come from the optional `student_attributes` table and get a
generic entry (group ``"other"``, reason code ``EXTRA_<ATTRIBUTE>``) from `spec`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

CATALOG_VERSION = "1.0"

REASON_GROUPS = (
    "attendance",
    "grades",
    "family_hardship",
    "left_behind_guardian",
    "transition_age",
    "history",
    "other",
)
VALUE_FORMATS = ("count", "percent", "points", "percentile", "years", "number", "flag")
EXTRA_PREFIX = "extra_"
NEVER_FEATURES = ("ethnic_minority", "name", "class_name")

Lang = Literal["zh", "en"]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column of the snapshot.

    Attributes
    ----------
    name : column name in the snapshot
    group : one of `REASON_GROUPS`
    reason_code : stable upper-case code behind explanations
    dtype : ``"int64"`` or ``"float64"`` (float features may be NaN: unknown)
    description : what the value is, for people reading the catalog
    template_zh, template_en : the reason as a sentence, ``{value}`` for the value
    monotone : +1 / -1 / 0, the direction in which a higher value moves the risk
    value_format : how `render_reason` writes the value: ``count`` (integer),
        ``percent`` (share as %), ``points`` (signed percentage points),
        ``percentile`` (0-100), ``years`` (one decimal), ``number``, ``flag`` (no value)
    """

    name: str
    group: str
    reason_code: str
    dtype: str
    description: str
    template_zh: str
    template_en: str
    monotone: int = 0
    value_format: str = "count"


def _f(
    name: str,
    group: str,
    code: str,
    dtype: str,
    monotone: int,
    fmt: str,
    description: str,
    zh: str,
    en: str,
) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        group=group,
        reason_code=code,
        dtype=dtype,
        description=description,
        template_zh=zh,
        template_en=en,
        monotone=monotone,
        value_format=fmt,
    )


def _attendance() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    for n in (7, 14, 30, 90):
        specs += [
            _f(
                f"unexcused_{n}d",
                "attendance",
                "ABSENCE_RECENT",
                "int64",
                1,
                "count",
                f"Unexcused absences in the student's last {n} school days before as_of.",
                f"近{n}个上学日旷课{{value}}天",
                f"{{value}} unexcused absences in the last {n} school days",
            ),
            _f(
                f"unexcused_rate_{n}d",
                "attendance",
                "ABSENCE_RECENT",
                "float64",
                1,
                "percent",
                f"Unexcused absences per school day enrolled and active in the last {n}.",
                f"近{n}个上学日旷课率{{value}}",
                f"absent without leave on {{value}} of the last {n} school days",
            ),
            _f(
                f"leave_{n}d",
                "attendance",
                "LEAVE_RECENT",
                "int64",
                0,
                "count",
                f"Sick or personal leave days in the student's last {n} school days.",
                f"近{n}个上学日请假{{value}}天",
                f"{{value}} days of sick or personal leave in the last {n} school days",
            ),
            _f(
                f"leave_rate_{n}d",
                "attendance",
                "LEAVE_RECENT",
                "float64",
                0,
                "percent",
                f"Leave days per school day enrolled and active in the last {n}.",
                f"近{n}个上学日请假率{{value}}",
                f"on leave {{value}} of the last {n} school days",
            ),
        ]
    specs += [
        _f(
            "late_30d",
            "attendance",
            "LATE_RECENT",
            "int64",
            0,
            "count",
            "Late arrivals in the last 30 school days.",
            "近30个上学日迟到{value}次",
            "late {value} times in the last 30 school days",
        ),
        _f(
            "unexcused_run",
            "attendance",
            "ABSENCE_STREAK",
            "int64",
            1,
            "count",
            "Consecutive unexcused absences ending on the student's last school day before"
            " as_of, in school days (weekends and holidays do not break a run).",
            "已连续旷课{value}个上学日",
            "absent without leave for {value} school days in a row",
        ),
        _f(
            "escalation_level",
            "attendance",
            "ABSENCE_STREAK",
            "int64",
            1,
            "count",
            "min(unexcused_run, 3): the written ladder (1 day: contact the family;"
            " 2: home visit; 3 or more: suspected dropout).",
            "按控辍保学流程已到第{value}级（1天联系家长，2天家访，3天及以上疑似辍学）",
            "level {value} on the absence ladder (1 day: contact the family,"
            " 2: home visit, 3+: suspected dropout)",
        ),
        _f(
            "unexcused_longest_run_term",
            "attendance",
            "ABSENCE_STREAK",
            "int64",
            1,
            "count",
            "Longest run of consecutive unexcused absences in the current term so far.",
            "本学期最长连续旷课{value}个上学日",
            "longest run this term: {value} school days absent without leave",
        ),
        _f(
            "unexcused_trend_30d",
            "attendance",
            "ABSENCE_TREND",
            "float64",
            1,
            "points",
            "Unexcused rate in the last 30 school days minus the rate in the 30 before"
            " (NaN until the student has 31 school days).",
            "近30个上学日旷课率比之前30个上学日变化{value}个百分点",
            "unexcused-absence rate changed by {value} percentage points against"
            " the 30 school days before",
        ),
        _f(
            "unexcused_rate_term",
            "attendance",
            "ABSENCE_TERM",
            "float64",
            1,
            "percent",
            "Unexcused absences per school day in the current term so far.",
            "本学期至今旷课率{value}",
            "absent without leave on {value} of this term's school days",
        ),
        _f(
            "unexcused_rate_term_change",
            "attendance",
            "ABSENCE_TERM_CHANGE",
            "float64",
            1,
            "points",
            "Unexcused rate in the term so far minus the rate over the same number of school"
            " days from the start of the previous term (NaN without a previous term).",
            "本学期旷课率比上学期同期变化{value}个百分点",
            "unexcused-absence rate changed by {value} percentage points against the same"
            " point last term",
        ),
        _f(
            "missed_after_spring_start",
            "attendance",
            "TERM_START_ABSENCE",
            "float64",
            1,
            "count",
            "Days missed (unexcused or leave) in the first 10 school days of the most recent"
            " spring term (after the Spring Festival break); NaN if none yet.",
            "春节后开学前两周缺勤{value}天",
            "missed {value} of the first 10 school days after the Spring Festival break",
        ),
        _f(
            "missed_after_september_start",
            "attendance",
            "TERM_START_ABSENCE",
            "float64",
            1,
            "count",
            "Days missed (unexcused or leave) in the first 10 school days of the most recent"
            " September term start; NaN if none yet.",
            "秋季开学前两周缺勤{value}天",
            "missed {value} of the first 10 school days after the September start",
        ),
    ]
    return specs


def _grades() -> list[FeatureSpec]:
    return [
        _f(
            "latest_score_share",
            "grades",
            "GRADES_LOW",
            "float64",
            -1,
            "percent",
            "Mean score/max_score over the subjects of the latest exam known before as_of.",
            "最近一次考试平均得分率{value}",
            "scored {value} of full marks on average in the latest exam",
        ),
        _f(
            "score_share_change",
            "grades",
            "GRADES_FALLING",
            "float64",
            -1,
            "points",
            "Latest exam's score share minus the previous exam's.",
            "得分率比上一次考试变化{value}个百分点",
            "score share changed by {value} percentage points since the previous exam",
        ),
        _f(
            "subjects_failed_latest",
            "grades",
            "SUBJECTS_FAILED",
            "float64",
            1,
            "count",
            "Subjects below 60% of full marks in the latest exam.",
            "最近一次考试{value}科不及格",
            "failed {value} subjects in the latest exam",
        ),
        _f(
            "score_rank_pct",
            "grades",
            "GRADES_RANK_LOW",
            "float64",
            -1,
            "percentile",
            "Percent rank of the latest exam's score share among the same school's students"
            " of the same grade level in the same exam (0 lowest, 1 highest).",
            "最近一次考试在本校同年级处于第{value}百分位（0为最低）",
            "at the {value}th percentile of the grade at this school in the latest exam"
            " (0 = lowest)",
        ),
        _f(
            "year_mean_score_share",
            "grades",
            "GRADES_LOW",
            "float64",
            -1,
            "percent",
            "Mean score share of the exams known in the 365 days before as_of.",
            "近一年考试平均得分率{value}",
            "scored {value} of full marks on average over the last year",
        ),
        _f(
            "exams_missed_term",
            "grades",
            "EXAMS_MISSED",
            "int64",
            1,
            "count",
            "Missed subject papers (缺考) known before as_of in the current term.",
            "本学期缺考{value}科次",
            "missed {value} exam papers this term",
        ),
        _f(
            "exams_missed_prev_term",
            "grades",
            "EXAMS_MISSED",
            "int64",
            1,
            "count",
            "Missed subject papers (缺考) in the previous term.",
            "上学期缺考{value}科次",
            "missed {value} exam papers last term",
        ),
    ]


def _family() -> list[FeatureSpec]:
    flag = "flag"
    return [
        _f(
            "poverty_registered",
            "family_hardship",
            "POVERTY",
            "int64",
            1,
            flag,
            "Registered-poverty or poverty-monitoring household (建档立卡).",
            "建档立卡贫困户家庭",
            "registered-poverty household",
        ),
        _f(
            "dibao",
            "family_hardship",
            "DIBAO",
            "int64",
            1,
            flag,
            "Minimum-subsistence household (低保).",
            "低保户家庭",
            "minimum-subsistence (dibao) household",
        ),
        _f(
            "tekun",
            "family_hardship",
            "TEKUN",
            "int64",
            1,
            flag,
            "Especially-poor supported person (特困).",
            "特困供养人员",
            "especially-poor supported person (tekun)",
        ),
        _f(
            "disability",
            "family_hardship",
            "DISABILITY",
            "int64",
            1,
            flag,
            "Child with a disability, including home-taught pupils (送教上门).",
            "残疾儿童",
            "child with a disability",
        ),
        _f(
            "orphan",
            "family_hardship",
            "ORPHAN",
            "int64",
            1,
            flag,
            "Orphan or de facto without a carer (孤儿 / 事实无人抚养).",
            "孤儿或事实无人抚养儿童",
            "orphan or child without a de facto carer",
        ),
        _f(
            "single_parent",
            "family_hardship",
            "SINGLE_PARENT",
            "int64",
            1,
            flag,
            "Single-parent family (单亲).",
            "单亲家庭",
            "single-parent family",
        ),
        _f(
            "hardship_count",
            "family_hardship",
            "HARDSHIP_MULTIPLE",
            "int64",
            1,
            "count",
            "Number of the six hardship flags that are set.",
            "家庭困难情形{value}项",
            "{value} kinds of family hardship",
        ),
        _f(
            "left_behind_one_parent_away",
            "left_behind_guardian",
            "LEFT_BEHIND_ONE",
            "int64",
            1,
            flag,
            "Left-behind child, one parent working away (留守).",
            "留守儿童（父母一方外出务工）",
            "left-behind child (one parent working away)",
        ),
        _f(
            "left_behind_both_parents_away",
            "left_behind_guardian",
            "LEFT_BEHIND_BOTH",
            "int64",
            1,
            flag,
            "Left-behind child, both parents working away (留守).",
            "留守儿童（父母均外出务工）",
            "left-behind child (both parents working away)",
        ),
        _f(
            "guardian_grandparents",
            "left_behind_guardian",
            "GUARDIAN_GRANDPARENTS",
            "int64",
            1,
            flag,
            "Lives with grandparents.",
            "由祖辈隔代监护",
            "raised by grandparents",
        ),
        _f(
            "guardian_relatives",
            "left_behind_guardian",
            "GUARDIAN_RELATIVES",
            "int64",
            1,
            flag,
            "Lives with relatives other than parents or grandparents.",
            "由其他亲属监护",
            "lives with relatives",
        ),
        _f(
            "guardian_other",
            "left_behind_guardian",
            "GUARDIAN_OTHER",
            "int64",
            1,
            flag,
            "Lives with a carer who is not a relative.",
            "由非亲属监护",
            "lives with a carer who is not a relative",
        ),
        _f(
            "boarding",
            "left_behind_guardian",
            "BOARDING",
            "int64",
            0,
            flag,
            "Boarding student (寄宿生).",
            "寄宿生",
            "boarding student",
        ),
        _f(
            "migrant_child",
            "left_behind_guardian",
            "MIGRANT_CHILD",
            "int64",
            0,
            flag,
            "Migrant child living away from the household-registration place (随迁子女).",
            "随迁子女",
            "migrant child living away from the registered home",
        ),
    ]


def _transition() -> list[FeatureSpec]:
    return [
        _f(
            "grade_level",
            "transition_age",
            "GRADE_LEVEL",
            "int64",
            0,
            "number",
            "Grade level 1-9 of the enrolment row in force on as_of.",
            "{value}年级",
            "in grade {value}",
        ),
        _f(
            "years_over_age",
            "transition_age",
            "OVER_AGE",
            "float64",
            1,
            "years",
            "Age on as_of (days/365.25) minus (grade_level + 5.5), clipped at 0: school"
            " starts at 6, and a pupil is about half a year older in mid-year.",
            "比同年级学生超龄{value}岁",
            "{value} years older than usual for the grade",
        ),
        _f(
            "transition_year",
            "transition_age",
            "TRANSITION_YEAR",
            "int64",
            1,
            "flag",
            "In grade 6, 7 or 9 (primary to junior, graduation year).",
            "处于升学或毕业过渡年级（六、七、九年级）",
            "in a transition year (grade 6, 7 or 9)",
        ),
        _f(
            "days_since_school_change",
            "transition_age",
            "SCHOOL_CHANGE",
            "float64",
            0,
            "count",
            "Days since the student came to the current school (start of the run of"
            " enrolment rows there, or the last transfer in); a lower bound when the"
            " export starts with the student already there.",
            "到本校{value}天",
            "{value} days since coming to this school",
        ),
        _f(
            "new_at_school_this_year",
            "transition_age",
            "NEW_AT_SCHOOL",
            "float64",
            1,
            "flag",
            "1 when the student came to this school this school year, 0 when they were here"
            " the year before, NaN when the export cannot tell.",
            "本学年新到本校",
            "new at this school this school year",
        ),
    ]


def _history() -> list[FeatureSpec]:
    return [
        _f(
            "dropout_returns",
            "history",
            "RETURNED_DROPOUT",
            "int64",
            1,
            "count",
            "Return events (劝返复学) before as_of: a 辍返生 when above 0.",
            "曾辍学后劝返复学{value}次（辍返生）",
            "came back after dropping out {value} times",
        ),
        _f(
            "days_since_return",
            "history",
            "RETURNED_DROPOUT",
            "float64",
            0,
            "count",
            "Days since the last return event before as_of; NaN if none.",
            "劝返复学{value}天",
            "{value} days since returning after dropping out",
        ),
        _f(
            "dropouts_before",
            "history",
            "PAST_DROPOUT",
            "int64",
            1,
            "count",
            "Dropout events before as_of.",
            "曾辍学{value}次",
            "dropped out {value} times before",
        ),
        _f(
            "suspensions",
            "history",
            "SUSPENDED_BEFORE",
            "int64",
            1,
            "count",
            "Suspension (休学) events before as_of.",
            "曾休学{value}次",
            "suspended schooling {value} times before",
        ),
        _f(
            "transfers_in",
            "history",
            "TRANSFERRED_IN",
            "int64",
            0,
            "count",
            "Transfer-in events before as_of.",
            "转学转入{value}次",
            "transferred in {value} times",
        ),
    ]


def _other() -> list[FeatureSpec]:
    return [
        _f(
            "active_days_90d",
            "other",
            "SHORT_HISTORY",
            "int64",
            0,
            "count",
            "The student's school days (enrolled and active) among the last 90, the"
            " denominator of the attendance rates.",
            "近期在校在籍记录仅{value}个上学日",
            "only {value} school days on record recently",
        ),
        _f(
            "sex_female",
            "other",
            "SEX",
            "int64",
            0,
            "flag",
            "1 for a girl.",
            "女生",
            "girl",
        ),
    ]


CATALOG: tuple[FeatureSpec, ...] = (
    *_attendance(),
    *_grades(),
    *_family(),
    *_transition(),
    *_history(),
    *_other(),
)
_BY_NAME = {s.name: s for s in CATALOG}


def extra_column(attribute: str) -> str:
    """Snapshot column for a `student_attributes` attribute: ``extra_`` + a safe name."""
    safe = re.sub(r"[^0-9a-zA-Z]+", "_", str(attribute)).strip("_").lower() or "attribute"
    return f"{EXTRA_PREFIX}{safe}"


def _extra_spec(name: str) -> FeatureSpec:
    attribute = name[len(EXTRA_PREFIX) :]
    return _f(
        name,
        "other",
        f"EXTRA_{attribute.upper()}",
        "float64",
        0,
        "number",
        f"Attribute {attribute!r} from the export's student_attributes table.",
        f"{attribute}：{{value}}",
        f"{attribute}: {{value}}",
    )


def spec(name: str) -> FeatureSpec:
    """The catalog entry of a feature column (``extra_*`` columns get a generic entry)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith(EXTRA_PREFIX) and len(name) > len(EXTRA_PREFIX):
        return _extra_spec(name)
    raise KeyError(f"{name!r} is not a feature of catalog {CATALOG_VERSION}")


def feature_columns(snapshot: pd.DataFrame) -> list[str]:
    """The snapshot's feature columns: catalog order, then ``extra_*`` columns by name."""
    present = set(snapshot.columns)
    names = [s.name for s in CATALOG if s.name in present]
    extras = sorted(c for c in snapshot.columns if str(c).startswith(EXTRA_PREFIX))
    return names + extras


def catalog_for(snapshot: pd.DataFrame) -> list[FeatureSpec]:
    """The specs of the feature columns present in `snapshot`, in `feature_columns` order."""
    return [spec(name) for name in feature_columns(snapshot)]


def groups(names: Sequence[str]) -> dict[str, str]:
    """feature -> reason group, for `models.explain`."""
    return {n: spec(n).group for n in names}


def reason_codes(names: Sequence[str]) -> dict[str, str]:
    """feature -> reason_code."""
    return {n: spec(n).reason_code for n in names}


def monotone_hints(names: Sequence[str]) -> dict[str, int]:
    """feature -> +1/-1/0 monotone hint, for `models.gbm`."""
    return {n: spec(n).monotone for n in names}


def format_value(value: float | int | None, value_format: str, *, lang: Lang = "zh") -> str:
    """The value as it appears in a reason sentence."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "未知" if lang == "zh" else "unknown"
    v = float(value)
    if value_format == "percent":
        return f"{v * 100:.0f}%"
    if value_format == "points":
        return f"{v * 100:+.0f}"
    if value_format == "percentile":
        return f"{v * 100:.0f}"
    if value_format == "years":
        return f"{v:.1f}"
    if value_format in ("count", "flag"):
        return f"{v:.0f}"
    return f"{v:g}"


def render_reason(name: str, value: float | int | None, lang: Lang = "zh") -> str:
    """The feature's reason sentence with the student's value filled in.

    >>> render_reason("unexcused_30d", 6)
    '近30个上学日旷课6天'
    >>> render_reason("unexcused_30d", 6, lang="en")
    '6 unexcused absences in the last 30 school days'
    >>> render_reason("poverty_registered", 1, lang="en")
    'registered-poverty household'
    """
    if lang not in ("zh", "en"):
        raise ValueError(f"lang must be 'zh' or 'en', not {lang!r}")
    s = spec(name)
    template = s.template_zh if lang == "zh" else s.template_en
    return template.format(value=format_value(value, s.value_format, lang=lang))
