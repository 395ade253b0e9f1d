"""The feature catalog: complete, well-formed, and every template renders."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from features import academics, attendance, enrolment, family
from features.catalog import (
    CATALOG,
    CATALOG_VERSION,
    REASON_GROUPS,
    VALUE_FORMATS,
    catalog_for,
    extra_column,
    feature_columns,
    monotone_hints,
    reason_codes,
    render_reason,
    spec,
)

REQUIRED_NAMES = ("unexcused_run", "escalation_level", "unexcused_30d", "hardship_count")


def test_catalog_is_well_formed() -> None:
    names = [s.name for s in CATALOG]
    assert len(names) == len(set(names))
    assert isinstance(CATALOG_VERSION, str) and CATALOG_VERSION
    for s in CATALOG:
        assert s.group in REASON_GROUPS, s.name
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", s.reason_code), s.name
        assert s.dtype in ("int64", "float64"), s.name
        assert s.monotone in (-1, 0, 1), s.name
        assert s.value_format in VALUE_FORMATS, s.name
        assert s.description and s.template_zh and s.template_en, s.name


def test_names_other_code_depends_on_are_there() -> None:
    for name in (*REQUIRED_NAMES, "grade_level"):
        assert spec(name).name == name
    assert spec("escalation_level").group == "attendance"
    assert spec("hardship_count").group == "family_hardship"


def test_every_feature_module_column_has_an_entry() -> None:
    produced = (
        *attendance.FEATURES,
        *academics.FEATURES,
        *family.FEATURES,
        "years_over_age",
        "transition_year",
        "days_since_school_change",
        "new_at_school_this_year",
        "dropout_returns",
        "days_since_return",
        "dropouts_before",
        "suspensions",
        "transfers_in",
        "grade_level",
    )
    assert sorted(produced) == sorted(s.name for s in CATALOG)
    assert set(attendance.INT_FEATURES) == {
        s.name for s in CATALOG if s.name in attendance.FEATURES and s.dtype == "int64"
    }
    assert enrolment.TRANSITION_GRADES == (6, 7, 9)


def test_ethnic_minority_is_never_a_feature() -> None:
    assert all("ethnic" not in s.name for s in CATALOG)
    with pytest.raises(KeyError):
        spec("ethnic_minority")


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("value", [0, 1, 3, 0.25, -0.125, float("nan")])
def test_every_template_renders(lang: str, value: float) -> None:
    for s in CATALOG:
        text = render_reason(s.name, value, lang=lang)  # type: ignore[arg-type]
        assert text and "{" not in text and "}" not in text, s.name
        if s.value_format == "flag":  # a sentence without the number
            template = s.template_zh if lang == "zh" else s.template_en
            assert "{value}" not in template and text == template, s.name
        else:
            assert "{value}" in s.template_zh and "{value}" in s.template_en, s.name


def test_rendered_examples_a_teacher_would_read() -> None:
    assert render_reason("unexcused_30d", 6) == "近30个上学日旷课6天"
    assert render_reason("unexcused_30d", 6, lang="en") == (
        "6 unexcused absences in the last 30 school days"
    )
    assert render_reason("poverty_registered", 1) == "建档立卡贫困户家庭"
    assert render_reason("poverty_registered", 1, lang="en") == "registered-poverty household"
    assert render_reason("unexcused_rate_30d", 0.2) == "近30个上学日旷课率20%"
    assert render_reason("score_share_change", -0.125, lang="en") == (
        "score share changed by -12 percentage points since the previous exam"
    )
    assert render_reason("score_rank_pct", 0.05, lang="en").startswith("at the 5th percentile")
    assert render_reason("years_over_age", 2.26) == "比同年级学生超龄2.3岁"
    assert render_reason("grade_level", 8, lang="en") == "in grade 8"
    assert render_reason("unexcused_run", float("nan"), lang="en") == (
        "absent without leave for unknown school days in a row"
    )
    with pytest.raises(ValueError):
        render_reason("unexcused_run", 1, lang="fr")  # type: ignore[arg-type]


def test_monotone_hints_point_the_domain_way() -> None:
    hints = monotone_hints([s.name for s in CATALOG])
    assert hints["unexcused_30d"] == 1
    assert hints["escalation_level"] == 1
    assert hints["latest_score_share"] == -1
    assert hints["poverty_registered"] == 1
    assert hints["sex_female"] == 0
    assert reason_codes(["unexcused_run"]) == {"unexcused_run": "ABSENCE_STREAK"}


def test_extra_columns_get_generic_entries_in_name_order() -> None:
    assert extra_column("Distance to school (km)") == "extra_distance_to_school_km"
    extra = spec("extra_distance_to_school_km")
    assert (extra.group, extra.reason_code, extra.dtype) == (
        "other",
        "EXTRA_DISTANCE_TO_SCHOOL_KM",
        "float64",
    )
    assert render_reason(extra.name, 3.5, lang="en") == "distance_to_school_km: 3.5"
    snapshot = pd.DataFrame(
        columns=["student_id", "extra_b", "unexcused_30d", "extra_a", "grade_level", "as_of"]
    )
    assert feature_columns(snapshot) == ["unexcused_30d", "grade_level", "extra_a", "extra_b"]
    assert [s.name for s in catalog_for(snapshot)] == feature_columns(snapshot)


def test_unknown_names_raise() -> None:
    with pytest.raises(KeyError):
        spec("no_such_feature")
    with pytest.raises(KeyError):
        spec("extra_")
