"""The researchers' loop end to end on a real synthetic county, with a real MLflow store."""

from datetime import date

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from training import track
from training.config import TrainingConfig
from training.pipeline import evaluate_registered, run_experiment


def test_training_registers_a_champion_with_metrics_and_plots(trained):
    result, store, _ = trained
    assert result.alias == "champion"
    assert result.version == "1"
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    for model in ("lightgbm", "escalation_ladder", "hardship_count", "logistic"):
        for key in ("auc", "pr_auc", "brier", "precision_at_k", "recall_at_k"):
            assert f"{key}.{model}" in metrics
    params = run.data.params
    assert params["data_fingerprint"] == result.fingerprint
    assert params["test_from"] == result.split.test_as_ofs[0].isoformat()
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {
        "plots/pr_curves.png",
        "plots/reliability.png",
        "plots/fairness.png",
        "plots/shap_summary.png",
    } <= artifacts
    top = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"evaluation.json", "fairness.csv", "feature_catalog.json"} <= top


def test_split_never_lets_a_label_window_reach_the_test_window(trained):
    result, _, config = trained
    split = result.split
    first_test = split.test_as_ofs[0]
    assert all(t + config.horizon <= split.calibration_as_ofs[0] for t in split.train_as_ofs)
    assert all(c + config.horizon <= first_test for c in split.calibration_as_ofs)


def test_lightgbm_beats_the_escalation_ladder(trained):
    result, _, _ = trained
    summary = result.evaluation.summary()
    # At a teacher's capacity (5 % of each school per week) the model finds more of the
    # pupils who drop out within 90 days than the written rule does.
    assert (
        summary.loc["lightgbm", "precision_at_k"]
        > summary.loc["escalation_ladder", "precision_at_k"]
    )
    assert summary.loc["lightgbm", "recall_at_k"] > summary.loc["escalation_ladder", "recall_at_k"]
    assert summary.loc["lightgbm", "auc"] > summary.loc["escalation_ladder", "auc"]
    assert summary.loc["lightgbm", "auc"] > summary.loc["hardship_count", "auc"]
    # The list teachers get (ladder alerts first, then the model) does at least as well
    # as the rule alone at capacity.
    served = summary.loc["ladder_then_lightgbm"]
    assert served["precision_at_k"] >= summary.loc["escalation_ladder", "precision_at_k"]


def test_a_model_that_does_not_win_becomes_challenger(small_county, tmp_path):
    from tests.conftest import make_store

    store = make_store(tmp_path)
    config = TrainingConfig(seed=3, gbm={"n_estimators": 30})
    first = run_experiment(small_county, config, store=store)
    assert first.alias == "champion"
    # A deliberately crippled model: one tiny tree cannot beat the champion.
    weak = TrainingConfig(seed=3, gbm={"n_estimators": 1, "num_leaves": 2}, early_stopping_rounds=5)
    second = run_experiment(small_county, weak, store=store)
    assert second.alias == "challenger", second.alias_reason
    assert "does not beat champion version 1" in second.alias_reason
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
    assert str(client.get_model_version_by_alias(store.model_name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(store.model_name, "challenger").version) == "2"


def test_evaluate_registered_reports_model_baselines_and_fairness(small_county, trained):
    result, store, config = trained
    test = result.split.test_as_ofs
    report = evaluate_registered(
        small_county, config, store=store, ref="champion", date_from=test[0], date_to=test[-1]
    )
    for key in (
        "auc",
        "pr_auc",
        "brier",
        "precision_at_k",
        "recall_at_k",
        "k",
        "n_students",
        "n_positive",
        "per_as_of",
        "fairness",
        "baselines",
    ):
        assert key in report
    assert set(report["baselines"]) == {"escalation_ladder", "hardship_count", "logistic"}
    assert len(report["per_as_of"]) == len(test)
    # The same model on the same window gives the training run's test metrics.
    assert report["precision_at_k"] == pytest.approx(
        result.evaluation["lightgbm"].summary["precision_at_k"]
    )


def test_evaluate_refuses_a_window_without_observable_outcomes(small_county, trained):
    _, store, config = trained
    with pytest.raises(ValueError, match="observable"):
        evaluate_registered(
            small_county,
            config,
            store=store,
            ref="champion",
            date_from=date(2026, 6, 1),
            date_to=date(2026, 7, 1),
        )


def test_unknown_alias_is_a_clear_error(trained):
    _, store, _ = trained
    track.connect(store)
    with pytest.raises(LookupError, match="no model version"):
        track.load_risk_model(store.model_name, "nonexistent")
    mlflow.set_tracking_uri(store.tracking_uri)


def test_no_pupil_name_reaches_the_mlflow_store(small_county, trained):
    """The county has every pupil named; the store (its database, every artifact of the
    run and of the model, the input example included) holds none of the names."""
    import json
    import re
    from pathlib import Path
    from urllib.parse import urlparse

    _, store, _ = trained
    names = set(small_county.students["name"].dropna())
    assert len(names) > 1_000
    artifacts = Path(urlparse(store.artifact_location).path)
    files = [Path(store.tracking_uri.removeprefix("sqlite:///"))]
    files += [p for p in artifacts.rglob("*") if p.is_file()]
    assert len(files) > 10
    [example] = [p for p in files if p.name == "input_example.json"]
    columns = json.loads(example.read_text())["columns"]
    assert "student_id" in columns and not {"name", "class_name"} & set(columns)
    # names are two or three Chinese characters; look for the three-character ones (two
    # can be a plain word) in every run of Chinese text of every file
    runs = re.compile(r"[\u4e00-\u9fff]{3,}")
    long_names = {n for n in names if len(n) >= 3}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for run in runs.findall(text):
            hits = {run[i : i + 3] for i in range(len(run) - 2)} & long_names
            assert not hits, (path.name, sorted(hits)[:3])
