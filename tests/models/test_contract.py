import pandas as pd
import pytest

from models.contract import ContractMismatch, FeatureContract


def contract() -> FeatureContract:
    return FeatureContract(
        feature_names=("unexcused_30d", "hardship_count"),
        groups={"unexcused_30d": "attendance", "hardship_count": "family_hardship"},
        reason_codes={"unexcused_30d": "ABSENCE_RECENT", "hardship_count": "HARDSHIP"},
        catalog_version="1.0",
        horizon_days=90,
    )


def test_matrix_orders_columns_as_trained():
    snap = pd.DataFrame({"hardship_count": [1, 0], "unexcused_30d": [3, 0], "extra": [9, 9]})
    X = contract().matrix(snap)
    assert list(X.columns) == ["unexcused_30d", "hardship_count"]
    assert X.dtypes.eq("float64").all()


def test_mismatch_names_missing_and_changed_features():
    snap = pd.DataFrame({"hardship_count": ["two", "one"]})
    with pytest.raises(ContractMismatch) as err:
        contract().check(snap)
    message = str(err.value)
    assert "missing features: unexcused_30d" in message
    assert "hardship_count" in message and "non-numeric" in message
    assert err.value.missing == ["unexcused_30d"]


def test_catalog_version_mismatch_is_named():
    snap = pd.DataFrame({"hardship_count": [1], "unexcused_30d": [0]})
    with pytest.raises(ContractMismatch, match="catalog version 2.0 differs"):
        contract().check(snap, catalog_version="2.0")


def test_json_round_trip():
    c = contract()
    assert FeatureContract.from_json(c.to_json()) == c
