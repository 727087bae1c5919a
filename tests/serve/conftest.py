"""One real server per test session: SmolLM2 on the prepared ML-100K fixture, uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import pytest

from llmrec.config import apply_overrides, from_dict, to_dict

# Small bounds, so the 4xx tests stay small; a batch waits 50 ms for company.
SERVE = ["serve.max_batch=4", "serve.max_wait_ms=50", "serve.max_candidates=30", "serve.max_history=40",
         "serve.max_body_bytes=4000", "serve.retrieve=8"]


class ThreadServer:
    """uvicorn in a thread on a socket bound to a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture(scope="session")
def serve_cfg(prepared):
    return from_dict(type(prepared), apply_overrides(to_dict(prepared), SERVE))


@pytest.fixture(scope="session")
def service(serve_cfg, hf_backend):
    from llmrec.service.ranking import Service

    return Service.from_config(serve_cfg, log=lambda *_: None, backend=hf_backend)


@pytest.fixture(scope="session")
def server(service):
    from llmrec.serve.app import create_app

    with ThreadServer(create_app(service)) as s:
        yield s


@pytest.fixture(scope="session")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c
