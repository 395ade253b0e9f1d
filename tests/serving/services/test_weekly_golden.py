"""The weekly batch, byte for byte: a golden file keeps refactors behaviour-preserving.

`baoxue score`'s function (`serving.services.weekly_lists.run_weekly_job`) runs two
consecutive weeks on a seeded synthetic county with a champion fitted here
deterministically (one LightGBM thread, `deterministic=True`, fixed seed, a calibrator
fitted on later weeks), registered in a real MLflow store in `tmp_path`. Compared with
the files under ``tests/serving/services/golden/``:

* every column of the ``weekly_scores`` table but ``created_at`` (a clock reading), rows
  ordered by ``id`` (the order they were stored in), floats exactly (``repr``);
* what `POST /v1/score` and a student's page get (`scoring.score_records`) for a few
  students, every field;
* every list file: a CSV by its bytes (SHA-256, with its rows for a readable diff), an
  XLSX by its cell values (their SHA-256: the zip carries timestamps, so its bytes change
  from run to run).

The default run uses a 600-pupil county and keeps the rows and the cell values in the
golden file, so a failure says which row or cell moved; the 3,000-pupil county the issue
names (#15) runs with ``-m slow`` and keeps digests only.

When a change is *meant* to alter the batch's output, regenerate and review the diff:

    BAOXUE_REGEN_GOLDEN=1 pytest -n 0 -m 'slow or not slow' \\
        tests/serving/services/test_weekly_golden.py

A golden file depends on LightGBM's and scikit-learn's arithmetic: a new version of
either that changes a float shows here first (regenerate after checking the change is
only that).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import mlflow
import pytest
from openpyxl import load_workbook
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine, text

from features.snapshot import build_snapshot
from features.sources import write_export
from features.synthetic import generate_county
from features.tables import RawTables
from models.calibration import Calibrator
from models.gbm import make_classifier
from models.risk_model import RiskModel
from serving.registry import ModelHolder
from serving.services.scoring import score_records, score_snapshot, to_dict
from serving.services.weekly_lists import run_weekly_job
from serving.settings import MlflowSettings, PathSettings, Settings, TrainingSettings
from training import track
from training.matrices import labelled_snapshots, school_days
from training.pipeline import build_contract
from training.splits import weekly_as_ofs

GOLDEN_DIR = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("BAOXUE_REGEN_GOLDEN") == "1"
SEED = 7
YEARS = 2
HORIZON = dt.timedelta(days=112)
WEEKS = (dt.date(2025, 5, 26), dt.date(2025, 6, 2))  # two school Mondays of the last term
CAPACITY_SHARE = 0.05
SKIPPED_COLUMNS = ("created_at",)  # a clock reading


def deterministic_model(county: RawTables) -> RiskModel:
    """A small LightGBM champion fitted the same way on every run and machine: the
    county's labelled rows of every school Monday whose outcome is known by the first
    scored week, the last 8 of them for a sigmoid calibration (strictly monotone, so the
    golden rows hold few ties); one thread, deterministic histograms."""
    weeks = weekly_as_ofs(school_days(county), every_days=7, weekday=0)
    weeks = [w for w in weeks if w + HORIZON <= WEEKS[0]]
    train_weeks, calibration_weeks = weeks[:-8], weeks[-8:]
    frame = labelled_snapshots(county, as_ofs=[*train_weeks, *calibration_weeks], horizon=HORIZON)
    contract = build_contract(frame, horizon_days=HORIZON.days)
    train = frame[frame["as_of"].dt.date.isin(train_weeks)]
    calibration = frame[frame["as_of"].dt.date.isin(calibration_weeks)]
    names = list(contract.feature_names)
    classifier = make_classifier(
        names,
        y=train["label"].to_numpy(),
        monotone=contract.monotone,
        seed=SEED,
        n_jobs=1,
        overrides={
            "n_estimators": 60,
            "min_child_samples": 40,
            "deterministic": True,
            "force_row_wise": True,
        },
    )
    classifier.fit(contract.matrix(train), train["label"].to_numpy())
    margin = classifier.predict(contract.matrix(calibration), raw_score=True)
    platt = LogisticRegression().fit(margin.reshape(-1, 1), calibration["label"].to_numpy())
    calibrator = Calibrator(
        method="sigmoid", a=-float(platt.coef_[0, 0]), b=-float(platt.intercept_[0])
    )
    return RiskModel.from_parts(classifier.booster_, calibrator, contract)


def register_champion(model: RiskModel, county: RawTables, home: Path) -> Settings:
    """Register `model` as the champion in a fresh MLflow store; settings pointing at it."""
    home.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    store = track.Store(
        tracking_uri=uri,
        registry_uri=uri,
        experiment="baoxue-golden",
        model_name="baoxue-risk",
        artifact_location=(home / "mlartifacts").as_uri(),
    )
    client = track.connect(store)
    assert model.contract is not None
    example = labelled_snapshots(county, as_ofs=[WEEKS[0] - HORIZON], horizon=HORIZON).head(5)
    with mlflow.start_run():
        _, version = track.log_risk_model(
            model,
            input_example=example.loc[
                :, ["student_id", "as_of", "school_id", "class_id", *model.contract.feature_names]
            ],
            model_name=store.model_name,
        )
    track.set_alias(client, store.model_name, track.CHAMPION, version)
    return Settings(
        paths=PathSettings(home=home / "service"),
        mlflow=MlflowSettings(tracking_uri=uri, model_name=store.model_name),
        training=TrainingSettings(capacity_share=CAPACITY_SHARE),
    )


def weekly_scores(database: Path) -> dict[str, Any]:
    """Every stored score row (all columns but `SKIPPED_COLUMNS`), in the order stored."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            result = connection.execute(text("SELECT * FROM weekly_scores ORDER BY id"))
            columns = [c for c in result.keys() if c not in SKIPPED_COLUMNS]
            rows = [[_plain(row[c]) for c in columns] for row in result.mappings()]
    finally:
        engine.dispose()
    return {"columns": columns, "rows": rows}


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):  # the JSON reasons column
        return json.loads(value)
    return value


def list_files(lists_dir: Path) -> dict[str, Any]:
    """Each list file by its path: a CSV's SHA-256 and rows, an XLSX's cell values."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in lists_dir.rglob("*") if p.is_file()):
        name = path.relative_to(lists_dir).as_posix()
        if path.suffix == ".csv":
            data = path.read_bytes()
            rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
            out[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": rows}
        elif path.suffix == ".xlsx":
            book = load_workbook(path, read_only=True)
            sheets = {
                sheet.title: [list(row) for row in sheet.iter_rows(values_only=True)]
                for sheet in book.worksheets
            }
            book.close()
            # the CSV beside it shows the same rows; here the cell values' digest suffices
            out[name] = {"cells_sha256": digest(sheets)}
        else:
            out[name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return out


def run_batch(n_students: int, tmp_path: Path) -> dict[str, Any]:
    """The two weeks' stored rows and list files, from a fresh database and lists folder."""
    county = generate_county(n_students=n_students, n_years=YEARS, seed=SEED)
    settings = register_champion(deterministic_model(county), county, tmp_path / "mlflow")
    export = write_export(county, tmp_path / "export", fmt="parquet")
    results = [
        run_weekly_job(settings, export_dir=export, as_of=week, capacity=None) for week in WEEKS
    ]
    assert [r.as_of for r in results] == list(WEEKS)
    assert all(0 < r.n_explained < r.n_students for r in results)
    return {
        "weekly_scores": weekly_scores(settings.paths.home / "baoxue.db"),
        "lists": list_files(settings.paths.lists),
        "scored": scored_students(settings, county),
    }


def scored_students(settings: Settings, county: RawTables) -> dict[str, Any]:
    """What `POST /v1/score` and a student's page get (`scoring.score_records`): every
    field of 25 students asked for by id, and of 10 scored without reasons."""
    loaded = ModelHolder.from_settings(settings).load()
    snapshot = build_snapshot(county, as_of=WEEKS[1])
    ids = sorted(snapshot["student_id"].astype(str))[::23][:25]
    asked = score_records(loaded, county, as_of=WEEKS[1], student_ids=ids)
    unexplained = score_snapshot(loaded, snapshot.head(10), explain=False)
    return {"rows": [to_dict(s) for s in [*asked, *unexplained]]}


def digest(part: Any) -> str:
    """SHA-256 of a JSON-able value (dates and the like as text)."""
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def dumps(golden: dict[str, Any]) -> str:
    """JSON with one stored row or one list file per line, so a diff shows what moved."""

    def line(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

    parts = []
    for key, value in golden.items():
        if key == "weekly_scores":
            rows = ",\n    ".join(line(row) for row in value["rows"])
            parts.append(
                f'"{key}": {{"columns": {line(value["columns"])}, "rows": [\n    {rows}]}}'
            )
        elif key == "scored":
            rows = ",\n    ".join(line(row) for row in value["rows"])
            parts.append(f'"{key}": {{"rows": [\n    {rows}]}}')
        elif key in ("lists", "lists_sha256"):
            files = ",\n    ".join(f"{line(name)}: {line(f)}" for name, f in value.items())
            parts.append(f'"{key}": {{\n    {files}}}')
        else:
            parts.append(f'"{key}": {line(value)}')
    return "{\n  " + ",\n  ".join(parts) + "\n}\n"


def check(golden_name: str, found: dict[str, Any], *, digests_only: bool) -> None:
    if digests_only:
        found = {
            "weekly_scores_sha256": digest(found["weekly_scores"]),
            "n_weekly_scores": len(found["weekly_scores"]["rows"]),
            "lists_sha256": {name: digest(file) for name, file in found["lists"].items()},
            "scored_sha256": digest(json.loads(dumps({"scored": found["scored"]}))),
        }
    # through JSON and back, so tuples, dates and floats compare as the golden file holds them
    found = json.loads(dumps(found))
    path = GOLDEN_DIR / golden_name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(found), encoding="utf-8")
        pytest.skip(f"regenerated {path.name}")
    assert path.is_file(), f"no golden file {path}; run with BAOXUE_REGEN_GOLDEN=1 to write it"
    golden = json.loads(path.read_text(encoding="utf-8"))
    if digests_only:
        assert found["n_weekly_scores"] == golden["n_weekly_scores"]
        assert found["weekly_scores_sha256"] == golden["weekly_scores_sha256"]
        assert found["lists_sha256"].keys() == golden["lists_sha256"].keys()
        moved = [n for n, d in found["lists_sha256"].items() if golden["lists_sha256"][n] != d]
        assert not moved, f"{len(moved)} list files differ, first {moved[:3]}"
        assert found["scored_sha256"] == golden["scored_sha256"]
        return
    stored, expected = found["weekly_scores"], golden["weekly_scores"]
    assert stored["columns"] == expected["columns"]
    assert len(stored["rows"]) == len(expected["rows"])
    for i, (row, want) in enumerate(zip(stored["rows"], expected["rows"], strict=True)):
        assert row == want, f"weekly_scores row {i} (id {want[0]}) differs"
    assert sorted(found["lists"]) == sorted(golden["lists"])
    for name, file in golden["lists"].items():
        assert found["lists"][name] == file, f"list file {name} differs"
    for i, (row, want) in enumerate(
        zip(found["scored"]["rows"], golden["scored"]["rows"], strict=True)
    ):
        assert row == want, f"scored student {i} differs"


def test_weekly_batch_matches_the_golden_file(tmp_path: Path) -> None:
    found = run_batch(600, tmp_path)
    stored = found["weekly_scores"]
    risk = [row[stored["columns"].index("risk_score")] for row in stored["rows"]]
    assert len(set(risk)) > 0.3 * len(risk)  # a model that ranks, not mostly a tie-break
    check("weekly_600.json", found, digests_only=False)


@pytest.mark.slow
def test_weekly_batch_on_3000_pupils_matches_the_golden_file(tmp_path: Path) -> None:
    check("weekly_3000.json", run_batch(3000, tmp_path), digests_only=True)
