"""Servers in subprocesses and a closed-loop HTTP load generator (httpx, asyncio).

`Server` starts a command that listens on a loopback port and waits until a probe
request answers; `load` keeps `concurrency` requests in flight for `seconds` and returns
requests/s and latency percentiles.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

RequestMaker = Callable[[int], dict[str, Any]]
"""i -> keyword arguments of `httpx.AsyncClient.request` (method, url, json, headers)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerFailed(RuntimeError):
    """A server did not start (its output's tail is in the message)."""


@dataclass
class Server:
    """A server subprocess; `started` waits until `probe` answers with a 2xx."""

    command: Sequence[str]
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("wb")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            list(self.command),
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        return self

    def wait(self, probe: Callable[[httpx.Client], bool], *, timeout: float = 120.0) -> float:
        """Seconds from `start` until `probe(client)` is true; `ServerFailed` otherwise."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise ServerFailed(f"{self.command[0]} exited: {self.tail()}")
                try:
                    if probe(client):
                        return time.perf_counter() - self.started_at
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise ServerFailed(f"{self.command[0]} did not answer in {timeout:.0f} s: {self.tail()}")

    def tail(self, n: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) == 0:
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))


async def _load(
    base_url: str, make: RequestMaker, *, concurrency: int, seconds: float, warmup: int
) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        for i in range(warmup):
            await client.request(**make(i))
        latencies: list[float] = []
        errors = 0
        first_error: list[str] = []
        counter = iter(range(10**9))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                i = next(counter)
                t0 = time.perf_counter()
                response = await client.request(**make(i))
                elapsed = time.perf_counter() - t0
                if response.status_code >= 400:
                    errors += 1
                    if not first_error:
                        first_error.append(f"{response.status_code} {response.text[:300]}")
                else:
                    latencies.append(elapsed * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=took,
        latencies_ms=np.asarray(latencies),
        first_error=first_error[0] if first_error else None,
    )


def load(
    base_url: str,
    make: RequestMaker,
    *,
    concurrency: int = 16,
    seconds: float = 5.0,
    warmup: int = 20,
) -> LoadResult:
    """Closed loop: `concurrency` workers each send the next request when one returns."""
    return asyncio.run(
        _load(base_url, make, concurrency=concurrency, seconds=seconds, warmup=warmup)
    )
