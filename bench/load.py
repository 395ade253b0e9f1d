"""Load a real `baoxue serve` on loopback and check that no write is lost.

    python bench/load.py [--seconds 60] [--users 16] [--students 1500] [--port 8765]

Builds a synthetic county, trains a real model into a temporary MLflow store, runs the
weekly batch, adds one school admin per school, then starts `python -m serving.cli
serve` (uvicorn, SQLite in WAL mode) in a subprocess. `--users` asyncio clients (httpx)
then loop for `--seconds`, each as the admin of one school, mixing:

- score: `POST /v1/score` with the records of 10 of the school's pupils,
- list:  `GET /v1/lists/{school_id}`,
- visit: `POST /v1/students/{id}/interventions` for a pupil of the school,

and prints p50/p99 latency per kind, requests per second and errors. Afterwards it
counts the intervention rows in the database: every visit answered 201 must be there.
Not a CI test (it takes minutes); exits 1 on any error or lost write.

    python bench/load.py --scenario login-flood [--flood 100 200] [--seconds 12]

The login flood (issue 21): a server with one account and no model; for each `--flood`
size N, N concurrent clients (from `--flood-addresses` loopback addresses 127.0.k.x, not
the legitimate client's 127.0.0.1) post unknown usernames to `POST /v1/auth/token` in a
loop for `--seconds`, while the legitimate user logs in once a second. Prints the
legitimate logins' latency and answers and the flood's answers by status; exits 1 on any
500, on a legitimate login that fails, or on one slower than `--bound` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "load test password 123"
SECRET = "load-test-secret-key-0123456789-abcdef"
AS_OF = dt.date(2026, 3, 16)
KINDS = ("score", "list", "visit")
WEIGHTS = (1, 3, 3)


def records_json(tables: Any, student_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The tables of `student_ids` (and every school and school day) as JSON rows."""
    from features.sources import json_records

    out: dict[str, list[dict[str, Any]]] = {}
    for name, frame in tables.as_dict().items():
        if "student_id" in frame.columns and name != "schools":
            frame = frame[frame["student_id"].isin(student_ids)]
        out[name] = json_records(frame)
    return out


def prepare(home: Path, students: int, seed: int) -> tuple[dict[str, str], dict[str, Any]]:
    """A county, a champion, one weekly run and a school admin per school.

    Returns the environment for `baoxue serve` and, per school, its pupils and a score
    payload."""
    from features.sources import write_export
    from features.synthetic import generate_county
    from serving.services.users import add_user
    from serving.services.weekly_lists import run_weekly_job
    from serving.settings import (
        DatabaseSettings,
        MlflowSettings,
        PathSettings,
        ServingSettings,
        Settings,
    )
    from serving.storage import queries
    from serving.storage.db import make_engine, session_factory
    from training.config import TrainingConfig
    from training.pipeline import run_experiment
    from training.track import Store

    county = generate_county(n_students=students, n_years=3, seed=seed)
    write_export(county, home / "data", fmt="parquet")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    store = Store(uri, uri, "load", "baoxue-risk", (home / "mlartifacts").as_uri())
    run_experiment(county, TrainingConfig(seed=seed), store=store)
    settings = Settings(
        paths=PathSettings(home=home),
        db=DatabaseSettings(url=f"sqlite:///{home / 'baoxue.db'}"),
        mlflow=MlflowSettings(tracking_uri=uri, registry_uri=uri, model_name="baoxue-risk"),
        serving=ServingSettings(secret_key=SECRET),
    )
    run_weekly_job(settings, export_dir=home / "data", as_of=AS_OF, capacity=None)
    engine = make_engine(settings.database_url)
    schools: dict[str, Any] = {}
    with session_factory(engine).begin() as session:
        for school_id in sorted(county.schools["school_id"]):
            pupils = sorted(r.student_id for r in queries.scores_for(session, AS_OF, school_id))
            if not pupils:
                continue
            username = f"admin_{school_id}".lower()
            add_user(session, username, PASSWORD, "school_admin", school_id)
            sample = set(random.Random(school_id).sample(pupils, min(10, len(pupils))))
            schools[school_id] = {
                "username": username,
                "pupils": pupils,
                "score_body": {"as_of": AS_OF.isoformat(), "tables": records_json(county, sample)},
            }
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOXUE_")}
    env |= {
        "BAOXUE_PATHS__HOME": str(home),
        "BAOXUE_DB__URL": settings.database_url,
        "BAOXUE_MLFLOW__TRACKING_URI": uri,
        "BAOXUE_MLFLOW__REGISTRY_URI": uri,
        "BAOXUE_SERVING__SECRET_KEY": SECRET,
    }
    return env, schools


def count_interventions(database_url: str) -> int:
    from sqlalchemy import func, select

    from serving.storage.db import make_engine
    from serving.storage.tables import Intervention

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Intervention)) or 0)
    finally:
        engine.dispose()


async def user_loop(
    client: httpx.AsyncClient,
    school_id: str,
    school: dict[str, Any],
    token: str,
    until: float,
    seed: int,
    latencies: dict[str, list[float]],
    errors: dict[str, list[str]],
    visits_ok: list[int],
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    while time.perf_counter() < until:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        started = time.perf_counter()
        try:
            if kind == "score":
                answer = await client.post("/v1/score", json=school["score_body"], headers=headers)
                ok = answer.status_code == 200
            elif kind == "list":
                answer = await client.get(f"/v1/lists/{school_id}", headers=headers)
                ok = answer.status_code == 200
            else:
                student_id = rng.choice(school["pupils"])
                body = {
                    "date": AS_OF.isoformat(),
                    "kind": rng.choice(["home_visit", "phone_call"]),
                    "by_role": "homeroom_teacher",
                    "outcome": "contacted",
                    "note": "load test",
                }
                answer = await client.post(
                    f"/v1/students/{student_id}/interventions", json=body, headers=headers
                )
                ok = answer.status_code == 201
                visits_ok[0] += ok
            if not ok:
                errors[kind].append(f"{answer.status_code} {answer.text[:120]}")
        except httpx.HTTPError as error:
            errors[kind].append(type(error).__name__)
        latencies[kind].append(time.perf_counter() - started)


async def drive(base: str, schools: dict[str, Any], users: int, seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: dict[str, list[str]] = {k: [] for k in KINDS}
    visits_ok = [0]
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        tokens = {}
        for school_id, school in schools.items():
            answer = await client.post(
                "/v1/auth/token", data={"username": school["username"], "password": PASSWORD}
            )
            answer.raise_for_status()
            tokens[school_id] = answer.json()["access_token"]
        ids = sorted(schools)
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            *(
                user_loop(
                    client,
                    ids[i % len(ids)],
                    schools[ids[i % len(ids)]],
                    tokens[ids[i % len(ids)]],
                    until,
                    i,
                    latencies,
                    errors,
                    visits_ok,
                )
                for i in range(users)
            )
        )
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "visits_ok": visits_ok[0], "s": elapsed}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def wait_until_up(
    base: str, server: subprocess.Popen[bytes], timeout: float = 180, path: str = "/health"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped (exit {server.returncode})")
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not answer {path} in time")


def start_server(
    home: Path, env: dict[str, str], port: int, log: Any = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """`baoxue serve` on loopback `port`, in a subprocess (its log to `log`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "serve", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


# -- the login flood ----------------------------------------------------------------------

LEGIT_USER = "legit_teacher"


def prepare_login(home: Path) -> dict[str, str]:
    """A migrated database with one teacher account; the environment for `baoxue serve`."""
    from serving.app import add_user_from_cli
    from serving.settings import DatabaseSettings, PathSettings, ServingSettings, Settings

    settings = Settings(
        paths=PathSettings(home=home),
        db=DatabaseSettings(url=f"sqlite:///{home / 'baoxue.db'}"),
        serving=ServingSettings(secret_key=SECRET),
    )
    add_user_from_cli(settings, LEGIT_USER, PASSWORD, "teacher", "S1", ["S1-C1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOXUE_")}
    env |= {
        "BAOXUE_PATHS__HOME": str(home),
        "BAOXUE_DB__URL": settings.database_url,
        "BAOXUE_MLFLOW__TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BAOXUE_SERVING__SECRET_KEY": SECRET,
    }
    return env


async def flood_loop(client: httpx.AsyncClient, seed: int, until: float, answers: Any) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < until:
        data = {"username": f"ghost{rng.randrange(10**9)}", "password": "guess-123456"}
        try:
            answer = await client.post("/v1/auth/token", data=data)
            answers[str(answer.status_code)] += 1
        except httpx.HTTPError as error:
            answers[type(error).__name__] += 1


async def legit_loop(base: str, until: float, legit: list[tuple[float, str]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await asyncio.sleep(1.0)  # let the flood build up first
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                answer = await client.post(
                    "/v1/auth/token", data={"username": LEGIT_USER, "password": PASSWORD}
                )
                outcome = str(answer.status_code)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            elapsed = time.perf_counter() - started
            legit.append((elapsed, outcome))
            await asyncio.sleep(max(0.0, 1.0 - elapsed))


async def login_flood(
    port: int, size: int, seconds: float, addresses: list[str]
) -> tuple[list[tuple[float, str]], dict[str, int]]:
    """`size` clients flood from `addresses` while the legitimate user logs in."""
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, int] = collections.Counter()
    legit: list[tuple[float, str]] = []
    per_address = -(-size // len(addresses))
    clients = [
        httpx.AsyncClient(
            base_url=base,
            timeout=120,
            transport=httpx.AsyncHTTPTransport(local_address=address),
            limits=httpx.Limits(max_connections=per_address),
        )
        for address in addresses
    ]
    until = time.perf_counter() + seconds
    try:
        await asyncio.gather(
            legit_loop(base, until, legit),
            *(flood_loop(clients[i % len(clients)], i, until, answers) for i in range(size)),
        )
    finally:
        for client in clients:
            await client.aclose()
    return legit, dict(answers)


def run_login_flood(args: argparse.Namespace) -> int:
    failed = False
    with tempfile.TemporaryDirectory(prefix="baoxue-login-") as tmp:
        home = Path(tmp)
        env = prepare_login(home)
        log = (home / "server.log").open("wb")
        server = start_server(home, env, args.port, log)
        try:
            # No model is loaded, so /health answers 503: wait for the login page.
            wait_until_up(f"http://127.0.0.1:{args.port}", server, path="/login")
            for round_no, size in enumerate(args.flood, start=1):
                # A fresh block of addresses per round, so one round's lock-outs do not
                # carry into the next.
                addresses = [
                    f"127.{round_no}.{k // 250}.{k % 250 + 2}" for k in range(args.flood_addresses)
                ]
                legit, answers = asyncio.run(login_flood(args.port, size, args.seconds, addresses))
                times = [t for t, _ in legit]
                outcomes = collections.Counter(o for _, o in legit)
                print(
                    f"flood of {size} concurrent bogus logins from {len(addresses)} address(es) "
                    f"for {args.seconds:.0f} s: flood answers {dict(sorted(answers.items()))}"
                )
                print(
                    f"  legitimate login: {len(times)} tries, answers {dict(outcomes)}, "
                    f"p50 {1000 * percentile(times, 50):.0f} ms, max {1000 * max(times):.0f} ms"
                )
                failed |= "500" in answers or set(outcomes) != {"200"}
                failed |= max(times) > args.bound
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        errors = collections.Counter(
            line.partition("unhandled")[2].strip()
            for line in (home / "server.log").read_text(errors="replace").splitlines()
            if "unhandled" in line
        )
    for line, count in errors.items():
        print(f"  server log: {count} x unhandled {line}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["mixed", "login-flood"], default="mixed")
    parser.add_argument("--flood", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--flood-addresses", type=int, default=1)
    parser.add_argument("--bound", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, help="default 60; login-flood 12")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--students", type=int, default=1500)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 12.0 if args.scenario == "login-flood" else 60.0
    if args.scenario == "login-flood":
        return run_login_flood(args)
    with tempfile.TemporaryDirectory(prefix="baoxue-load-") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        env, schools = prepare(home, args.students, args.seed)
        print(f"prepared {len(schools)} schools in {time.perf_counter() - started:.0f} s")
        before = count_interventions(env["BAOXUE_DB__URL"])
        base = f"http://127.0.0.1:{args.port}"
        server = start_server(home, env, args.port)
        try:
            wait_until_up(base, server)
            result = asyncio.run(drive(base, schools, args.users, args.seconds))
        finally:
            server.terminate()
            server.wait(30)
        after = count_interventions(env["BAOXUE_DB__URL"])
    total = sum(len(v) for v in result["latencies"].values())
    n_errors = sum(len(v) for v in result["errors"].values())
    print(
        f"{args.users} users for {result['s']:.0f} s: {total} requests "
        f"({total / result['s']:.1f}/s), {n_errors} errors"
    )
    for kind in KINDS:
        times = result["latencies"][kind]
        print(
            f"  {kind:5s}: {len(times):5d} requests, p50 {1000 * percentile(times, 50):7.1f} ms, "
            f"p99 {1000 * percentile(times, 99):7.1f} ms, errors {len(result['errors'][kind])}"
            + (f" (first: {result['errors'][kind][0]})" if result["errors"][kind] else "")
        )
    lost = result["visits_ok"] - (after - before)
    print(
        f"visits answered 201: {result['visits_ok']}; intervention rows added: "
        f"{after - before}; lost writes: {lost}"
    )
    return 1 if n_errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
