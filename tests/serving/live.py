"""A real uvicorn server in a thread, and concurrent clients from chosen loopback addresses.

For the tests that need real concurrency (a login flood): `TestClient` runs one request
at a time. Linux routes all of 127.0.0.0/8 to the loopback interface, so a client can
bind 127.0.0.2, 127.0.0.3, ... and the server sees each as its own address.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from serving.app import create_app
from serving.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """`create_app(settings)` served by uvicorn on 127.0.0.1 in a thread; its base URL."""
    import uvicorn

    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    body: str


def client_from(base: str, address: str, **kwargs: object) -> httpx.AsyncClient:
    """An async client whose connections come from loopback `address`."""
    return httpx.AsyncClient(
        base_url=base,
        timeout=60,
        transport=httpx.AsyncHTTPTransport(local_address=address),
        limits=httpx.Limits(max_connections=200),
        **kwargs,  # type: ignore[arg-type]
    )


async def timed_post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> Answer:
    started = time.perf_counter()
    response = await client.post(url, data=data)
    return Answer(
        response.status_code,
        time.perf_counter() - started,
        response.headers.get("retry-after"),
        response.text,
    )


async def flood(
    clients: list[httpx.AsyncClient], url: str, forms: list[dict[str, str]]
) -> list[Answer]:
    """Post every form at once, spread over `clients`; the answers in order."""
    return list(
        await asyncio.gather(
            *(timed_post(clients[i % len(clients)], url, form) for i, form in enumerate(forms))
        )
    )
