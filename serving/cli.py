"""The `baoxue` command line: one entry point for every job.

Each command parses its options, calls one function of the jobs layer (`serving/jobs/`,
imported inside the command so that `baoxue --help` stays fast), and prints a short
summary. Bad input ends with a clear message and a non-zero exit code, never a traceback
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

from serving.jobs.common import JobFailed, OnStep
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


CommandFailed = JobFailed  # a failure the user can fix: its message, no traceback


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


class Console:
    """The jobs' `Reporter` on the terminal: steps, progress bars, lines, warnings."""

    step = staticmethod(step)

    @contextmanager
    def progress(self, steps: int, label: str) -> Iterator[OnStep]:
        bar = Progress(steps, label)
        try:
            yield bar
        finally:
            bar.close()

    def echo(self, text: str) -> None:
        typer.echo(text)

    def warn(self, message: str) -> None:
        typer.echo(f"warning: {message}", err=True)


console = Console()


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


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
    from serving.jobs import data, text

    if fmt not in ("csv", "parquet"):
        _fail("error: --format must be csv or parquet")

    def body() -> None:
        tables = data.synthesize(
            out,
            students=students,
            years=years,
            seed=seed,
            first_year=first_year,
            fmt=fmt,  # type: ignore[arg-type]
            report=console,
        )
        typer.echo(text.export_summary(tables))

    run_guarded(body)


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
    from serving.jobs import data, text

    def body() -> None:
        tables = data.validate(export_dir, report=console)
        typer.echo(f"{export_dir}: valid export")
        typer.echo(text.export_summary(tables))

    run_guarded(body)


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
    from serving.jobs import data

    def body() -> None:
        summary = data.import_oulad(src, out, fmt=fmt, report=console)  # type: ignore[arg-type]
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
    from serving.jobs.export import research_export

    settings = _settings()

    def body() -> None:
        manifest = research_export(
            settings,
            export_dir,
            out,
            date_from=_day(date_from),
            date_to=_day(date_to),
            horizon_days=horizon,
            report=console,
        )
        typer.echo(f"wrote {out}")
        for name, n in manifest["rows"].items():
            typer.echo(f"  {name:<16}{n:>10,} rows")
        typer.echo(
            f"  {manifest['n_students']:,} pupils, {manifest['n_positive']} "
            f"dropouts, {manifest['n_visit_led_returns']} visit-led returns"
        )

    run_guarded(body)


# --------------------------------------------------------------------------- models


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
    from serving.jobs import text
    from serving.jobs.train import train as run_train

    settings = _settings()

    def body() -> None:
        result, config = run_train(
            settings,
            export_dir,
            config_file=config_file,
            train_until=_day(train_until),
            test_to=_day(test_to),
            horizon_days=horizon,
            capacity_share=capacity_share,
            horizon_to_enrolment_end=to_enrolment_end or None,
            optuna_seconds=optuna_seconds,
            report=console,
        )
        typer.echo(text.train_result(result, config))

    run_guarded(body)


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

    from serving.jobs import text
    from serving.jobs.evaluate import evaluate as run_evaluate

    settings = _settings()

    def body() -> None:
        if date_from is None or date_to is None:
            raise CommandFailed("give the window with --from YYYY-MM-DD --to YYYY-MM-DD")
        result = run_evaluate(
            settings,
            export_dir,
            ref=model,
            date_from=date_from.date(),
            date_to=date_to.date(),
            config_file=config_file,
            capacity_share=capacity_share,
            horizon_to_enrolment_end=to_enrolment_end or None,
            with_interventions=with_interventions,
            report=console,
        )
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
            return
        typer.echo(text.evaluation(result))
        if with_interventions:
            typer.echo(text.visit_evaluation(result["with_interventions"]))

    run_guarded(body)


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
    from serving.jobs import text
    from serving.jobs.retrain import fairness_row
    from serving.jobs.retrain import retrain as run_retrain

    settings = _settings()

    def body() -> None:
        result = run_retrain(
            settings,
            export_dir,
            term=term,
            horizon_days=horizon,
            config_file=config_file,
            report=console,
        )
        typer.echo(text.retrain_result(result, fairness_row()))

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
    from serving.jobs import drift as drift_job

    settings = _settings()

    def body() -> None:
        outcome = drift_job.drift(
            settings,
            export_dir,
            date_from=date_from.date(),
            date_to=date_to.date(),
            reference_from=_day(reference_from),
            reference_to=_day(reference_to),
            model=model,
            out=out,
            report=console,
        )
        report = outcome.report
        counts = report.severity_counts()
        typer.echo("features: " + ", ".join(f"{n} {level}" for level, n in counts.items()))
        if report.score is not None:
            typer.echo(f"risk_score PSI {report.score.psi:.3f} ({report.score.severity})")
        for sentence in report.feed_sentences:
            typer.echo(f"warning: {sentence}")
        typer.echo(f"wrote {outcome.folder / 'report.md'}")
        if log_to_mlflow:
            typer.echo(f"MLflow run {drift_job.log_to_mlflow(settings, outcome)}")

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
    from serving.jobs import text
    from serving.jobs.weekly import score_week

    settings = _settings()

    def body() -> None:
        day = as_of.date() if as_of else last_monday(date.today())
        result = score_week(
            settings, as_of=day, export_dir=export_dir, capacity=capacity, report=console
        )
        typer.echo(text.weekly(result))
        _purge(settings)  # retention runs with every weekly batch

    run_guarded(body)


def _purge(settings: Settings) -> None:
    from serving.jobs import retention, text

    done = retention.purge(settings, today=date.today())
    typer.echo(text.purge(done, settings.retention.years))


retention_app = typer.Typer(help="Keep personal data no longer than needed.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("purge")
def retention_purge() -> None:
    """Blank visit notes and feedback comments and delete audit rows older than
    retention.years (default 3; BAOXUE_RETENTION__YEARS). Also runs after `baoxue score`."""
    settings = _settings()
    run_guarded(lambda: _purge(settings))


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
    from serving.jobs.users import add_user

    settings = _settings()

    def body() -> None:
        password = _read_password()
        user = add_user(settings, username, password, role, school, classes or (), staff_role)
        scope = user.school_id or "all schools"
        typer.echo(f"added {user.username} ({user.role}, {scope})")

    run_guarded(body)


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="Login name.")],
) -> None:
    """Change a user's password, read from standard input or asked for twice."""
    from serving.jobs.users import set_password

    settings = _settings()

    def body() -> None:
        set_password(settings, username, _read_password())
        typer.echo(f"changed the password of {username}")

    run_guarded(body)


@users_app.command("deactivate")
def users_deactivate(
    username: Annotated[str, typer.Argument(help="Login name.")],
) -> None:
    """Stop a user from logging in; their visits, feedback and audit rows stay."""
    from serving.jobs.users import deactivate

    settings = _settings()
    run_guarded(lambda: typer.echo(f"deactivated {deactivate(settings, username).username}"))


@users_app.command("reactivate")
def users_reactivate(
    username: Annotated[str, typer.Argument(help="Login name.")],
) -> None:
    """Let a deactivated user log in again."""
    from serving.jobs.users import reactivate

    settings = _settings()
    run_guarded(lambda: typer.echo(f"reactivated {reactivate(settings, username).username}"))


@users_app.command("set-role")
def users_set_role(
    username: Annotated[str, typer.Argument(help="Login name.")],
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
    """Give a user another role and scope (the old one is replaced); they log in again."""
    from serving.jobs.users import set_role

    settings = _settings()

    def body() -> None:
        user = set_role(settings, username, role, school, classes or (), staff_role)
        scope = user.school_id or "all schools"
        typer.echo(f"{user.username} is now {user.role} ({scope})")

    run_guarded(body)


@users_app.command("list")
def users_list(
    school: Annotated[str | None, typer.Option("--school", help="Only this school's.")] = None,
    inactive: Annotated[bool, typer.Option("--all", help="Also list deactivated users.")] = False,
) -> None:
    """List users: username, role, school, classes (and 'inactive' for deactivated ones)."""
    from serving.jobs.users import list_users

    settings = _settings()

    def body() -> None:
        for user in list_users(settings, school, inactive):
            scope = user.school_id or "all schools"
            classes = ",".join(user.class_ids) or "-"
            state = "" if user.active else " inactive"
            typer.echo(f"{user.username:<20} {user.role:<14} {scope:<12} {classes}{state}")

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
    from serving.jobs.demo import demo as run_demo

    settings = _settings()

    def body() -> None:
        accounts = run_demo(settings, students=students, years=years, seed=seed, report=console)
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


def main() -> None:  # pragma: no cover - console entry for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
