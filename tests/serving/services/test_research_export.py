"""`baoxue export research`: a real export folder, a migrated SQLite database with
feedback and interventions written through the service's queries, the CLI end to end.
No pupil id, user id or note may appear in the files or the log; a failure leaves no
folder behind."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app
from serving.services.research_export import (
    ExportExists,
    read_feedback,
    read_interventions,
    write_research_export,
)
from serving.services.users import add_user
from serving.settings import get_settings
from serving.storage import queries
from serving.storage.db import make_engine, migrate, session_factory

runner = CliRunner()
NOTE = "NOTE-SECRET 奶奶生病"
COMMENT = "COMMENT-SECRET 不该预警"
FROM, TO = "2023-11-06", "2023-11-27"


@pytest.fixture(scope="module")
def county():
    from features.synthetic import generate_county

    return generate_county(n_students=300, n_years=1, seed=4)


@pytest.fixture(scope="module")
def export_dir(county, tmp_path_factory) -> Path:
    from features.sources import write_export

    return write_export(county, tmp_path_factory.mktemp("export") / "county", fmt="parquet")


@pytest.fixture
def home(tmp_path, monkeypatch, county):
    """Settings pointing at a migrated database with one teacher's feedback and visits."""
    home = tmp_path / "home"
    home.mkdir()
    db = f"sqlite:///{home / 'baoxue.db'}"
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(home))
    monkeypatch.setenv("BAOXUE_DB__URL", db)
    get_settings.cache_clear()
    migrate(db)
    enrolled = county.enrolments.drop_duplicates("student_id").sort_values("student_id").iloc[:3]
    engine = make_engine(db)
    with session_factory(engine).begin() as session:
        teacher = add_user(
            session,
            "teacher_x",
            "correct horse battery",
            "teacher",
            str(enrolled["school_id"].iloc[0]),
            (str(enrolled["class_id"].iloc[0]),),
            "homeroom_teacher",
        )
        for i, row in enumerate(enrolled.itertuples(index=False)):
            queries.add_feedback(
                session,
                queries.FeedbackIn(
                    student_id=row.student_id,
                    as_of=dt.date(2023, 11, 6),
                    kind=("useful", "wrongly_flagged", "not_useful")[i],
                    comment=COMMENT,
                ),
                teacher.id,
            )
            queries.add_intervention(
                session,
                queries.InterventionIn(
                    student_id=row.student_id,
                    school_id=row.school_id,
                    class_id=row.class_id,
                    date=dt.date(2023, 11, 8),
                    kind="home_visit",
                    by_role="homeroom_teacher",
                    outcome="returned" if i == 0 else "contacted",
                    note=NOTE,
                ),
                recorded_by=teacher.id,
            )
    engine.dispose()
    yield home
    get_settings.cache_clear()


def _bytes_of(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()))


def test_export_research_writes_pseudonymised_parquet(export_dir, home, county, tmp_path, caplog):
    out = tmp_path / "research"
    with caplog.at_level(logging.DEBUG):
        result = runner.invoke(
            app, ["export", "research", str(export_dir), str(out), "--from", FROM, "--to", TO]
        )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "feedback.parquet",
        "interventions.parquet",
        "manifest.json",
        "training_rows.parquet",
    ]
    rows = pd.read_parquet(out / "training_rows.parquet")
    feedback = pd.read_parquet(out / "feedback.parquet")
    done = pd.read_parquet(out / "interventions.parquet")
    assert rows["as_of"].nunique() == 4 and "label" in rows.columns
    assert len(rows) == rows[["student_id", "as_of"]].drop_duplicates().shape[0]
    # the service's three visits (by a user) beside the export's own interventions
    assert len(feedback) == 3 and done["recorded_by"].notna().sum() == 3
    assert (
        len(done)
        == 3 + county.interventions["student_id"].isin(set(county.students["student_id"])).sum()
    )
    assert sorted(feedback["kind"]) == ["not_useful", "useful", "wrongly_flagged"]
    assert "comment" not in feedback.columns and "note" not in done.columns
    # the three pupils' rows carry their feedback and the visit-led return of the first
    assert int(rows[["feedback_useful", "feedback_wrongly_flagged"]].to_numpy().sum()) == 2
    first = feedback.loc[feedback["kind"] == "useful", "student_id"].iloc[0]
    mine = rows.loc[rows["student_id"] == first].set_index("as_of")["visit_led_return"]
    assert mine.to_dict() == {
        pd.Timestamp(FROM): True,  # visited on 11-08 with the outcome "returned"
        **{pd.Timestamp(d): False for d in ("2023-11-13", "2023-11-20", TO)},
    }
    # pseudonyms join across files, and no real id or text is anywhere
    ours = done.loc[done["recorded_by"].notna()]
    assert set(feedback["student_id"]) == set(ours["student_id"]) <= set(rows["student_id"])
    assert len(set(feedback["student_id"])) == 3 and ours["recorded_by"].nunique() == 1
    real = set(county.students["student_id"].astype(str))
    assert not real & set(rows["student_id"]) and not real & set(done["student_id"])
    blob = _bytes_of(out)
    for secret in ("NOTE-SECRET", "COMMENT-SECRET", "teacher_x", *sorted(real)[:50]):
        assert secret.encode() not in blob, secret
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(student in logged for student in real)
    assert "wrote" in result.output and "visit-led returns" in result.output

    # a second export uses another salt: nothing links the two
    again = tmp_path / "again"
    result = runner.invoke(
        app, ["export", "research", str(export_dir), str(again), "--from", FROM, "--to", TO]
    )
    assert result.exit_code == 0, result.output
    other = pd.read_parquet(again / "feedback.parquet")
    assert not set(other["student_id"]) & set(feedback["student_id"])
    assert not set(other["user_id"]) & set(feedback["user_id"])

    # an existing folder is refused without a traceback, and left as it was
    before = _bytes_of(out)
    result = runner.invoke(app, ["export", "research", str(export_dir), str(out)])
    assert result.exit_code == 1 and "exists already" in result.output
    assert "Traceback" not in result.output and _bytes_of(out) == before


def test_pupils_names_never_reach_a_research_export(export_dir, home, county, tmp_path, caplog):
    """The export folder read back holds the county's pupils' names, the research export
    made from it none: in no cell, no column name, no README or manifest, no log line."""
    from features.sources import read_export

    names = set(read_export(export_dir).students["name"].dropna())
    assert len(names) > 200
    out = tmp_path / "research"
    with caplog.at_level(logging.DEBUG):
        result = runner.invoke(
            app, ["export", "research", str(export_dir), str(out), "--from", FROM, "--to", TO]
        )
    assert result.exit_code == 0, result.output
    for path in sorted(out.glob("*.parquet")):
        frame = pd.read_parquet(path)
        assert not {"name", "class_name"} & set(frame.columns), path.name
        assert not frame.astype("str").isin(names).any().any(), path.name
    text = (out / "README.md").read_text() + (out / "manifest.json").read_text()
    text += result.output + "\n".join(r.getMessage() for r in caplog.records)
    long_names = {n for n in names if len(n) >= 3}  # two characters can be a plain word
    assert not [n for n in long_names if n in text]


def test_a_failed_write_leaves_no_folder(tmp_path):
    out = tmp_path / "research"
    good = pd.DataFrame({"a": [1, 2]})
    bad = pd.DataFrame({"a": [object(), object()]})  # pyarrow cannot write these
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises
        write_research_export(out, {"good": good, "bad": bad}, {"rows": {"good": 2, "bad": 2}})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder either
    write_research_export(out, {"good": good}, {"rows": {"good": 2}})
    with pytest.raises(ExportExists):
        write_research_export(out, {"good": good}, {"rows": {"good": 2}})


def test_reading_the_database_leaves_free_text_behind(home):
    engine = make_engine(get_settings().database_url)
    with session_factory(engine)() as session:
        feedback, done = read_feedback(session), read_interventions(session)
    engine.dispose()
    assert list(feedback.columns) == ["student_id", "as_of", "kind", "user_id"]
    assert "note" not in done.columns and len(done) == 3
    assert done["date"].dtype.kind == "M" and feedback["as_of"].dtype.kind == "M"


def test_an_empty_window_is_a_clear_error(export_dir, home, tmp_path):
    out = tmp_path / "none"
    result = runner.invoke(
        app,
        ["export", "research", str(export_dir), str(out), "--from", "2030-01-01"],
    )
    assert result.exit_code == 1 and "no weekly as_of" in result.output
    assert not out.exists()


@pytest.mark.slow  # two evaluations of the session's champion (~30 s on 2 cores)
def test_evaluate_with_interventions_reads_the_service_database(
    small_export, small_county, trained, tmp_path, monkeypatch
):
    """`baoxue evaluate --with-interventions` on the session's champion: the visit recorded
    in the service database joins the export's own interventions."""
    result, store, _ = trained
    week = result.split.test_as_ofs[0]
    home = tmp_path / "home"
    db = f"sqlite:///{tmp_path / 'baoxue.db'}"
    for key, value in {
        "BAOXUE_PATHS__HOME": str(home),
        "BAOXUE_DB__URL": db,
        "BAOXUE_MLFLOW__TRACKING_URI": store.tracking_uri,
        "BAOXUE_MLFLOW__REGISTRY_URI": store.registry_uri,
        "BAOXUE_MLFLOW__MODEL_NAME": store.model_name,
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    migrate(db)
    pupil = small_county.enrolments.iloc[0]
    engine = make_engine(db)
    with session_factory(engine).begin() as session:
        queries.add_intervention(
            session,
            queries.InterventionIn(
                student_id=pupil["student_id"],
                school_id=pupil["school_id"],
                date=week + dt.timedelta(days=1),
                kind="home_visit",
                by_role="homeroom_teacher",
                outcome="returned",
                note=NOTE,
            ),
            recorded_by=None,
        )
    engine.dispose()
    args = ["evaluate", str(small_export), "--from", str(week), "--to", str(week)]
    try:
        printed = runner.invoke(app, [*args, "--with-interventions"])
    finally:
        get_settings.cache_clear()
    assert printed.exit_code == 0, printed.output
    tail = printed.output[printed.output.index("with interventions (") :]
    assert f"({len(small_county.interventions) + 1} recorded;" in tail
    dropouts = re.search(r"dropouts only\s+([\d.]+)", tail)
    with_visits = re.search(r"with visit-led returns\s+([\d.]+)", tail)
    assert dropouts and with_visits and float(with_visits[1]) >= float(dropouts[1])
    returns = re.search(r"(\d+) visit-led returns, (\d+) of them flagged", tail)
    assert returns and int(returns[1]) >= 1
