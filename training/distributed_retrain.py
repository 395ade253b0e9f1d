"""`baoxue retrain` on a Dask cluster: `training.retrain.retrain` with
``compute.backend = "dask"``.

The term's window comes from the schools' terms, computed per partition on the workers
(`partition_terms`: a partition carries the whole calendar of every school its pupils
attended) and united here, with the school days and years that choose the weekly as_ofs.
The challenger is then built, fitted and evaluated as `baoxue train` on Dask does
(`training.distributed_pipeline`: `prepare_dask`, `fit_models_dask`, `evaluate_dask`),
and the challenger and the champion are scored on the term's test rows per partition on
the cluster. Only narrow columns come back (ids, label, the model's score and the
fairness-group columns, about 100 bytes a row), and the same code as in memory evaluates
them at capacity and audits the flagged lists (`training.retrain.summarise_scored`). The
decision, the fairness gate, the MLflow run, registration and alias are
`training.retrain.decide_and_register`, shared with the in-memory path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.catalog import CATALOG_VERSION
from training import track
from training.config import TrainingConfig
from training.distributed import calendar_of, carried_groups, gather, merge_calendars
from training.distributed_pipeline import (
    evaluate_dask,
    export_digest,
    fit_models_dask,
    prepare_dask,
)
from training.fit import MODEL
from training.pipeline import StepCallback, noop
from training.retrain import (
    SCORED_IDS,
    RetrainResult,
    Term,
    decide_and_register,
    plan_term,
    summarise_scored,
)

logger = logging.getLogger(__name__)

EXAMPLE_ROWS = 5  # labelled test rows gathered for the model's input example


def partition_terms(parts_dir: Path, partition: int) -> tuple[set[dt.date], set[int], pd.DataFrame]:
    """One partition's school days, enrolment school years and schools' terms
    (`features.school_calendar.school_terms`), read once."""
    from features.distributed import read_partition
    from features.school_calendar import school_terms

    tables, _ = read_partition(parts_dir, partition)
    days, years = calendar_of(tables)
    return days, years, school_terms(tables.calendar)


def export_terms(
    parts_dir: Path, *, partitions: Sequence[int]
) -> tuple[list[dt.date], set[int], pd.DataFrame]:
    """Every school day of a partitioned export (sorted), its enrolment school years and
    every school's terms (one row per school and term), one task per partition."""
    from dask.base import compute
    from dask.delayed import delayed

    if not partitions:
        raise ValueError("no partitions to read")
    parts = compute(*[delayed(partition_terms)(Path(parts_dir), p) for p in partitions])  # type: ignore[no-untyped-call]
    days, years = merge_calendars((part_days, part_years) for part_days, part_years, _ in parts)
    terms = pd.concat([t for _, _, t in parts], ignore_index=True)
    # a school's calendar travels whole with each partition whose pupils attended it
    terms = terms.drop_duplicates(["school_id", "term_no"]).reset_index(drop=True)
    return sorted(days), years, terms


def _model_scores(part: pd.DataFrame, model: Any) -> pd.DataFrame | None:
    """One partition's test rows scored by `model`: ids, label, ``lightgbm`` and the
    fairness-group columns (None without rows: LightGBM refuses to predict on none)."""
    if part.empty:
        return None
    scored = part.loc[:, list(SCORED_IDS)].reset_index(drop=True)
    scored[MODEL] = model.risk_scores(part)
    return carried_groups(scored, part)


def _first_rows(part: pd.DataFrame, n: int) -> pd.DataFrame | None:
    return None if part.empty else part.head(n)


def retrain_dask(
    export_dir: Path,
    config: TrainingConfig,
    *,
    store: track.Store,
    term: Term | str,
    client: Any,
    parts_dir: Path,
    schools_per_partition: int,
    on_step: StepCallback = noop,
) -> RetrainResult:
    """`training.retrain.retrain` on the cluster of `client`: split the export into
    `parts_dir`, find the term and its observable weekly as_ofs, train the challenger on
    everything before the term with `lightgbm.dask`, score it and the champion on the
    term per partition, decide, log, register and set the alias as in memory."""
    from features.distributed import partition_export

    on_step(f"splitting the export into partitions of {schools_per_partition} schools")
    partitions = partition_export(
        Path(export_dir), Path(parts_dir), schools_per_partition=schools_per_partition
    )
    days, years, terms = export_terms(parts_dir, partitions=partitions)
    plan = plan_term(terms, days, term, config)
    config = plan.config
    prepared = prepare_dask(
        parts_dir, partitions, config, client=client, on_step=on_step, calendar=(days, years)
    )
    on_step("fitting LightGBM on the cluster (lightgbm.dask) and the baselines")
    fitted = fit_models_dask(prepared, config, client=client)
    on_step("scoring the test window on the cluster")
    outcome = evaluate_dask(prepared, fitted, config)
    example = gather(prepared.test, _first_rows, EXAMPLE_ROWS)
    example = example.sort_values(["as_of", "student_id"], kind="stable").head(EXAMPLE_ROWS)

    def score_on_test(model: Any) -> tuple[dict[str, float], pd.DataFrame]:
        assert model.contract is not None
        # names, dtypes and catalog version: the labelled rows' columns suffice
        model.contract.check(prepared.columns, catalog_version=CATALOG_VERSION)
        scored = gather(prepared.test, _model_scores, model)
        scored = scored.sort_values(["as_of", "student_id"], kind="stable")
        return summarise_scored(scored.reset_index(drop=True), capacity_share=config.capacity_share)

    return decide_and_register(
        outcome,
        plan,
        store=store,
        prepared=prepared,
        test_example=example.reset_index(drop=True),
        score_on_test=score_on_test,
        digest=export_digest(Path(export_dir)),
        on_step=on_step,
        tags={
            "baoxue.backend": "dask",
            "baoxue.fingerprint_kind": "files",
            "baoxue.partitions": str(len(partitions)),
        },
    )
