"""Training on a 2-worker Dask cluster: the same labelled rows, a comparable model.

`lightgbm.dask` does not give bit-identical trees (each worker bins and builds histograms
on its own rows; see `training/distributed.py`), so the model is compared by what it is
for: ranking pupils on the same rows. The labelled rows themselves must be identical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from features.catalog import feature_columns
from models.gbm import make_classifier
from tests.dask_county import PartitionedCounty, local_client, partitioned_county
from training.distributed import fit_lightgbm_dask, labelled_snapshots_dask
from training.matrices import labelled_snapshots, observed_until

AS_OFS = [dt.date(2023, 10, 9) + dt.timedelta(days=56 * i) for i in range(6)]
HORIZON = dt.timedelta(days=180)
OVERRIDES = {"n_estimators": 40, "min_child_samples": 20}


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionedCounty]:
    with local_client():  # threads: splitting and labelling need no process of their own
        yield partitioned_county(tmp_path_factory.mktemp("dask-county"), fmt="csv")


@pytest.fixture(scope="module")
def expected(county: PartitionedCounty) -> pd.DataFrame:
    frame = labelled_snapshots(county.tables, as_ofs=AS_OFS, horizon=HORIZON)
    return frame.sort_values(["as_of", "student_id"]).reset_index(drop=True)


def test_dask_labelled_rows_equal_the_in_memory_rows(
    county: PartitionedCounty, expected: pd.DataFrame
) -> None:
    with local_client():
        lazy = labelled_snapshots_dask(
            county.parts_dir,
            partitions=county.partitions,
            as_ofs=AS_OFS,
            horizon=HORIZON,
            observed_until=observed_until(county.tables),
        )
        assert lazy.npartitions == len(county.partitions)
        got = lazy.compute().sort_values(["as_of", "student_id"]).reset_index(drop=True)
    assert len(expected) > 1000 and expected["label"].sum() >= 5
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_lightgbm_dask_ranks_pupils_like_the_in_memory_fit(expected: pd.DataFrame) -> None:
    import dask.dataframe as dd

    names = feature_columns(expected)
    y = expected["label"].to_numpy()
    local = make_classifier(names, y=y, seed=1, overrides=OVERRIDES)
    local.fit(expected[names], y)
    # the same rows in two partitions by school, one per worker process (LightGBM's
    # network is one per process, so two workers need two processes)
    by_school = expected.sort_values(["school_id", "as_of", "student_id"], kind="stable")
    # and an empty partition (a school group without rows in the period), left out
    frame = dd.concat(
        [
            dd.from_pandas(by_school, npartitions=2, sort=False),
            dd.from_pandas(by_school.iloc[:0], npartitions=1, sort=False),
        ]
    )
    assert frame.npartitions == 3
    with local_client(processes=True) as client:
        booster = fit_lightgbm_dask(
            frame, feature_names=names, client=client, seed=1, overrides=OVERRIDES
        )
    assert booster.num_trees() == OVERRIDES["n_estimators"]
    assert booster.feature_name() == names
    one = local.booster_.predict(expected[names], raw_score=True)
    two = booster.predict(expected[names], raw_score=True)
    assert not np.allclose(one, two)  # documented: not the same trees
    auc_one, auc_two = roc_auc_score(y, one), roc_auc_score(y, two)
    ap_one, ap_two = average_precision_score(y, one), average_precision_score(y, two)
    assert auc_two > 0.8 and abs(auc_one - auc_two) < 0.05
    assert ap_two > 0.5 * ap_one
    assert spearmanr(one, two).statistic > 0.7
