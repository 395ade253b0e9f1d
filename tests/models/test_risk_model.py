"""The packaged risk model: saved to the registry, loaded in a new process, same scores."""

import json
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.snapshot import build_snapshot
from models.contract import ContractMismatch
from training import track


@pytest.fixture(scope="module")
def snapshot(small_county):
    return build_snapshot(small_county, as_of=date(2026, 3, 16))


@pytest.fixture(scope="module")
def champion(trained):
    _, store, _ = trained
    track.connect(store)
    model, version = track.load_risk_model(store.model_name, "champion")
    return model, version, store


def test_scores_are_calibrated_probabilities_ranked_with_reasons(champion, snapshot):
    model, _, _ = champion
    scored = model.score(snapshot)
    assert len(scored) == len(snapshot)
    assert scored["risk_score"].between(0, 1).all()
    assert sorted(scored["rank"]) == list(range(1, len(scored) + 1))
    top = scored.sort_values("rank").iloc[0]
    assert top["risk_score"] == scored["risk_score"].max()
    assert isinstance(top["reason_1_code"], str)
    codes = set(scored["reason_1_code"].dropna())
    assert codes <= set(model.contract.reason_codes.values())


def test_contributions_add_up_to_the_margin(champion, snapshot):
    model, _, _ = champion
    contrib, _ = model.explain(snapshot)
    np.testing.assert_allclose(contrib.sum(axis=1), model.margin(snapshot), atol=1e-8)


def test_pyfunc_predict_equals_in_process_scores(champion, snapshot):
    import mlflow

    model, version, store = champion
    pyfunc = mlflow.pyfunc.load_model(track.model_uri(store.model_name, version))
    out = pyfunc.predict(snapshot)
    np.testing.assert_allclose(out["risk_score"], model.score(snapshot)["risk_score"])


def test_loaded_in_a_new_process_gives_the_same_scores(champion, snapshot, tmp_path):
    model, version, store = champion
    snap_path = tmp_path / "snapshot.parquet"
    snapshot.to_parquet(snap_path)
    code = (
        "import sys, json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({store.tracking_uri!r}); "
        f"mlflow.set_registry_uri({store.registry_uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{store.model_name}@champion')\n"
        f"out = m.predict(pd.read_parquet({str(snap_path)!r}))\n"
        "print(json.dumps(out['risk_score'].tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    other = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(other, model.score(snapshot)["risk_score"], rtol=0, atol=1e-12)


def test_refuses_a_snapshot_without_its_features(champion, snapshot):
    model, _, _ = champion
    broken = snapshot.drop(columns=["unexcused_30d", "hardship_count"])
    with pytest.raises(ContractMismatch, match="unexcused_30d"):
        model.score(broken)


def test_ethnic_minority_is_not_a_model_input(champion):
    model, _, _ = champion
    assert not any("ethnic" in name for name in model.contract.feature_names)


def test_save_parts_round_trip(champion, snapshot, tmp_path):
    from models.risk_model import RiskModel

    model, _, _ = champion
    model.save_parts(tmp_path / "cache")
    again = RiskModel.from_dir(tmp_path / "cache")
    pd.testing.assert_series_equal(
        again.score(snapshot)["risk_score"], model.score(snapshot)["risk_score"]
    )
