"""The whole pipeline on a synthetic county in the home folder, told as it goes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.jobs import text
from serving.jobs.common import QUIET, Reporter, store_for, training_config
from serving.settings import Settings
from serving.storage.db import session_scope

if TYPE_CHECKING:
    from serving.services.demo import DemoAccount


def demo(
    settings: Settings, *, students: int, years: int, seed: int, report: Reporter = QUIET
) -> list[DemoAccount]:
    """synth -> validate -> train -> evaluate the champion on the last weeks of the test
    window -> score the latest week and write the lists -> demo accounts (returned, with
    new passwords). Everything is written below the home folder."""
    from features.sources import load_export, write_export
    from features.synthetic import generate_county
    from serving.services.demo import ensure_demo_accounts
    from serving.services.weekly_lists import run_weekly_job
    from training.matrices import school_days
    from training.pipeline import evaluate_registered, run_experiment
    from training.splits import weekly_as_ofs

    data_dir = settings.paths.data
    report.echo(f"Baoxue demo — home folder {settings.paths.home.resolve()}")
    with report.step(f"generating a synthetic county of {students:,} pupils × {years} years"):
        tables = generate_county(n_students=students, n_years=years, seed=seed)
    with report.step(f"writing the export to {data_dir}"):
        write_export(tables, data_dir, fmt="parquet")
    with report.step("validating it against the data contract"):
        loaded = load_export(data_dir)
    report.echo(text.export_summary(loaded.tables))

    report.echo("\n== train: LightGBM against the written rules, on a later test window ==")
    config = training_config(settings, None)
    store = store_for(settings)
    with report.progress(5, "training") as on_step:
        result = run_experiment(loaded.tables, config, store=store, on_step=on_step)
    report.echo(text.train_result(result, config))

    test = result.split.test_as_ofs
    window = test[-8:] if len(test) > 8 else test
    report.echo(
        f"\n== evaluate: the champion on the last {len(window)} weeks of the test window =="
    )
    with report.progress(3, "evaluating") as on_step:
        evaluation = evaluate_registered(
            loaded.tables,
            config,
            store=store,
            ref="champion",
            date_from=window[0],
            date_to=window[-1],
            on_step=on_step,
        )
    report.echo(text.evaluation(evaluation))
    report.echo(
        f"\nBrowse runs and models with: mlflow ui --backend-store-uri {settings.tracking_uri}"
    )

    latest = weekly_as_ofs(school_days(loaded.tables))[-1]
    report.echo(f"\n== score: the weekly lists for the week of {latest} ==")
    with report.step(f"scoring every enrolled pupil as of {latest}"):
        weekly = run_weekly_job(settings, export_dir=data_dir, as_of=latest, capacity=None)
    report.echo(text.weekly(weekly))
    with session_scope(settings, init=False) as session:  # migrated by the weekly batch
        return ensure_demo_accounts(session, latest)
