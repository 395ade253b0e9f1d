"""Reproduce docs/oulad-benchmark.md: LightGBM and the baselines on OULAD 2014B.

    python bench/oulad_benchmark.py [--oulad DIR] [--out DIR]

Imports the shipped OULAD (default $BAOXUE_OULAD_DIR or ../shared/data/oulad next to the
repository), then for each horizon (until the end of the presentation; 90 days) runs the
same commands a county uses, in its own home folder and MLflow experiment
`oulad-benchmark`:

    baoxue train EXPORT --train-until 2014-02-01 --test-to 2014-08-30 \
        --horizon H [--horizon-to-enrolment-end] --capacity-share 0.10 --config configs/oulad.toml
    baoxue evaluate EXPORT --model champion --from 2014-02-01 --to 2014-08-30 --json \
        [--horizon-to-enrolment-end] --capacity-share 0.10 --config configs/oulad.toml

and writes OUT/<horizon>/evaluate.json and OUT/results.md (the tables of the doc).
Takes about 6 minutes on two busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = date(2014, 2, 1)  # day 0 of every 2014B presentation
TEST_TO = "2014-08-30"  # course week 30
HORIZONS = {"to-end": (300, True), "90-days": (90, False)}
MODELS = ("lightgbm", "escalation_ladder", "hardship_count", "logistic")
REFERENCE = {"auc": 0.76, "auc_mean_as_of": 0.725, "precision_at_k": 0.31, "brier": 0.101}


def _baoxue(args: list[str], home: Path) -> str:
    env = {
        **os.environ,
        "BAOXUE_PATHS__HOME": str(home),
        "BAOXUE_MLFLOW__EXPERIMENT": "oulad-benchmark",
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [sys.executable, "-m", "serving.cli", *args]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def tables_md(name: str, result: dict) -> str:
    rows = {"lightgbm": result, **result["baselines"]}
    lines = [
        f"### Horizon: {name}",
        "",
        "| model | AUC pooled | AUC weekly mean | PR-AUC | Brier | ECE | precision@10 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        r = rows[model]
        lines.append(
            f"| {model} | {_fmt(r['auc'])} | {_fmt(r['auc_mean_as_of'])} | {_fmt(r['pr_auc'])} "
            f"| {_fmt(r['brier'])} | {_fmt(r['calibration_error'])} | {_fmt(r['precision_at_k'])} |"
        )
    lines += [
        "",
        "| course week | students | dropout rate | "
        + " | ".join(f"AUC {m}" for m in MODELS)
        + " | PR-AUC lightgbm | Brier lightgbm | P@10 % lightgbm | P@10 % ladder |",
        "|---" * (7 + len(MODELS)) + "|",
    ]
    per = {m: {r["as_of"]: r for r in rows[m]["per_as_of"]} for m in MODELS}
    for as_of, r in per["lightgbm"].items():
        week = (date.fromisoformat(as_of) - START).days // 7
        rate = r["n_positive"] / r["n_students"]
        aucs = " | ".join(_fmt(per[m][as_of]["auc"]) for m in MODELS)
        lines.append(
            f"| {week} | {r['n_students']} | {rate:.3f} | {aucs} | {_fmt(r['pr_auc'])} "
            f"| {_fmt(r['brier'])} | {_fmt(r['precision_at_k'])} "
            f"| {_fmt(per['escalation_ladder'][as_of]['precision_at_k'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    default_src = os.environ.get("BAOXUE_OULAD_DIR", str(REPO.parent / "shared/data/oulad"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oulad", type=Path, default=Path(default_src))
    parser.add_argument("--out", type=Path, default=REPO / "var/oulad-benchmark")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from features.oulad import import_oulad

    export = args.out / "export"
    import_oulad(args.oulad, export, fmt="parquet")
    config = str(REPO / "configs/oulad.toml")
    report = ["# OULAD 2014B benchmark (bench/oulad_benchmark.py)", ""]
    for name, (horizon, to_end) in HORIZONS.items():
        home = args.out / name
        flag = ["--horizon-to-enrolment-end"] if to_end else []
        print(f"{name}: training", flush=True)
        print(
            _baoxue(
                [
                    "train",
                    str(export),
                    "--train-until",
                    "2014-02-01",
                    "--test-to",
                    TEST_TO,
                    "--horizon",
                    str(horizon),
                    *flag,
                    "--capacity-share",
                    "0.10",
                    "--config",
                    config,
                ],
                home,
            )[-1500:]
        )
        print(f"{name}: evaluating the champion", flush=True)
        out = _baoxue(
            [
                "evaluate",
                str(export),
                "--model",
                "champion",
                "--from",
                "2014-02-01",
                "--to",
                TEST_TO,
                "--json",
                *flag,
                "--capacity-share",
                "0.10",
                "--config",
                config,
            ],
            home,
        )
        result = json.loads(out)
        (home / "evaluate.json").write_text(json.dumps(result, indent=1))
        report.append(
            tables_md(
                f"{name} ({horizon} days{', capped at the presentation end' if to_end else ''})",
                result,
            )
        )
    report.append(f"Reference script (2014B, even weeks 0-30): {REFERENCE}")
    (args.out / "results.md").write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
