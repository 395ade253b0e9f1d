"""The `baoxue` command line, run in process with real files and a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app
from serving.settings import get_settings
from tests.features.export_factory import write_valid_export

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Settings pointing at a fresh home folder."""
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_reads_like_a_manual():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in (
        "synth",
        "validate",
        "train",
        "evaluate",
        "retrain",
        "drift",
        "score",
        "serve",
        "users",
        "demo",
        "import",
        "export",
        "retention",
        "bench",
    ):
        assert command in result.output
    train_help = invoke("train", "--help").output
    assert "--train-until" in train_help and "champion" in train_help


def test_validate_a_valid_export_prints_the_summary(tmp_path):
    export = write_valid_export(tmp_path / "ok")
    result = invoke("validate", str(export))
    assert result.exit_code == 0, result.output
    assert "valid export" in result.output
    assert "Rows per table" in result.output
    assert "students" in result.output


def test_validate_a_bad_export_names_file_row_column_and_value(tmp_path):
    export = write_valid_export(tmp_path / "bad")
    attendance = pd.read_csv(export / "attendance.csv", dtype=str)
    attendance.loc[0, "status"] = "skipped"
    attendance.to_csv(export / "attendance.csv", index=False)
    (export / "grades.csv").unlink()
    result = invoke("validate", str(export))
    assert result.exit_code == 1
    out = result.output
    assert "attendance.csv" in out and "row 2" in out and "status" in out and "skipped" in out
    assert "grades" in out
    assert "Traceback" not in out


def test_validate_a_missing_folder_is_a_clear_error(tmp_path):
    result = invoke("validate", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "is not a folder" in result.output


def test_synth_is_deterministic_and_valid(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        invoke("synth", str(a), "--students", "300", "--years", "2", "--seed", "5").exit_code == 0
    )
    assert (
        invoke("synth", str(b), "--students", "300", "--years", "2", "--seed", "5").exit_code == 0
    )
    for name in ("students", "attendance", "status_events"):
        assert (a / f"{name}.csv").read_bytes() == (b / f"{name}.csv").read_bytes()
    assert invoke("validate", str(a)).exit_code == 0


def test_train_on_bad_input_writes_nothing(tmp_path, home):
    export = write_valid_export(tmp_path / "bad")
    (export / "students.csv").write_text("", encoding="utf-8")
    result = invoke("train", str(export))
    assert result.exit_code == 1
    assert "students.csv" in result.output
    assert not (home / "mlflow.db").exists()


def test_import_oulad_writes_a_valid_export(tmp_path):
    from tests.oulad import missing_reason, oulad_dir

    src = oulad_dir()
    if not src.is_dir():
        pytest.skip(missing_reason())
    out = tmp_path / "oulad"
    result = invoke("import", "oulad", str(src), str(out))
    assert result.exit_code == 0, result.output
    assert invoke("validate", str(out)).exit_code == 0


def test_train_then_evaluate_json(small_export, home):
    result = invoke("train", str(small_export), "--horizon", "90")
    assert result.exit_code == 0, result.output
    for name in ("lightgbm", "escalation_ladder", "hardship_count", "logistic"):
        assert name in result.output
    assert "registered version 1 as 'champion'" in result.output

    window = [line for line in result.output.splitlines() if line.startswith("test window")][0]
    date_from, date_to = window.split()[2], window.split()[4]
    result = invoke(
        "evaluate",
        str(small_export),
        "--model",
        "champion",
        "--from",
        date_from,
        "--to",
        date_to,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in (
        "auc",
        "pr_auc",
        "brier",
        "precision_at_k",
        "recall_at_k",
        "k",
        "n_students",
        "n_positive",
        "baselines",
        "per_as_of",
        "fairness",
    ):
        assert key in report
    assert set(report["baselines"]) == {"escalation_ladder", "hardship_count", "logistic"}
    assert 0.5 < report["auc"] <= 1


def _point_settings_at(monkeypatch, store, home: Path) -> None:
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(home))
    monkeypatch.setenv("BAOXUE_MLFLOW__TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("BAOXUE_MLFLOW__REGISTRY_URI", store.registry_uri)
    monkeypatch.setenv("BAOXUE_MLFLOW__MODEL_NAME", store.model_name)
    get_settings.cache_clear()


def test_score_writes_lists_and_users_add_reads_the_password(
    trained, small_export, tmp_path, monkeypatch
):
    _, store, _ = trained
    home = tmp_path / "svc"
    _point_settings_at(monkeypatch, store, home)
    try:
        result = invoke("score", str(small_export), "--as-of", "2026-03-16")
        assert result.exit_code == 0, result.output
        assert "scored" in result.output
        week = home / "lists" / "2026-03-16"
        assert any(week.glob("*.xlsx")) and any(week.glob("*.csv"))

        result = runner.invoke(
            app, ["users", "add", "chen.l", "--role", "county_admin"], input="a-long-password\n"
        )
        assert result.exit_code == 0, result.output
        assert "added chen.l (county_admin, all schools)" in result.output
        result = runner.invoke(app, ["users", "add", "li", "--role", "teacher"], input="pw\n")
        assert result.exit_code == 1
        assert "Traceback" not in result.output
    finally:
        get_settings.cache_clear()


def test_score_without_a_model_says_so(small_export, tmp_path, monkeypatch):
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(tmp_path / "empty"))
    get_settings.cache_clear()
    try:
        result = invoke("score", str(small_export), "--as-of", "2026-03-16")
        assert result.exit_code == 1
        assert "model" in result.output.lower() and "Traceback" not in result.output
        assert not (tmp_path / "empty" / "lists").exists()
    finally:
        get_settings.cache_clear()


@pytest.mark.slow
def test_demo_runs_end_to_end_without_serving(tmp_path, monkeypatch):
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(tmp_path / "demo"))
    get_settings.cache_clear()
    try:
        result = invoke("demo", "--students", "1500", "--no-serve")
        assert result.exit_code == 0, result.output
        assert "registered version 1 as 'champion'" in result.output
        assert "demo users" in result.output and "teacher" in result.output
        assert any((tmp_path / "demo" / "lists").rglob("*.xlsx"))
    finally:
        get_settings.cache_clear()


def test_train_on_too_little_history_explains_what_is_needed(tmp_path, home):
    export = tmp_path / "one-year"
    assert invoke("synth", str(export), "--students", "300", "--years", "1").exit_code == 0
    result = invoke("train", str(export))
    assert result.exit_code == 1
    assert "export more school years" in result.output
    assert "Traceback" not in result.output


def test_drift_flags_a_school_that_stops_recording_absences(tmp_path, home):
    export = tmp_path / "county"
    assert (
        invoke(
            "synth",
            str(export),
            "--students",
            "1500",
            "--years",
            "2",
            "--seed",
            "5",
            "--format",
            "parquet",
        ).exit_code
        == 0
    )
    attendance = pd.read_parquet(export / "attendance.parquet")
    enrolments = pd.read_parquet(export / "enrolments.parquet")
    school = enrolments["school_id"].value_counts().index[0]
    pupils = set(enrolments.loc[enrolments["school_id"] == school, "student_id"])
    dates = pd.to_datetime(attendance["date"])
    broken = attendance["student_id"].isin(pupils) & (dates >= "2025-05-26")
    attendance.loc[~broken].to_parquet(export / "attendance.parquet", index=False)

    result = invoke("drift", str(export), "--from", "2025-05-26", "--to", "2025-06-23")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and school in warnings[0]
    assert (home / "drift" / "2025-06-23" / "report.md").read_text(encoding="utf-8").count(school)


def test_users_passwd_deactivate_reactivate_set_role_and_list(tmp_path, monkeypatch):
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(tmp_path / "svc"))
    get_settings.cache_clear()
    try:
        for name, school in (("wang.f", "S1"), ("zhao.m", "S2")):
            result = runner.invoke(
                app,
                ["users", "add", name, "--role", "school_admin", "--school", school],
                input="a-long-password\n",
            )
            assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["users", "passwd", "wang.f"], input="another-long-one\n")
        assert result.exit_code == 0 and "changed the password of wang.f" in result.output
        result = runner.invoke(app, ["users", "passwd", "nobody"], input="another-long-one\n")
        assert result.exit_code == 1 and "Traceback" not in result.output
        result = runner.invoke(app, ["users", "passwd", "wang.f"], input="pw\n")
        assert result.exit_code == 1 and "Traceback" not in result.output

        assert runner.invoke(app, ["users", "deactivate", "zhao.m"]).exit_code == 0
        listed = runner.invoke(app, ["users", "list"]).output
        assert "wang.f" in listed and "zhao.m" not in listed
        everyone = runner.invoke(app, ["users", "list", "--all"]).output.splitlines()
        assert [line.split()[0] for line in everyone] == ["wang.f", "zhao.m"]
        assert everyone[1].endswith("inactive")
        only_s1 = runner.invoke(app, ["users", "list", "--school", "S1"]).output
        assert "wang.f" in only_s1 and "S2" not in only_s1

        assert runner.invoke(app, ["users", "deactivate", "zhao.m"]).exit_code == 1
        assert runner.invoke(app, ["users", "reactivate", "zhao.m"]).exit_code == 0
        assert "zhao.m" in runner.invoke(app, ["users", "list"]).output

        result = runner.invoke(
            app,
            [
                "users",
                "set-role",
                "zhao.m",
                "--role",
                "teacher",
                "--school",
                "S2",
                "--class",
                "C1",
                "--staff-role",
                "homeroom_teacher",
            ],
        )
        assert result.exit_code == 0 and "zhao.m is now teacher (S2)" in result.output
        listed = runner.invoke(app, ["users", "list", "--school", "S2"]).output.split()
        assert listed[:4] == ["zhao.m", "teacher", "S2", "C1"]
        result = runner.invoke(app, ["users", "set-role", "zhao.m", "--role", "teacher"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "zhao.m is now" not in result.output
    finally:
        get_settings.cache_clear()
