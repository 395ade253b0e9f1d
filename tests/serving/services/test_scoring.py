"""Scoring with the real champion: reasons add up, render with the student's value, map to
an action; pushed records score as the batch does."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.catalog import format_value, render_reason, spec
from features.snapshot import build_snapshot
from models.contract import ContractMismatch
from models.reasons import ACTIONS, action_for, reason_values
from serving.registry import LoadedModel, load_champion
from serving.services.scoring import (
    ScoredStudent,
    StudentNotFound,
    score_records,
    score_snapshot,
)

AS_OF = dt.date(2025, 11, 17)


@pytest.fixture(scope="module")
def loaded(trained, tmp_path_factory) -> LoadedModel:
    _, store, _ = trained
    return load_champion(store, tmp_path_factory.mktemp("cache") / "model")


@pytest.fixture(scope="module")
def snapshot(small_county) -> pd.DataFrame:
    return build_snapshot(small_county, as_of=AS_OF)


@pytest.fixture(scope="module")
def scored(loaded, snapshot) -> list[ScoredStudent]:
    return score_snapshot(loaded, snapshot, explain=True)


def test_one_score_per_student_equal_to_the_model(loaded, snapshot, scored) -> None:
    assert [s.student_id for s in scored] == snapshot["student_id"].tolist()
    assert np.allclose([s.risk_score for s in scored], loaded.model.risk_scores(snapshot))
    assert np.allclose([s.margin for s in scored], loaded.model.margin(snapshot))
    assert {s.as_of for s in scored} == {AS_OF}
    assert {s.model_version for s in scored} == {loaded.version}
    assert [s.grade_level for s in scored] == snapshot["grade_level"].tolist()


def test_group_contributions_and_base_value_add_up_to_the_margin(scored) -> None:
    for s in scored:
        assert s.explained
        assert s.base_value + sum(s.contributions.values()) == pytest.approx(s.margin, abs=1e-6)
    assert len({round(s.base_value, 9) for s in scored}) == 1


def test_reasons_are_the_strongest_groups_and_raise_the_risk(scored) -> None:
    for s in scored:
        contributions = [r.contribution for r in s.reasons]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
        for r in s.reasons:
            assert r.contribution == pytest.approx(s.contributions[r.group])


def test_every_reason_renders_the_students_own_value_and_maps_to_an_action(
    snapshot, scored
) -> None:
    rows = snapshot.set_index("student_id")
    with_reasons = [s for s in scored if s.reasons]
    assert len(with_reasons) > len(scored) // 2
    for s in with_reasons:
        for r in s.reasons:
            own = float(rows.at[s.student_id, r.feature])
            assert r.value == pytest.approx(own)
            assert r.text_zh == render_reason(r.feature, own, "zh")
            assert r.text_en == render_reason(r.feature, own, "en")
            fmt = spec(r.feature).value_format
            if fmt != "flag":
                assert format_value(own, fmt, lang="zh") in r.text_zh
            action = action_for(
                r, grade_level=s.grade_level, values=reason_values(s.reasons), codes=set()
            )
            assert action in ACTIONS.values() or action.code == "SUBSIDY_AND_TUTORING"
        assert 1 <= len(s.actions) <= 3
        assert len({a.code for a in s.actions}) == len(s.actions)


def test_ladder_alert_for_every_absence_run_even_unexplained(loaded, snapshot) -> None:
    unexplained = score_snapshot(loaded, snapshot, explain=False)
    assert not any(s.reasons or s.actions or s.contributions for s in unexplained)
    levels = snapshot["escalation_level"].to_numpy()
    assert (levels > 0).any()
    for s, level, run in zip(unexplained, levels, snapshot["unexcused_run"], strict=True):
        if level == 0:
            assert s.ladder is None
        else:
            assert s.ladder is not None
            assert (s.ladder.level, s.ladder.unexcused_run) == (level, run)


def test_explains_only_the_students_asked_for(loaded, snapshot, scored) -> None:
    wanted = set(snapshot["student_id"].iloc[[0, 5, 9]])
    some = score_snapshot(loaded, snapshot, explain=wanted)
    assert {s.student_id for s in some if s.explained} == wanted
    full = {s.student_id: s for s in scored}
    for s in some:
        assert s.risk_score == full[s.student_id].risk_score
        assert s.base_value == pytest.approx(full[s.student_id].base_value)
        if s.student_id in wanted:
            assert s == full[s.student_id]


def test_pushed_records_score_as_the_batch_does(loaded, small_county, scored) -> None:
    riskiest = sorted(scored, key=lambda s: -s.risk_score)[:2]
    ids = [riskiest[1].student_id, riskiest[0].student_id]
    out = score_records(loaded, small_county, as_of=AS_OF, student_ids=ids)
    assert [s.student_id for s in out] == ids
    batch = {s.student_id: s for s in scored}
    for s in out:
        assert s == batch[s.student_id]
        assert dataclasses.asdict(s) == dataclasses.asdict(batch[s.student_id])


def test_an_id_not_enrolled_is_student_not_found(loaded, small_county, snapshot) -> None:
    known = str(snapshot["student_id"].iloc[0])
    with pytest.raises(StudentNotFound) as info:
        score_records(loaded, small_county, as_of=AS_OF, student_ids=[known, "NOPE-1"])
    assert info.value.code == "student_not_found"
    assert info.value.student_ids == ("NOPE-1",)
    assert "NOPE-1" not in info.value.message  # messages name no student


def test_a_snapshot_without_a_feature_names_it(loaded, snapshot) -> None:
    with pytest.raises(ContractMismatch, match="unexcused_30d"):
        score_snapshot(loaded, snapshot.drop(columns=["unexcused_30d"]))
