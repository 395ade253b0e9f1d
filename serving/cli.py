"""The `baoxue` command line: one entry point for every job.

Each command loads the settings, calls one function, and prints a short summary.
Bad input ends with a clear message and a non-zero exit code, never a traceback
(`baoxue --debug ...` shows the traceback for developers). Other packages add commands
through the `baoxue.commands` entry point group (`baoxue bench` comes from `bench/`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="baoxue",
    help=(
        "Baoxue (保学): find the pupils at risk of dropping out of compulsory school "
        "before they leave.\n\n"
        "Reads the tables a county or school exports (see docs/data-contract.md), builds "
        "as-of features, trains and evaluates the risk model, and serves weekly at-risk "
        "lists with reasons a teacher can act on.\n\n"
        "Settings come from BAOXUE_* environment variables or ./baoxue.toml; by default "
        "everything lives in ./var (SQLite database, MLflow store, written lists)."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state: dict[str, Any] = {"debug": False}

T = TypeVar("T")


class CommandFailed(Exception):
    """A failure the user can fix; its message is shown without a traceback."""


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (for developers).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    _state["debug"] = debug
    # MLflow configures its own logger on import; tell it our level before it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "numba", "shap"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body, turning known failures into a message and exit code 1."""
    from sqlalchemy.exc import OperationalError

    from features.validation import InputTableError

    try:
        return fn()
    except InputTableError as exc:
        if _state["debug"]:
            raise
        _fail(exc.report())
    except OperationalError as exc:  # locked, read-only, full: a sentence, not the SQL
        if _state["debug"]:
            raise
        from serving.storage.db import database_problem

        _fail(f"error: {database_problem(exc)}")
    except (
        CommandFailed,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        LookupError,
        ValueError,
    ) as exc:
        if _state["debug"]:
            raise
        _fail(f"error: {exc}")
    except KeyboardInterrupt:
        _fail("interrupted; nothing was changed", 130)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def step(label: str) -> Iterator[None]:
    """Print one line per long step with how long it took."""
    typer.echo(f"• {label} ...", nl=False)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        typer.echo(" failed")
        raise
    typer.echo(f" done ({time.perf_counter() - started:.1f} s)")


def _settings() -> Settings:
    return get_settings()


# --------------------------------------------------------------------------- data


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the export to (replaced whole).")],
    students: Annotated[
        int, typer.Option("--students", "-n", min=50, help="Pupils enrolled in the first year.")
    ] = 20_000,
    years: Annotated[int, typer.Option("--years", min=1, max=12, help="School years.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same county.")] = 0,
    first_year: Annotated[
        int, typer.Option("--first-year", help="School year the data starts (2023 = 2023-09).")
    ] = 2023,
    fmt: Annotated[
        str, typer.Option("--format", help="File format of the tables: csv or parquet.")
    ] = "csv",
) -> None:
    """Write a synthetic rural county: an export that passes `baoxue validate`.

    Townships with primary, junior and nine-year schools, a real school calendar
    (two terms, weekends, national holidays, Spring Festival, summer), hardship and
    left-behind prevalences of a poor rural county, and a hidden risk that drives
    absences, falling grades and rare dropouts. See docs/synthetic-county.md.
    """
    from features.sources import write_export
    from features.synthetic import generate_county

    if fmt not in ("csv", "parquet"):
        _fail("error: --format must be csv or parquet")

    def body() -> None:
        with step(f"generating {students:,} pupils × {years} school years (seed {seed})"):
            tables = generate_county(
                n_students=students, n_years=years, seed=seed, first_school_year=first_year
            )
        with step(f"writing {fmt} files to {out}"):
            write_export(tables, out, fmt=fmt)  # type: ignore[arg-type]
        _print_summary(tables)

    run_guarded(body)


def _print_summary(tables: Any) -> None:
    from features.summary import format_summary, summarize

    typer.echo(format_summary(summarize(tables)))


@app.command()
def validate(
    export_dir: Annotated[
        Path, typer.Argument(help="Folder with one CSV or Parquet file per table.")
    ],
) -> None:
    """Check an export against the data contract and summarise it.

    Reports every violation at once, grouped by rule, each naming the file, the row
    as a spreadsheet shows it, the column, the bad value and what was expected.
    Exits 0 when the export is valid, 1 otherwise. Extra columns are warned about
    and ignored.
    """
    from features.sources import load_export

    def body() -> None:
        if not export_dir.is_dir():
            raise CommandFailed(f"{export_dir} is not a folder (expected an export folder)")
        loaded = load_export(export_dir)
        for warning in loaded.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"{export_dir}: valid export")
        _print_summary(loaded.tables)

    run_guarded(body)


# --------------------------------------------------------------------------- models


class Progress:
    """A progress bar over the named steps of a long job (pipeline callbacks)."""

    def __init__(self, steps: int, label: str) -> None:
        self.bar = typer.progressbar(length=steps, label=label, show_eta=False, show_pos=True)
        self.started = time.perf_counter()
        self.bar.__enter__()

    def __call__(self, message: str) -> None:
        self.bar.label = f"{message} "
        self.bar.update(1)

    def close(self) -> None:
        self.bar.update((self.bar.length or 0) - self.bar.pos)
        self.bar.__exit__(None, None, None)
        typer.echo(f"  ({time.perf_counter() - self.started:.1f} s)")


def _store(settings: Settings) -> Any:
    from training.track import Store

    settings.paths.home.mkdir(parents=True, exist_ok=True)
    local = settings.tracking_uri.startswith("sqlite:")
    return Store(
        tracking_uri=settings.tracking_uri,
        registry_uri=settings.registry_uri,
        experiment=settings.mlflow.experiment,
        model_name=settings.mlflow.model_name,
        artifact_location=settings.artifact_location if local else None,
    )


def _training_config(settings: Settings, config_file: Path | None, **overrides: Any) -> Any:
    from training.config import TrainingConfig

    defaults = {
        "horizon_days": settings.training.horizon_days,
        "as_of_every_days": settings.training.as_of_every_days,
        "capacity_share": settings.training.capacity_share,
        "seed": settings.training.seed,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is not None:
        return TrainingConfig.from_toml(config_file, **given)
    return TrainingConfig(**{**defaults, **given})


def _load(export_dir: Path) -> Any:
    from features.sources import load_export

    if not export_dir.is_dir():
        raise CommandFailed(f"{export_dir} is not a folder (expected an export folder)")
    loaded = load_export(export_dir)
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return loaded.tables


def _metrics_table(summary: Any) -> str:
    """Model vs baselines, one line each."""
    cols = [
        ("auc", "ROC-AUC"),
        ("pr_auc", "PR-AUC"),
        ("brier", "Brier"),
        ("precision_at_k", "P@k"),
        ("recall_at_k", "R@k"),
        ("precision_at_k_class", "P@k class"),
        ("recall_at_k_class", "R@k class"),
        ("lift_over_ladder", "lift vs ladder"),
    ]
    header = f"{'model':<18}" + "".join(f"{title:>15}" for _, title in cols)
    lines = [header, "-" * len(header)]
    for name, row in summary.iterrows():
        cells = []
        for key, _ in cols:
            value = row.get(key)
            cells.append(f"{'—' if value is None or value != value else f'{value:.3f}':>15}")
        lines.append(f"{name:<18}" + "".join(cells))
    return "\n".join(lines)


@app.command()
def train(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (see docs/data-contract.md).")],
    train_until: Annotated[
        datetime | None,
        typer.Option(
            "--train-until",
            formats=["%Y-%m-%d"],
            help="First test as_of (YYYY-MM-DD); training uses only label windows that "
            "close before the calibration period ahead of it. Default: the start of the "
            "last school year.",
        ),
    ] = None,
    test_to: Annotated[
        datetime | None,
        typer.Option("--test-to", formats=["%Y-%m-%d"], help="Last test as_of (default: last)."),
    ] = None,
    horizon: Annotated[
        int | None, typer.Option("--horizon", min=7, max=730, help="Label horizon in days.")
    ] = None,
    capacity_share: Annotated[
        float | None,
        typer.Option("--capacity-share", help="Share of each school visited per week (0.05)."),
    ] = None,
    to_enrolment_end: Annotated[
        bool,
        typer.Option(
            "--horizon-to-enrolment-end",
            help="Cap each label window at the end of the student's enrolment (courses).",
        ),
    ] = False,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML file with a [training] table.")
    ] = None,
    optuna_seconds: Annotated[
        int | None,
        typer.Option(
            "--optuna-seconds",
            min=0,
            help="Search LightGBM parameters with Optuna for this long (needs '.[tune]').",
        ),
    ] = None,
) -> None:
    """Train the risk model with temporal validation and register it in MLflow.

    Weekly as_of dates over the school terms; train on label windows that close before a
    later calibration period, calibrate there, test on the window from --train-until.
    Prints LightGBM against the baselines (the escalation ladder, the hardship count,
    logistic regression) on the test window, the fairness findings, and the registered
    version. The alias `champion` moves to it only if it beats the current champion's
    precision@k on the same window; otherwise it becomes `challenger`.
    """
    from training.pipeline import run_experiment

    settings = _settings()

    def body() -> None:
        config = _training_config(
            settings,
            config_file,
            train_until=train_until.date() if train_until else None,
            test_to=test_to.date() if test_to else None,
            horizon_days=horizon,
            capacity_share=capacity_share,
            horizon_to_enrolment_end=to_enrolment_end or None,
            optuna_seconds=optuna_seconds,
        )
        if settings.compute.backend == "dask":
            result = _train_on_dask(settings, export_dir, config)
            _print_train_result(result, config)
            return
        with step(f"reading and validating {export_dir}"):
            tables = _load(export_dir)
        progress = Progress(5, "training")
        try:
            result = run_experiment(tables, config, store=_store(settings), on_step=progress)
        finally:
            progress.close()
        _print_train_result(result, config)

    run_guarded(body)


def _train_on_dask(settings: Settings, export_dir: Path, config: Any) -> Any:
    """`baoxue train` with compute.backend = "dask": the export is split by school and
    trained on the cluster (training/distributed_pipeline.py, docs/dask.md)."""
    from training.distributed_pipeline import run_experiment_dask

    return _on_dask(
        settings,
        export_dir,
        "training on Dask",
        lambda **cluster: run_experiment_dask(
            export_dir, config, store=_store(settings), **cluster
        ),
    )


def _on_dask(
    settings: Settings, export_dir: Path, title: str, run: Callable[..., Any], *, steps: int = 5
) -> Any:
    """`run(client=, parts_dir=, schools_per_partition=, on_step=)` on the cluster of
    compute.backend = "dask", with the export split into `<partitions_dir>-train` (a
    progress bar of `steps` steps)."""
    from serving.services.distributed_scoring import dask_client

    if not export_dir.is_dir():
        raise CommandFailed(f"{export_dir} is not a folder (expected an export folder)")
    compute = settings.compute
    base = compute.partitions_dir or settings.paths.home / "partitions"
    # beside the weekly batch's partitions, which a scheduled run may replace meanwhile
    parts_dir = base.with_name(f"{base.name}-train")
    progress = Progress(steps, title)
    try:
        with dask_client(compute) as client:
            return run(
                client=client,
                parts_dir=parts_dir,
                schools_per_partition=compute.schools_per_partition,
                on_step=progress,
            )
    finally:
        progress.close()


def _print_train_result(result: Any, config: Any) -> None:
    split = result.split
    typer.echo(
        f"\ntest window {split.test_as_ofs[0]} .. {split.test_as_ofs[-1]} "
        f"({len(split.test_as_ofs)} weekly as_of dates, {result.n_rows['test']:,} rows, "
        f"{result.n_rows['test_positive']} dropouts within {config.horizon_days} days); "
        f"trained on {split.train_as_ofs[0]} .. {split.train_as_ofs[-1]} "
        f"({result.n_rows['train']:,} rows), calibrated on {split.calibration_as_ofs[0]} .. "
        f"{split.calibration_as_ofs[-1]}"
    )
    typer.echo(f"k = {config.capacity_share:.0%} of each school (and class) per week\n")
    summary = result.evaluation.summary()
    typer.echo(_metrics_table(summary))
    model_p = summary.loc["lightgbm", "precision_at_k"]
    ladder_p = summary.loc["escalation_ladder", "precision_at_k"]
    if not model_p > ladder_p:
        typer.echo(
            f"\nwarning: on this test window LightGBM's precision@k ({model_p:.3f}) does not "
            f"beat the written escalation ladder's ({ladder_p:.3f}). With this little history "
            "the rule is as good a list; more school years (or pupils) usually change that."
        )
    if result.disparities:
        typer.echo("\nfairness (LightGBM at capacity; ratios outside 0.8-1.25):")
        for line in result.disparities:
            typer.echo(f"  - {line}")
    else:
        typer.echo("\nfairness: no disparity ratio outside 0.8-1.25")
    typer.echo(
        f"\nregistered version {result.version} as '{result.alias}': {result.alias_reason}"
        f"\nMLflow run {result.run_id}; data fingerprint {result.fingerprint}; "
        f"{result.train_seconds:.1f} s"
    )


@app.command()
def evaluate(
    export_dir: Annotated[Path, typer.Argument(help="Export folder.")],
    model: Annotated[
        str, typer.Option("--model", help="Registry alias (champion, challenger) or version.")
    ] = "champion",
    date_from: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First as_of (YYYY-MM-DD)."),
    ] = None,
    date_to: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last as_of (YYYY-MM-DD).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    capacity_share: Annotated[
        float | None, typer.Option("--capacity-share", help="Share of each school (0.05).")
    ] = None,
    to_enrolment_end: Annotated[
        bool,
        typer.Option("--horizon-to-enrolment-end", help="Cap label windows at enrolment end."),
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with a [training] table (as for train)."),
    ] = None,
    with_interventions: Annotated[
        bool,
        typer.Option(
            "--with-interventions",
            help="Also count flagged pupils whose visit led to a return as caught "
            "(interventions from the service database and the export; docs/model.md).",
        ),
    ] = False,
) -> None:
    """Score a registered model on every weekly as_of in a window whose outcome is known.

    Baselines are fitted on what was known before --from. Prints AUC, PR-AUC, Brier,
    precision@k and recall@k against the baselines, per as_of and overall, and the
    fairness audit; --json prints all of it as one JSON object. --with-interventions adds
    precision@k and recall@k where a visit within the horizon followed by a return to
    school counts as caught.
    """
    import json

    from training.pipeline import evaluate_registered

    settings = _settings()

    def body() -> None:
        if date_from is None or date_to is None:
            raise CommandFailed("give the window with --from YYYY-MM-DD --to YYYY-MM-DD")
        config = _training_config(
            settings,
            config_file,
            capacity_share=capacity_share,
            horizon_to_enrolment_end=to_enrolment_end or None,
        )
        tables = _load(export_dir)
        result = evaluate_registered(
            tables,
            config,
            store=_store(settings),
            ref=model,
            date_from=date_from.date(),
            date_to=date_to.date(),
        )
        if with_interventions:
            result["with_interventions"] = _visit_evaluation(
                settings, tables, config, model, date_from.date(), date_to.date()
            )
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
            return
        _print_evaluation(result)
        if with_interventions:
            _print_visit_evaluation(result["with_interventions"])

    run_guarded(body)


def _visit_evaluation(
    settings: Settings, tables: Any, config: Any, ref: str, date_from: date, date_to: date
) -> dict[str, Any]:
    from serving.services.research_export import read_interventions
    from serving.storage.db import init_db, make_engine, session_factory
    from training.feedback import evaluate_registered_with_visits

    init_db(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            interventions = read_interventions(session)
    finally:
        engine.dispose()
    result: dict[str, Any] = evaluate_registered_with_visits(
        tables,
        config,
        store=_store(settings),
        ref=ref,
        date_from=date_from,
        date_to=date_to,
        interventions=interventions,
    )
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in result.items()}


def _print_visit_evaluation(result: dict[str, Any]) -> None:
    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.3f}"

    typer.echo(
        f"\nwith interventions ({result['n_interventions']} recorded; a flagged pupil visited "
        f"within {result['horizon_days']} days who came back to school counts as caught):"
    )
    typer.echo(f"{'':<26}{'P@k':>8}{'R@k':>8}{'P@k pooled':>12}{'R@k pooled':>12}")
    for title, key in (("dropouts only", ""), ("with visit-led returns", "_with_visits")):
        typer.echo(
            f"{title:<26}{fmt(result[f'precision_at_k{key}']):>8}"
            f"{fmt(result[f'recall_at_k{key}']):>8}"
            f"{fmt(result[f'precision_at_k{key}_pooled']):>12}"
            f"{fmt(result[f'recall_at_k{key}_pooled']):>12}"
        )
    typer.echo(
        f"{result['n_visit_led_returns']} visit-led returns, {result['n_caught_by_visit']} of "
        f"them flagged without a dropout label"
    )


def _print_evaluation(result: dict[str, Any]) -> None:
    import pandas as pd

    rows = {"lightgbm": result, **result["baselines"]}
    if result.get("served_list"):
        rows["ladder_then_lightgbm"] = result["served_list"]
    summary = pd.DataFrame(
        {
            k: {m: v for m, v in r.items() if isinstance(v, int | float) or v is None}
            for k, r in rows.items()
        }
    ).T
    typer.echo(
        f"{result['model']} version {result['version']} on {result['from']} .. {result['to']}: "
        f"{result['n_rows']:,} rows, {result['n_positive']} dropouts within "
        f"{result['horizon_days']} days\n"
    )
    typer.echo(_metrics_table(summary.astype(float)))
    typer.echo("\nper as_of (LightGBM):")
    typer.echo(f"{'as_of':<12}{'rows':>8}{'dropouts':>10}{'AUC':>8}{'P@k':>8}{'R@k':>8}")
    for row in result["per_as_of"]:

        def fmt(v: Any) -> str:
            return "—" if v is None else f"{v:.3f}"

        typer.echo(
            f"{row['as_of']:<12}{row.get('n_students', 0):>8}{row.get('n_positive', 0):>10}"
            f"{fmt(row.get('auc')):>8}{fmt(row.get('precision_at_k')):>8}"
            f"{fmt(row.get('recall_at_k')):>8}"
        )
    for line in result["disparities"]:
        typer.echo(f"  fairness: {line}")


@app.command()
def retrain(
    export_dir: Annotated[Path, typer.Argument(help="Export folder.")],
    term: Annotated[
        str,
        typer.Option(
            "--term",
            help="The newest complete term, YYYY-T: YYYY-1 is the autumn term starting in "
            "September of YYYY, YYYY-2 the spring term of school year YYYY (Feb-Jul of YYYY+1).",
        ),
    ],
    horizon: Annotated[
        int | None, typer.Option("--horizon", min=7, max=730, help="Label horizon in days.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with a [training] table (as for train)."),
    ] = None,
) -> None:
    """Retrain after a term: a challenger against the champion on that term.

    The challenger trains on everything whose outcome was known before the term starts;
    both models are scored on the term's weekly as_ofs with the same metrics and fairness
    audit. The challenger becomes `champion` only if it beats the champion's precision@k
    and moves no fairness ratio the champion kept inside 0.8-1.25 out of that band;
    otherwise it is registered as `challenger`. Prints both side by side and the reasons.
    """
    from training.retrain import parse_term
    from training.retrain import retrain as run_retrain

    settings = _settings()

    def body() -> None:
        parsed = parse_term(term)
        config = _training_config(settings, config_file, horizon_days=horizon)
        if settings.compute.backend == "dask":
            from training.distributed_retrain import retrain_dask

            _print_retrain(
                _on_dask(
                    settings,
                    export_dir,
                    f"retraining for term {parsed} on Dask",
                    lambda **cluster: retrain_dask(
                        export_dir, config, store=_store(settings), term=parsed, **cluster
                    ),
                    steps=6,
                )
            )
            return
        with step(f"reading and validating {export_dir}"):
            tables = _load(export_dir)
        progress = Progress(5, f"retraining for term {parsed}")
        try:
            result = run_retrain(
                tables, config, store=_store(settings), term=parsed, on_step=progress
            )
        finally:
            progress.close()
        _print_retrain(result)

    run_guarded(body)


def _print_retrain(result: Any) -> None:
    from training.retrain import FAIRNESS_ROW

    typer.echo(
        f"\nterm {result.term}: school days {result.term_start} .. {result.term_end}; "
        f"test as_ofs {result.test_from} .. {result.test_to} ({result.n_rows['test']:,} rows, "
        f"{result.n_rows['test_positive']} dropouts); challenger trained on "
        f"{result.n_rows['train']:,} rows before the term\n"
    )
    champion = f"champion v{result.champion_version}" if result.champion_version else "champion"
    challenger = f"challenger v{result.version}"
    width = max(len(FAIRNESS_ROW), 10) + 2
    header = f"{'':<{width}}{champion:>16}{challenger:>16}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for name, row in result.table.iterrows():

        def fmt(v: Any, name: Any = name) -> str:
            if v != v:
                return "—"
            return f"{v:.0f}" if name == FAIRNESS_ROW else f"{v:.3f}"

        typer.echo(f"{name:<{width}}{fmt(row['champion']):>16}{fmt(row['challenger']):>16}")
    verdict = "PROMOTED to champion" if result.promoted else "kept as challenger"
    typer.echo(f"\nversion {result.version} {verdict}:")
    for reason in result.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"MLflow run {result.run_id}")


import_app = typer.Typer(help="Convert other data sources into an export.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("oulad")
def import_oulad_command(
    src: Annotated[Path, typer.Argument(help="Folder with OULAD's tables (CSV or Parquet).")],
    out: Annotated[Path, typer.Argument(help="Export folder to write (replaced whole).")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "parquet",
) -> None:
    """Convert the Open University Learning Analytics Dataset into an export.

    Each module is a school, each presentation a class and school year, the assessment
    deadlines are the attendance register, withdrawal is dropout. See docs/oulad.md.
    """
    from features.oulad import OuladInputError, import_oulad

    def body() -> None:
        try:
            with step(f"importing OULAD from {src}"):
                summary = import_oulad(src, out, fmt=fmt)  # type: ignore[arg-type]
        except OuladInputError as exc:
            raise CommandFailed(str(exc)) from exc
        typer.echo(f"wrote {summary.out_dir} ({summary.fmt})")
        for name, n in summary.rows.items():
            typer.echo(f"  {name:<20}{n:>10,}")
        typer.echo(f"  dropouts by presentation: {summary.dropouts_by_presentation}")

    run_guarded(body)


export_app = typer.Typer(help="Write data out of Baoxue for others.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("research")
def export_research_command(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (the county's tables).")],
    out: Annotated[Path, typer.Argument(help="Folder to write (must not exist yet).")],
    date_from: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First as_of (default: the first)."),
    ] = None,
    date_to: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last as_of (default: the last)."),
    ] = None,
    horizon: Annotated[
        int | None, typer.Option("--horizon", min=7, max=730, help="Label horizon in days.")
    ] = None,
) -> None:
    """Training rows with teacher feedback and interventions, pseudonymised, for research.

    Writes Parquet files (training_rows, feedback, interventions), manifest.json and a
    README into OUT: the weekly as-of snapshots and labels the trainer uses, with the
    feedback and interventions of the service database for those pupils. Pupil and user
    ids are replaced by keyed hashes with a fresh random salt (never written); notes,
    comments and plans are left out. Run it on the server; see docs/research-export.md.
    """
    import secrets

    from serving.services.research_export import (
        read_feedback,
        read_interventions,
        write_research_export,
    )
    from serving.storage.db import init_db, make_engine, session_factory
    from training.feedback import research_tables
    from training.pipeline import observable_as_ofs

    settings = _settings()

    def body() -> None:
        if out.exists():
            raise CommandFailed(f"{out} exists already; give a new folder for the export")
        config = _training_config(settings, None, horizon_days=horizon)
        with step(f"reading and validating {export_dir}"):
            tables = _load(export_dir)
        as_ofs = observable_as_ofs(
            tables,
            config,
            start=date_from.date() if date_from else None,
            end=date_to.date() if date_to else None,
        )
        if not as_ofs:
            raise CommandFailed(
                f"no weekly as_of in the window has an observable {config.horizon_days}-day "
                "outcome in this export"
            )
        init_db(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            with session_factory(engine)() as session:
                feedback, interventions = read_feedback(session), read_interventions(session)
        finally:
            engine.dispose()
        with step(f"building {len(as_ofs)} weekly as_ofs, {as_ofs[0]} .. {as_ofs[-1]}"):
            result = research_tables(
                tables,
                as_ofs=as_ofs,
                horizon=config.horizon,
                feedback=feedback,
                interventions=interventions,
                salt=secrets.token_bytes(32),
            )
        try:
            write_research_export(out, result.frames, result.manifest)
        except FileExistsError as exc:
            raise CommandFailed(str(exc)) from exc
        typer.echo(f"wrote {out}")
        for name, n in result.manifest["rows"].items():
            typer.echo(f"  {name:<16}{n:>10,} rows")
        typer.echo(
            f"  {result.manifest['n_students']:,} pupils, {result.manifest['n_positive']} "
            f"dropouts, {result.manifest['n_visit_led_returns']} visit-led returns"
        )

    run_guarded(body)


@app.command()
def drift(
    export_dir: Annotated[Path, typer.Argument(help="Export folder.")],
    date_from: Annotated[
        datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First recent as_of.")
    ],
    date_to: Annotated[
        datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last recent as_of.")
    ],
    reference_from: Annotated[
        datetime | None,
        typer.Option(
            "--reference-from",
            formats=["%Y-%m-%d"],
            help="Start of the reference window (default: every week before --from).",
        ),
    ] = None,
    reference_to: Annotated[
        datetime | None,
        typer.Option("--reference-to", formats=["%Y-%m-%d"], help="End of the reference window."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Also compare risk scores and tiers of this model (champion)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default: <home>/drift/<to>).")
    ] = None,
    log_to_mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Also log the report as an MLflow run.")
    ] = False,
) -> None:
    """Has the data drifted under the model? Feature PSI, score and tier shifts, broken feeds.

    Compares the weekly snapshots of [--from, --to] with a reference window (default: every
    earlier week): the population stability index of each feature, of the model's risk
    scores and the share of pupils per tier (with --model), and warns when a school's feed
    looks broken (no absences for two school weeks, a term without grades, a calendar that
    stops early). Writes report.md with plots and tables.
    """
    from training import track
    from training.drift import run_drift
    from training.drift_report import log_drift_to_mlflow, write_drift_report

    settings = _settings()

    def body() -> None:
        tables = _load(export_dir)
        risk_model = None
        if model:
            track.connect(_store(settings))
            risk_model, version = track.load_risk_model(settings.mlflow.model_name, model)
            typer.echo(f"comparing scores of {settings.mlflow.model_name} version {version}")
        with step(f"comparing {date_from.date()} .. {date_to.date()} with the reference"):
            report = run_drift(
                tables,
                date_from=date_from.date(),
                date_to=date_to.date(),
                model=risk_model,
                reference_from=reference_from.date() if reference_from else None,
                reference_to=reference_to.date() if reference_to else None,
            )
        folder = out or settings.paths.home / "drift" / date_to.date().isoformat()
        write_drift_report(report, folder)
        counts = report.severity_counts()
        typer.echo("features: " + ", ".join(f"{n} {level}" for level, n in counts.items()))
        if report.score is not None:
            typer.echo(f"risk_score PSI {report.score.psi:.3f} ({report.score.severity})")
        for sentence in report.feed_sentences:
            typer.echo(f"warning: {sentence}")
        typer.echo(f"wrote {folder / 'report.md'}")
        if log_to_mlflow:
            run_id = log_drift_to_mlflow(report, _store(settings))
            typer.echo(f"MLflow run {run_id}")

    run_guarded(body)


# --------------------------------------------------------------------------- service


def last_monday(today: date) -> date:
    """The Monday of `today`'s week (today itself on a Monday)."""
    return today - timedelta(days=today.weekday())


@app.command()
def score(
    export_dir: Annotated[
        Path | None,
        typer.Argument(help="Export folder (default: the home folder's data, var/data)."),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of", formats=["%Y-%m-%d"], help="Week to score (default: this week's Monday)."
        ),
    ] = None,
    capacity: Annotated[
        int | None,
        typer.Option(
            "--capacity",
            min=1,
            help="Home visits per school per week (default: 5 % of each school's pupils).",
        ),
    ] = None,
) -> None:
    """The weekly batch: score every enrolled pupil with the champion model and write lists.

    Stores the scores in the database and writes per-school and per-class lists as CSV
    (UTF-8 with BOM, opens in Excel and WPS) and XLSX under <home>/lists/<as_of>/. Ladder
    alerts (1/2/3 days absent) come first, then the ranked pupils. A run that fails leaves
    last week's lists and scores as they were. With compute.backend = "dask" the
    export is split by school and scored on the Dask cluster (docs/dask.md).
    """
    from serving.registry import NoChampionModel
    from serving.services.distributed_scoring import weekly_job

    settings = _settings()
    run_weekly_job = weekly_job(settings)  # in this process, or on Dask (compute.backend)

    def body() -> None:
        day = as_of.date() if as_of else last_monday(date.today())
        try:
            with step(f"scoring the week of {day}"):
                result = run_weekly_job(
                    settings, export_dir=export_dir, as_of=day, capacity=capacity
                )
        except NoChampionModel as exc:
            raise CommandFailed(str(exc)) from exc
        _print_weekly(result)
        _purge(settings)  # retention runs with every weekly batch

    run_guarded(body)


def _purge(settings: Settings) -> None:
    from serving.services.retention import purge_database

    done = purge_database(settings.database_url, today=date.today(), years=settings.retention.years)
    typer.echo(
        f"retention ({settings.retention.years} years, before {done.cutoff}): "
        f"{done.notes_blanked} notes and {done.comments_blanked} comments blanked, "
        f"{done.audit_removed} audit rows removed"
    )


retention_app = typer.Typer(help="Keep personal data no longer than needed.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("purge")
def retention_purge() -> None:
    """Blank visit notes and feedback comments and delete audit rows older than
    retention.years (default 3; BAOXUE_RETENTION__YEARS). Also runs after `baoxue score`."""
    settings = _settings()
    run_guarded(lambda: _purge(settings))


def _print_weekly(result: Any) -> None:
    typer.echo(
        f"scored {result.n_students:,} pupils as of {result.as_of} with model version "
        f"{result.model_version} ({result.n_explained:,} explained) in {result.seconds:.1f} s"
    )
    folders = sorted({f.parent for f in result.files})
    typer.echo(f"wrote {len(result.files)} list files under {folders[0] if folders else '-'}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8000).")] = None,
) -> None:
    """Run the web service: the API (/docs) and, when set, the weekly batch on schedule."""
    from serving.app import serve as run_server

    settings = _settings()
    typer.echo(
        f"serving on http://{host or settings.serving.host}:{port or settings.serving.port} "
        "(Ctrl-C stops)"
    )
    run_guarded(lambda: run_server(settings, host=host, port=port))


users_app = typer.Typer(help="Accounts of the service.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if line:
            return line
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (3-64 of A-Z a-z 0-9 _ . -).")],
    role: Annotated[
        str,
        typer.Option("--role", help="county_admin, school_admin, teacher or researcher."),
    ],
    school: Annotated[
        str | None, typer.Option("--school", help="School id (school_admin, teacher).")
    ] = None,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Class id of a teacher; repeat for more.")
    ] = None,
    staff_role: Annotated[
        str | None,
        typer.Option("--staff-role", help="homeroom_teacher, subject_teacher, principal, county."),
    ] = None,
) -> None:
    """Add a user. The password is read from standard input, or asked for twice."""
    from serving.app import add_user_from_cli
    from serving.services.users import InvalidUser

    settings = _settings()

    def body() -> None:
        password = _read_password()
        try:
            user = add_user_from_cli(
                settings, username, password, role, school, classes or (), staff_role
            )
        except InvalidUser as exc:
            raise CommandFailed(str(exc)) from exc
        scope = user.school_id or "all schools"
        typer.echo(f"added {user.username} ({user.role}, {scope})")

    run_guarded(body)


# --------------------------------------------------------------------------- plugins


def _guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """A plugin's command run as ours are: known failures become a message and exit 1."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        return run_guarded(lambda: command(*args, **kwargs))

    return run


def _add_plugin_commands() -> None:
    """Commands other packages register in the `baoxue.commands` entry point group
    (`bench = "bench.cli:bench"`): serving never imports them itself."""
    for entry in entry_points(group="baoxue.commands"):
        app.command(entry.name)(_guarded(entry.load()))


_add_plugin_commands()  # before demo: the help lists bench there


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    students: Annotated[
        int, typer.Option("--students", "-n", min=200, help="Pupils in the demo county.")
    ] = 20_000,
    years: Annotated[int, typer.Option("--years", min=2, max=6, help="School years.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after writing the lists; do not serve.")
    ] = False,
) -> None:
    """Run the whole pipeline on a synthetic county in the home folder.

    synth -> validate -> train (temporal validation, baselines, fairness audit, MLflow
    registry) -> evaluate the champion on the last weeks of the test window -> score the
    latest week and write the lists -> create demo users -> serve at http://127.0.0.1:8000.
    Everything is written below the home folder (./var by default): the export in
    var/data, the MLflow store in var/mlflow.db and var/mlartifacts, the service database
    var/baoxue.db, the lists in var/lists.
    """
    from features.sources import load_export, write_export
    from features.synthetic import generate_county
    from serving.services.weekly_lists import run_weekly_job
    from training.matrices import school_days
    from training.pipeline import evaluate_registered, run_experiment
    from training.splits import weekly_as_ofs

    settings = _settings()
    data_dir = settings.paths.data

    def body() -> None:
        typer.echo(f"Baoxue demo — home folder {settings.paths.home.resolve()}")
        with step(f"generating a synthetic county of {students:,} pupils × {years} years"):
            tables = generate_county(n_students=students, n_years=years, seed=seed)
        with step(f"writing the export to {data_dir}"):
            write_export(tables, data_dir, fmt="parquet")
        with step("validating it against the data contract"):
            loaded = load_export(data_dir)
        _print_summary(loaded.tables)

        typer.echo("\n== train: LightGBM against the written rules, on a later test window ==")
        config = _training_config(settings, None)
        store = _store(settings)
        progress = Progress(5, "training")
        try:
            result = run_experiment(loaded.tables, config, store=store, on_step=progress)
        finally:
            progress.close()
        _print_train_result(result, config)

        test = result.split.test_as_ofs
        window = test[-8:] if len(test) > 8 else test
        typer.echo(
            f"\n== evaluate: the champion on the last {len(window)} weeks of the test window =="
        )
        progress = Progress(3, "evaluating")
        try:
            report = evaluate_registered(
                loaded.tables,
                config,
                store=store,
                ref="champion",
                date_from=window[0],
                date_to=window[-1],
                on_step=progress,
            )
        finally:
            progress.close()
        _print_evaluation(report)
        typer.echo(
            f"\nBrowse runs and models with: mlflow ui --backend-store-uri {settings.tracking_uri}"
        )

        latest = weekly_as_ofs(school_days(loaded.tables))[-1]
        typer.echo(f"\n== score: the weekly lists for the week of {latest} ==")
        with step(f"scoring every enrolled pupil as of {latest}"):
            weekly = run_weekly_job(settings, export_dir=data_dir, as_of=latest, capacity=None)
        _print_weekly(weekly)
        accounts = _demo_accounts(settings, latest)
        typer.echo("\ndemo users (new passwords each run):")
        for account in accounts:
            scope = account.class_id or account.school_id or "every school"
            typer.echo(f"  {account.username:<10} {account.password:<14} {account.role} ({scope})")
        if no_serve:
            return
        from serving.app import serve as run_server

        typer.echo(
            f"\nserving at http://{settings.serving.host}:{settings.serving.port} "
            "(API docs at /docs; Ctrl-C stops)"
        )
        run_server(settings)

    run_guarded(body)


def _demo_accounts(settings: Settings, as_of: date) -> list[Any]:
    from serving.services.demo import ensure_demo_accounts
    from serving.storage.db import make_engine, session_factory

    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine).begin() as session:
            return ensure_demo_accounts(session, as_of)
    finally:
        engine.dispose()


def main() -> None:  # pragma: no cover - console entry for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
