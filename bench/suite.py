"""`baoxue bench`: our figures against references measured in the same run, same data.

Absolute times on a shared 2-core machine are noisy; the ratios are what we compare.
Each benchmark gives one or more `Row`s: our figure, the reference's, their ratio, the
goal and whether it is met.

a. ``snapshot``: the attendance part of the as-of snapshot (`attendance_features` for the
   enrolled population) vs a hand-written DuckDB query over Parquet computing the same
   window features (`bench.attendance_sql`); values must be identical; peak memory
   (resident, above the process's level before, sampled every 5 ms) <= 1 GB.
b. ``weekly``: the weekly batch's scoring (scores for everyone, reasons for those the
   lists show: high and medium tiers and ladder alerts) vs raw
   ``booster.predict(X, pred_contrib=True)`` for all students on the same matrix.
c. ``http``: one student's score + reasons through ``POST /v1/score`` (records as JSON,
   bearer token, scope check, audit row; `baoxue serve` under uvicorn on loopback) at
   concurrency 16 vs a minimal FastAPI endpoint doing only predict + pred_contrib
   (`bench.minimal_app`), and vs ``mlflow models serve`` of the same registered model.
d. ``train``: our model fit (`models.gbm.make_classifier` + `fit_classifier`, the
   contract's monotone constraints) vs ``lightgbm.train`` with the same parameters and
   the same number of trees on the same matrix.
e. ``startup``: seconds from starting `baoxue serve` to the first answered score, vs
   the minimal app's start to its first answer.

Data: a synthetic county (`features.synthetic.generate_county`) of N pupils over one
school year, as of its last weekly as_of. The model is fitted on labelled weekly
snapshots (dropout within 90 days) and registered as champion in a local MLflow store
in the work folder.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")

BENCHMARKS = ("snapshot", "weekly", "http", "train", "startup")
LETTERS = dict(zip("abcde", BENCHMARKS, strict=True))
MODEL_NAME = "baoxue-risk"
PASSWORD = "bench password 0123456789"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
TREES = 100
HORIZON_DAYS = 90
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table: ours against the reference, and the goal."""

    bench: str
    metric: str
    ours: float
    reference: float
    reference_name: str
    ratio: float  # ours / reference (times: lower is better; rates: higher is better)
    goal: str
    met: bool | None
    note: str = ""


@dataclass
class Report:
    """Everything one `baoxue bench` run measured."""

    n_students: int
    as_of: str
    cores: int
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_students": self.n_students,
            "as_of": self.as_of,
            "cores": self.cores,
            "rows": [asdict(r) for r in self.rows],
            "info": self.info,
        }


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cells(row: Row) -> list[str]:
    met = "—" if row.met is None else ("yes" if row.met else "NO")
    ratio = "—" if math.isnan(row.ratio) else f"{row.ratio:.2f}x"
    return [
        row.bench,
        row.metric,
        _fmt(row.ours),
        f"{_fmt(row.reference)} ({row.reference_name})",
        ratio,
        row.goal,
        met,
    ]


HEADER = ["benchmark", "metric", "ours", "reference (what)", "ratio", "goal", "met"]


def format_table(report: Report) -> str:
    """The rows as an aligned text table, with the notes below."""
    lines = [HEADER, *(_cells(r) for r in report.rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [
        f"baoxue bench: {report.n_students:,} pupils, as of {report.as_of}, "
        f"{report.cores} cores (ratio = ours / reference)",
        "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    for cells in lines[1:]:
        text.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    notes = [f"  {r.bench} / {r.metric}: {r.note}" for r in report.rows if r.note]
    if notes:
        text += ["", "notes:", *notes]
    met = [r.met for r in report.rows if r.met is not None]
    text += ["", f"goals met: {sum(met)} of {len(met)}"]
    return "\n".join(text)


def format_markdown(report: Report) -> str:
    rows = [HEADER, ["---"] * len(HEADER), *(_cells(r) for r in report.rows)]
    text = [
        f"**baoxue bench**: {report.n_students:,} pupils, as of {report.as_of}, "
        f"{report.cores} cores (ratio = ours / reference)",
        "",
        *("| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows),
    ]
    notes = [f"- {r.bench} / {r.metric}: {r.note}" for r in report.rows if r.note]
    if notes:
        text += ["", *notes]
    return "\n".join(text) + "\n"


def write_report(report: Report, out: Path) -> list[Path]:
    """Write `out` as JSON (`.json`) or Markdown (`.md`), and the other format beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    json_path.write_text(json.dumps(report.to_dict(), indent=1, default=str), encoding="utf-8")
    md_path.write_text(format_markdown(report), encoding="utf-8")
    return [json_path, md_path]


# --------------------------------------------------------------------------- measuring


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float  # resident memory above the level before, at its highest
    result: Any
    cpu_seconds: float = float("nan")  # this process's CPU time (all threads)


def measure(fn: Callable[[], T], *, repeat: int = 1) -> Measured:
    """Best time of `repeat` runs and the highest resident-memory rise of any run."""
    best, best_cpu, peak_mb, result = math.inf, math.nan, 0.0, None
    for _ in range(repeat):
        gc.collect()
        baseline = rss_bytes()
        peak = [baseline]
        done = threading.Event()

        def sample(peak: list[int] = peak, done: threading.Event = done) -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes())
                time.sleep(0.005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        done.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        if seconds < best:
            best, best_cpu = seconds, cpu
        peak_mb = max(peak_mb, (peak[0] - baseline) / 2**20)
    return Measured(best, peak_mb, result, best_cpu)


def compare(
    ours: Callable[[], Any], reference: Callable[[], Any], *, repeat: int = 1
) -> tuple[Measured, Measured]:
    """Measure both `repeat` times, alternating which goes first, each its best time:
    on a shared machine a burst of someone else's work then hits both alike."""
    runs: dict[str, list[Measured]] = {"ours": [], "reference": []}
    for i in range(repeat):
        order = (("ours", ours), ("reference", reference))
        for name, fn in order if i % 2 == 0 else order[::-1]:
            runs[name].append(measure(fn))

    def best(ms: list[Measured]) -> Measured:
        fastest = min(ms, key=lambda m: m.seconds)
        return Measured(
            fastest.seconds, max(m.peak_mb for m in ms), fastest.result, fastest.cpu_seconds
        )

    return best(runs["ours"]), best(runs["reference"])


class Profiles:
    """pyinstrument profiles of our side of each benchmark, when a folder is given."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.folder is None:
            yield
            return
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{name}.txt").write_text(
                profiler.output_text(unicode=True, show_all=False), encoding="utf-8"
            )


def _ratio(ours: float, reference: float) -> float:
    if not reference or math.isnan(reference) or math.isnan(ours):
        return float("nan")
    return ours / reference


# --------------------------------------------------------------------------- the data


class Workbench:
    """The county, its snapshot and a registered model, built on first use."""

    def __init__(self, n_students: int, work: Path, *, seed: int = 7, log=print) -> None:
        self.n_students = n_students
        self.work = work
        self.seed = seed
        self.log = log
        self.info: dict[str, Any] = {}
        self.weekly: Any = None  # (scored students, tiers) of the weekly scoring

    @cached_property
    def tables(self) -> Any:
        from features.synthetic import generate_county

        t0 = time.perf_counter()
        tables = generate_county(n_students=self.n_students, n_years=1, seed=self.seed)
        self.info["county_seconds"] = time.perf_counter() - t0
        self.info["attendance_rows"] = len(tables.attendance)
        self.log(
            f"county: {len(tables.students):,} pupils, {len(tables.attendance):,} register "
            f"rows (non-present days), {tables.calendar['date'].nunique()} school days, "
            f"{len(tables.schools)} schools ({self.info['county_seconds']:.1f} s)"
        )
        return tables

    @cached_property
    def weekly_as_ofs(self) -> list[dt.date]:
        from training.matrices import school_days
        from training.splits import weekly_as_ofs

        return list(weekly_as_ofs(school_days(self.tables)))

    @cached_property
    def as_of(self) -> dt.date:
        return self.weekly_as_ofs[-1]

    @cached_property
    def population(self) -> pd.DataFrame:
        from features.enrolment import enrolled_population

        return enrolled_population(self.tables, as_ofs=[self.as_of])

    @cached_property
    def spells(self) -> pd.DataFrame:
        from features.enrolment import active_spells

        return active_spells(self.tables)

    @cached_property
    def snapshot(self) -> pd.DataFrame:
        from features.snapshot import build_snapshot

        m = measure(lambda: build_snapshot(self.tables, as_of=self.as_of))
        self.info["snapshot_seconds"] = m.seconds
        self.info["snapshot_peak_mb"] = m.peak_mb
        self.info["snapshot_students_per_s"] = len(m.result) / m.seconds
        self.log(f"snapshot: {len(m.result):,} rows in {m.seconds:.2f} s")
        return m.result

    # -- the model -----------------------------------------------------------------

    @cached_property
    def training(self) -> tuple[pd.DataFrame, np.ndarray, Any, str]:
        """(X, y, contract, label note) of labelled weekly snapshots."""
        from training.matrices import labelled_snapshots, observed_until
        from training.pipeline import build_contract

        horizon = dt.timedelta(days=HORIZON_DAYS)
        last = observed_until(self.tables)
        observable = [d for d in self.weekly_as_ofs if d + horizon <= last]
        as_ofs = (observable or self.weekly_as_ofs[:1])[::4][:4]
        frame = labelled_snapshots(self.tables, as_ofs=as_ofs, horizon=horizon)
        contract = build_contract(frame, horizon_days=HORIZON_DAYS)
        X = frame.loc[:, list(contract.feature_names)].astype(np.float64)
        y = frame["label"].to_numpy(dtype=np.int64)
        note = f"dropout within {HORIZON_DAYS} days, {int(y.sum())} positive rows"
        if 0 < y.sum() < len(y):
            return X, y, contract, note
        # Too small a county for a dropout: a stand-in label so the timing still runs.
        unexcused = X["unexcused_30d"].to_numpy()
        y = (unexcused >= max(1.0, float(np.quantile(unexcused, 0.9)))).astype(np.int64)
        if y.sum() in (0, len(y)):
            y = (np.arange(len(y)) % 10 == 0).astype(np.int64)
        return X, y, contract, "no dropout in this county; stand-in label (absences)"

    def fit_ours(self) -> Any:
        from models.gbm import fit_classifier, make_classifier

        X, y, contract, _ = self.training
        clf = make_classifier(
            list(contract.feature_names),
            y=y,
            monotone=contract.monotone,
            seed=0,
            n_jobs=2,
            overrides={"n_estimators": TREES},
        )
        return fit_classifier(clf, X, y)

    @cached_property
    def classifier(self) -> Any:
        return self.fit_ours()

    @cached_property
    def loaded(self) -> Any:
        """The fitted model, calibrated, registered as champion; a `LoadedModel`."""
        import mlflow

        from models.calibration import fit_calibrator
        from models.risk_model import RiskModel
        from serving.registry import LoadedModel
        from training import track

        X, y, contract, _ = self.training
        clf = self.classifier
        calibrator = fit_calibrator(clf, X, y)
        model = RiskModel.from_parts(clf.booster_, calibrator, contract)
        store = self.store
        client = track.connect(store)
        example = self.snapshot.loc[
            :, ["student_id", "as_of", "school_id", "class_id", *contract.feature_names]
        ].head(5)
        with mlflow.start_run(run_name="bench"):
            _, version = track.log_risk_model(
                model, input_example=example, model_name=store.model_name
            )
        track.set_alias(client, store.model_name, track.CHAMPION, version)
        return LoadedModel(
            model=model,
            name=store.model_name,
            version=version,
            source="registry",
            loaded_at=dt.datetime.now(dt.UTC),
            trained_at=None,
            data_fingerprint=None,
        )

    @cached_property
    def store(self) -> Any:
        from training.track import Store

        return Store(
            tracking_uri=self.tracking_uri,
            registry_uri=self.tracking_uri,
            experiment="baoxue-bench",
            model_name=MODEL_NAME,
            artifact_location=(self.work / "mlartifacts").as_uri(),
        )

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.work / 'mlflow.db'}"

    @cached_property
    def matrix(self) -> pd.DataFrame:
        contract = self.loaded.model.contract
        return contract.matrix(self.snapshot)

    # -- the service ------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.work / "home"

    def service_env(self) -> dict[str, str]:
        return {
            "BAOXUE_PATHS__HOME": str(self.home),
            "BAOXUE_MLFLOW__TRACKING_URI": self.tracking_uri,
            "BAOXUE_MLFLOW__REGISTRY_URI": self.tracking_uri,
            "BAOXUE_MLFLOW__MODEL_NAME": MODEL_NAME,
            "BAOXUE_SERVING__SECRET_KEY": SECRET,
            "BAOXUE_CONFIG": str(self.work / "no-baoxue.toml"),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.tracking_uri,
            "MLFLOW_LOGGING_LEVEL": "WARNING",
            "GIT_PYTHON_REFRESH": "quiet",
        }

    @cached_property
    def student(self) -> tuple[str, str]:
        """(student_id, school_id) of the scored student: the middle of the snapshot."""
        row = self.snapshot.iloc[len(self.snapshot) // 2]
        return str(row["student_id"]), str(row["school_id"])

    @cached_property
    def user(self) -> str:
        """A school_admin of the student's school, in the service database."""
        from serving.app import add_user_from_cli
        from serving.services.users import UsernameTaken
        from serving.settings import MlflowSettings, PathSettings, ServingSettings, Settings

        settings = Settings(
            paths=PathSettings(home=self.home),
            mlflow=MlflowSettings(tracking_uri=self.tracking_uri, model_name=MODEL_NAME),
            serving=ServingSettings(secret_key=SECRET),
        )
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            add_user_from_cli(settings, "bench_admin", PASSWORD, "school_admin", self.student[1])
        except UsernameTaken:  # a --work folder used before: same county, same user
            pass
        return "bench_admin"

    @cached_property
    def stored_week(self) -> int:
        """The week's scores saved in the service database (as the weekly batch stores
        them; the list files are not written). Returns how many."""
        from serving.services.weekly_lists import ranks_in_school, weekly_rows
        from serving.storage import queries
        from serving.storage.db import make_engine, session_factory

        self.user  # noqa: B018 - migrates the database
        if self.weekly is None:
            self.weekly = weekly_scoring(self.loaded, self.snapshot)
        scored, tiers = self.weekly
        ranks = ranks_in_school(scored)
        engine = make_engine(f"sqlite:///{self.home / 'baoxue.db'}")
        t0 = time.perf_counter()
        try:
            sessions = session_factory(engine)
            with sessions.begin() as session:
                run = queries.start_run(
                    session, as_of=self.as_of, model_version=self.loaded.version
                )
            with sessions.begin() as session:
                n = queries.save_weekly_scores(session, run.id, weekly_rows(scored, tiers, ranks))
                queries.finish_run(session, run.id, n_students=n)
        finally:
            engine.dispose()
        self.info["store_week_seconds"] = time.perf_counter() - t0
        return n

    @cached_property
    def score_body(self) -> dict[str, Any]:
        """`POST /v1/score` for the one student: their records and their school's days."""
        student_id, _ = self.student
        return {
            "as_of": self.as_of.isoformat(),
            "student_ids": [student_id],
            "tables": records_json(self.tables, student_id),
        }


def records_json(tables: Any, student_id: str) -> dict[str, list[dict[str, Any]]]:
    """One student's rows of every table as JSON rows (with their schools' days)."""
    from features.sources import json_records
    from features.tables import ALL_TABLES

    schools = set(tables.enrolments.loc[tables.enrolments["student_id"] == student_id, "school_id"])
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ALL_TABLES:
        frame = getattr(tables, name)
        if frame is None:
            continue
        if "student_id" in frame.columns:
            frame = frame[frame["student_id"] == student_id]
        elif "school_id" in frame.columns:
            frame = frame[frame["school_id"].isin(schools)]
        out[name] = json_records(frame)
    return out


# --------------------------------------------------------------------------- benchmarks


def bench_snapshot(wb: Workbench, profile: Profiles, repeat: int) -> list[Row]:
    from bench.attendance_sql import WINDOW_COLUMNS, reference_attendance, write_inputs
    from features.attendance import attendance_features

    tables, population, spells = wb.tables, wb.population, wb.spells
    files = write_inputs(
        wb.work / "reference",
        population=population,
        spells=spells,
        calendar=tables.calendar,
        attendance=tables.attendance,
    )
    with profile("a_snapshot_attendance"):
        attendance_features(tables, population=population, spells=spells)
    ours, ref = compare(
        lambda: attendance_features(tables, population=population, spells=spells),
        lambda: reference_attendance(files),
        repeat=max(repeat, 2),
    )
    different = [
        c
        for c in WINDOW_COLUMNS
        if not np.allclose(
            ours.result[c].to_numpy(np.float64), ref.result[c].to_numpy(np.float64), equal_nan=True
        )
    ]
    same_rows = np.array_equal(
        ours.result["student_id"].astype(str).to_numpy(), ref.result["student_id"].to_numpy()
    )
    identical = same_rows and not different
    check = (
        f"values identical on {len(WINDOW_COLUMNS)} window columns x {len(population):,} pupils"
        if identical
        else f"VALUES DIFFER: {', '.join(different) or 'row order'}"
    )
    wb.info["attendance_students_per_s"] = len(population) / ours.seconds
    wb.info["attendance_peak_mb"] = ours.peak_mb
    duck = "DuckDB SQL on Parquet"
    ratio = _ratio(ours.seconds, ref.seconds)
    return [
        Row(
            "a. snapshot (attendance)",
            "seconds",
            ours.seconds,
            ref.seconds,
            duck,
            ratio,
            "<= 1.5x, identical",
            ratio <= 1.5 and identical,
            f"{check}; ours computes all 27 attendance features (term ones too), the "
            "reference the 21 window ones",
        ),
        Row(
            "a. snapshot (attendance)",
            "peak MB",
            ours.peak_mb,
            ref.peak_mb,
            duck,
            _ratio(ours.peak_mb, ref.peak_mb),
            "<= 1024 MB",
            ours.peak_mb <= 1024,
        ),
    ]


def weekly_scoring(loaded: Any, snapshot: pd.DataFrame, capacity_share: float = 0.05) -> Any:
    """What the weekly batch does after the snapshot (`weekly_lists.score_schools`):
    score everyone, tier each school, then explain those the lists show."""
    from serving.services.weekly_lists import score_schools

    week = score_schools(loaded, snapshot, capacity=None, capacity_share=capacity_share)
    return week.students, week.tiers


def bench_weekly(wb: Workbench, profile: Profiles, repeat: int) -> list[Row]:
    loaded, snapshot, X = wb.loaded, wb.snapshot, wb.matrix
    booster = loaded.model.booster
    n = len(snapshot)
    with profile("b_weekly_scoring"):
        wb.weekly = weekly_scoring(loaded, snapshot)  # imports and caches warmed up too
    ours, ref = compare(
        lambda: weekly_scoring(loaded, snapshot),
        lambda: booster.predict(X, pred_contrib=True),
        repeat=max(repeat, 2),
    )
    predict = measure(lambda: booster.predict(X, raw_score=True), repeat=repeat)
    n_explained = sum(1 for s in ours.result[0] if s.explained)
    wb.info.update(
        {
            "weekly_students_per_s": n / ours.seconds,
            "weekly_explained": n_explained,
            "weekly_peak_mb": ours.peak_mb,
            "predict_rows_per_s": n / predict.seconds,
            "pred_contrib_rows_per_s": n / ref.seconds,
            "trees": booster.num_trees(),
        }
    )
    ours_rate, ref_rate = n / ours.seconds, n / ref.seconds
    ratio = _ratio(ours_rate, ref_rate)
    return [
        Row(
            "b. weekly batch scoring",
            "pupils/s",
            ours_rate,
            ref_rate,
            "predict(pred_contrib) all",
            ratio,
            ">= 1x",
            ratio >= 1.0,
            f"ours scores all {n:,} and explains the {n_explained:,} the lists show "
            f"(high/medium tiers, ladder); predict alone {n / predict.seconds:,.0f} rows/s",
        )
    ]


def bench_train(wb: Workbench, profile: Profiles, repeat: int) -> list[Row]:
    import lightgbm as lgb

    X, y, _, label_note = wb.training
    params = dict(wb.classifier.booster_.params)
    for key in ("num_iterations", "n_estimators", "num_boost_round", "num_trees"):
        params.pop(key, None)

    def plain() -> Any:
        return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=TREES)

    with profile("d_train"):
        wb.fit_ours()
    ours, ref = compare(wb.fit_ours, plain, repeat=max(repeat, 2))
    same = np.allclose(
        ours.result.booster_.predict(X.iloc[:2000], raw_score=True),
        ref.result.predict(X.iloc[:2000], raw_score=True),
    )
    wb.info["train_rows"] = len(X)
    wb.info["train_rows_per_s"] = len(X) / ours.seconds
    ratio = _ratio(ours.seconds, ref.seconds)
    return [
        Row(
            "d. training",
            "seconds",
            ours.seconds,
            ref.seconds,
            "lightgbm.train",
            ratio,
            "<= 1.3x",
            ratio <= 1.3,
            f"{len(X):,} rows x {X.shape[1]} features, {TREES} trees; CPU seconds "
            f"{ours.cpu_seconds:.1f} ours, {ref.cpu_seconds:.1f} reference; "
            f"{'same model' if same else 'MODELS DIFFER'}; label: {label_note}",
        )
    ]


def _token(client: Any, username: str) -> str:
    response = client.post(
        "/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _our_server(wb: Workbench, name: str) -> Any:
    from bench.http_load import Server, free_port

    baoxue = Path(sys.executable).with_name("baoxue")
    command = [str(baoxue)] if baoxue.exists() else [sys.executable, "-m", "serving.cli"]
    port = free_port()
    return Server(
        [*command, "serve", "--port", str(port)],
        port,
        wb.service_env(),
        wb.work / "logs" / f"{name}.log",
    )


def _minimal_server(wb: Workbench) -> Any:
    from bench.http_load import Server, free_port

    folder = wb.work / "minimal"
    folder.mkdir(parents=True, exist_ok=True)
    wb.loaded.model.booster.save_model(str(folder / "booster.txt"))
    np.save(folder / "matrix.npy", wb.matrix.to_numpy(np.float64))
    port = free_port()
    root = str(Path(__file__).resolve().parent.parent)
    return Server(
        [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port)]
        + ["--log-level", "warning"],
        port,
        {
            "BAOXUE_BENCH_MODEL": str(folder / "booster.txt"),
            "BAOXUE_BENCH_MATRIX": str(folder / "matrix.npy"),
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        },
        wb.work / "logs" / "minimal.log",
    )


def _scored(client: Any, token: str, body: dict[str, Any]) -> bool:
    response = client.post("/v1/score", json=body, headers={"Authorization": f"Bearer {token}"})
    return bool(response.status_code == 200)


def start_ours(wb: Workbench, name: str) -> tuple[Any, float, str]:
    """Start `baoxue serve`; (server, seconds to the first answered score, token)."""
    user, body = wb.user, wb.score_body
    wb.loaded  # noqa: B018 - the champion must be registered first
    server = _our_server(wb, name).start()
    token: list[str] = []

    def probe(client: Any) -> bool:
        if not token:
            if client.get("/health").status_code >= 500:
                return False
            token.append(_token(client, user))
        return _scored(client, token[0], body)

    try:
        seconds = server.wait(probe, timeout=180)
    except BaseException:
        server.stop()
        raise
    return server, seconds, token[0]


def bench_startup(wb: Workbench, profile: Profiles, repeat: int) -> list[Row]:
    """e: `baoxue serve` to the first answered score, cold (no local model cache: the
    champion comes from the registry) and as a restart (the cache of the first start is
    served at once and the registry is asked in the background)."""
    from bench.http_load import ServerFailed

    shutil.rmtree(wb.home / "model-cache", ignore_errors=True)
    try:
        server, cold, _ = start_ours(wb, "startup")
        server.stop()
        server, warm, _ = start_ours(wb, "restart")
        server.stop()
    except ServerFailed as exc:
        return [_failed("e. start-up to first score", "seconds", str(exc), "<= 5 s")]
    minimal = _minimal_server(wb).start()
    try:
        ref = minimal.wait(lambda c: c.get("/score/0").status_code == 200, timeout=120)
    finally:
        minimal.stop()
    wb.info["startup_seconds"] = cold
    wb.info["restart_seconds"] = warm
    what = "from starting `baoxue serve` to a 200 from POST /v1/score, login included"
    return [
        Row(
            "e. start-up to first score",
            "seconds",
            cold,
            ref,
            "minimal app start",
            _ratio(cold, ref),
            "<= 5 s",
            cold <= 5.0,
            f"first start, no model cache (registry load, migrations): {what}",
        ),
        Row(
            "e. restart to first score",
            "seconds",
            warm,
            ref,
            "minimal app start",
            _ratio(warm, ref),
            "<= 5 s",
            warm <= 5.0,
            f"restart with the model cache, registry asked in the background: {what}",
        ),
    ]


def _failed(bench: str, metric: str, why: str, goal: str) -> Row:
    return Row(bench, metric, float("nan"), float("nan"), "-", float("nan"), goal, False, why)


def _mlflow_serve(wb: Workbench, seconds: float, concurrency: int) -> tuple[float, float, str]:
    """(req/s, p99 ms, note) of `mlflow models serve` of the champion; NaN if it fails."""
    from bench.http_load import Server, ServerFailed, free_port, load

    mlflow_cli = Path(sys.executable).with_name("mlflow")
    port = free_port()
    env = wb.service_env()
    # mlflow starts `uvicorn` by name: the environment's scripts must be on PATH.
    env["PATH"] = os.pathsep.join([str(mlflow_cli.parent), os.environ.get("PATH", "")])
    server = Server(
        [str(mlflow_cli), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion"]
        + ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local"],
        port,
        env,
        wb.work / "logs" / "mlflow-serve.log",
    )
    row = wb.snapshot.loc[
        wb.snapshot["student_id"] == wb.student[0],
        ["student_id", "as_of", "school_id", "class_id", *wb.loaded.model.contract.feature_names],
    ].copy()
    row["as_of"] = row["as_of"].dt.strftime("%Y-%m-%d")
    body = {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
    try:
        with server.start():
            server.wait(lambda c: c.get("/ping").status_code == 200, timeout=180)
            result = load(
                server.base_url,
                lambda i: {"method": "POST", "url": "/invocations", "json": body},
                concurrency=concurrency,
                seconds=seconds,
                warmup=3,
            )
    except ServerFailed as exc:
        last = str(exc).strip().splitlines()[-1][-300:]
        return float("nan"), float("nan"), f"mlflow models serve did not start: {last}"
    if result.errors or not result.requests:
        return float("nan"), float("nan"), f"mlflow models serve failed: {result.first_error}"
    return result.rps, result.percentile(99), ""


def _load_rows(
    label: str,
    what: str,
    ours: Any,
    ref: Any,
    ml_rps: float,
    ml_note: str,
) -> list[Row]:
    ok = ours.errors == 0 and ours.requests > 0
    errors = f"; {ours.errors} errors, first: {ours.first_error}" if ours.errors else ""
    ratio = _ratio(ours.rps, ref.rps)
    p99, ref_p99 = ours.percentile(99), ref.percentile(99)
    ml_ratio = _ratio(ours.rps, ml_rps)
    return [
        Row(label, "req/s", ours.rps, ref.rps, "minimal FastAPI", ratio, ">= 0.5x",
            ok and ratio >= 0.5, what + errors),
        Row(label, "p99 ms", p99, ref_p99, "minimal FastAPI", _ratio(p99, ref_p99),
            "<= 50 ms", ok and p99 <= 50.0, f"p50 {ours.percentile(50):.1f} ms"),
        Row(label, "req/s", ours.rps, ml_rps, "mlflow models serve", ml_ratio, ">= 8x",
            ok and not math.isnan(ml_ratio) and ml_ratio >= 8.0, ml_note),
    ]  # fmt: skip


def bench_http(
    wb: Workbench, profile: Profiles, repeat: int, *, seconds: float = 5.0, concurrency: int = 16
) -> list[Row]:
    from bench.http_load import ServerFailed, load

    body = wb.score_body
    student_id = wb.student[0]
    wb.stored_week  # noqa: B018 - the student page reads the stored week
    try:
        server, _, token = start_ours(wb, "http")
    except ServerFailed as exc:
        return [_failed("c. HTTP", "req/s", str(exc), ">= 0.5x")]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        page = load(
            server.base_url,
            lambda i: {"method": "GET", "url": f"/v1/students/{student_id}", "headers": headers},
            concurrency=concurrency,
            seconds=seconds,
        )
        posted = load(
            server.base_url,
            lambda i: {"method": "POST", "url": "/v1/score", "json": body, "headers": headers},
            concurrency=concurrency,
            seconds=seconds,
            warmup=4,
        )
    finally:
        server.stop()
    n_rows = len(wb.matrix)
    minimal = _minimal_server(wb).start()
    try:
        minimal.wait(lambda c: c.get("/score/0").status_code == 200, timeout=120)
        ref = load(
            minimal.base_url,
            lambda i: {"method": "GET", "url": f"/score/{(i * 7919) % n_rows}"},
            concurrency=concurrency,
            seconds=seconds,
        )
    finally:
        minimal.stop()
    ml_rps, ml_p99, ml_note = _mlflow_serve(wb, seconds, concurrency)
    ml_note = ml_note or f"mlflow: p99 {ml_p99:.0f} ms (1 snapshot row in, score + reasons out)"
    wb.info.update(
        {
            "http_page_rps": page.rps,
            "http_page_p99_ms": page.percentile(99),
            "http_score_rps": posted.rps,
            "http_score_p50_ms": posted.percentile(50),
            "http_score_p99_ms": posted.percentile(99),
            "minimal_rps": ref.rps,
            "minimal_p99_ms": ref.percentile(99),
            "mlflow_rps": ml_rps,
            "mlflow_p99_ms": ml_p99,
        }
    )
    n_posted = sum(len(v) for v in body["tables"].values())
    common = f"school_admin token, scope check, audit row, concurrency {concurrency}"
    return [
        *_load_rows(
            "c1. student page HTTP",
            f"GET /v1/students/{{id}}: the stored week's score + reasons, history; {common}",
            page,
            ref,
            ml_rps,
            ml_note,
        ),
        *_load_rows(
            "c2. score from records HTTP",
            f"POST /v1/score, 1 pupil's records ({n_posted} rows) validated, snapshot built, "
            f"scored and explained; {common}",
            posted,
            ref,
            ml_rps,
            ml_note,
        ),
    ]


RUNNERS: dict[str, Callable[..., list[Row]]] = {
    "snapshot": bench_snapshot,
    "weekly": bench_weekly,
    "http": bench_http,
    "train": bench_train,
    "startup": bench_startup,
}


def parse_only(only: str | None) -> list[str]:
    """`--only` (names or letters a-e, comma-separated) -> benchmark names in order."""
    if not only:
        return list(BENCHMARKS)
    wanted = set()
    for part in only.split(","):
        name = LETTERS.get(part.strip().lower(), part.strip().lower())
        if name not in BENCHMARKS:
            raise ValueError(
                f"--only {part.strip()!r}: choose from {', '.join(BENCHMARKS)} (or a-e)"
            )
        wanted.add(name)
    return [b for b in BENCHMARKS if b in wanted]


def run_bench(
    n_students: int,
    *,
    only: Sequence[str] = BENCHMARKS,
    work: Path | None = None,
    seconds: float = 5.0,
    profile_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the benchmarks named in `only` on a fresh synthetic county of `n_students`."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    own = work is None
    folder = Path(tempfile.mkdtemp(prefix="baoxue-bench-")) if work is None else work
    folder.mkdir(parents=True, exist_ok=True)
    repeat = 3 if n_students <= 20_000 else 1
    try:
        wb = Workbench(n_students, folder.resolve(), log=log)
        report = Report(n_students=n_students, as_of=str(wb.as_of), cores=os.cpu_count() or 0)
        profiles = Profiles(profile_dir)
        for name in only:
            log(f"running {name} ...")
            started = time.perf_counter()
            try:
                if name == "http":
                    rows = bench_http(wb, profiles, repeat, seconds=seconds)
                else:
                    rows = RUNNERS[name](wb, profiles, repeat)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark, not the table
                rows = [_failed(name, "-", f"failed: {type(exc).__name__}: {exc}", "-")]
            report.rows.extend(rows)
            log(f"  {name} done in {time.perf_counter() - started:.1f} s")
        report.info = dict(wb.info)
        return report
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
