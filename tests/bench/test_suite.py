"""`baoxue bench`: the table's shape on a tiny county (fast), and every benchmark end to
end (marked `bench`, deselected by default: it starts three HTTP servers)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from bench.suite import BENCHMARKS, Report, Row, format_table, parse_only, run_bench
from serving.cli import app

FIELDS = ("bench", "metric", "ours", "reference", "reference_name", "ratio", "goal", "met")


def test_only_takes_names_and_letters_in_the_suites_order():
    assert parse_only(None) == list(BENCHMARKS)
    assert parse_only("d, a") == ["snapshot", "train"]
    assert parse_only("http") == ["http"]
    with pytest.raises(ValueError, match="--only 'nope': choose from snapshot"):
        parse_only("nope")


def test_the_table_shows_ours_reference_ratio_goal_and_whether_met():
    report = Report(n_students=300, as_of="2024-07-08", cores=2)
    report.rows = [
        Row("d. training", "seconds", 2.0, 1.0, "lightgbm.train", 2.0, "<= 1.3x", False, "n"),
        Row("b. weekly", "pupils/s", 3000.0, 1500.0, "pred_contrib", 2.0, ">= 1x", True),
    ]
    text = format_table(report)
    assert "2.00x" in text and "<= 1.3x" in text and "NO" in text and "yes" in text
    assert "1 (lightgbm.train)" in text and "3,000" in text
    assert "goals met: 1 of 2" in text


def test_bench_on_300_pupils_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app, ["bench", "--students", "300", "--only", "snapshot", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "a. snapshot (attendance)" in result.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["n_students"] == 300
    assert len(data["rows"]) == 2
    for row in data["rows"]:
        assert set(FIELDS) <= set(row)
        assert row["ours"] > 0 and row["reference"] > 0
        assert math.isclose(row["ratio"], row["ours"] / row["reference"])
        assert row["goal"]
    assert "values identical on 21 window columns" in data["rows"][0]["note"]
    assert out.with_suffix(".md").read_text(encoding="utf-8").count("| a. snapshot") == 2


def test_an_unknown_benchmark_is_named_without_a_traceback():
    result = CliRunner().invoke(app, ["bench", "-n", "300", "--only", "x"])
    assert result.exit_code == 1
    assert "--only 'x'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.bench
def test_every_benchmark_runs_on_a_small_county(tmp_path):
    report = run_bench(400, work=tmp_path / "work", seconds=1.0, log=lambda _: None)
    names = {row.bench.split(".")[0] for row in report.rows}
    assert names == {"a", "b", "c1", "c2", "d", "e"}
    for row in report.rows:
        assert row.goal and row.reference_name
        if row.reference_name != "mlflow models serve":
            assert row.ours > 0 and row.reference > 0, row
            assert math.isfinite(row.ratio), row
    assert report.info["weekly_explained"] > 0


def test_the_weekly_benchmark_times_what_the_weekly_batch_does(tmp_path):
    """`weekly_scoring` (timed from a built snapshot) equals `score_week` (which builds it)."""
    import datetime as dt

    from bench.suite import Workbench, weekly_scoring
    from models.calibration import Calibrator
    from models.risk_model import RiskModel
    from serving.registry import LoadedModel
    from serving.services.weekly_lists import score_week

    wb = Workbench(300, tmp_path, log=lambda _: None)
    _, _, contract, _ = wb.training
    model = RiskModel.from_parts(wb.classifier.booster_, Calibrator(method="identity"), contract)
    loaded = LoadedModel(model, "m", "1", "registry", dt.datetime.now(dt.UTC), None, None)
    ours, tiers = weekly_scoring(loaded, wb.snapshot)
    batch, batch_tiers = score_week(
        loaded, wb.tables, as_of=wb.as_of, capacity=None, capacity_share=0.05
    )
    assert tiers == batch_tiers
    assert [(s.student_id, s.risk_score, s.explained) for s in ours] == [
        (s.student_id, s.risk_score, s.explained) for s in batch
    ]
    assert 0 < sum(s.explained for s in ours) < len(ours)
