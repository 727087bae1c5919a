"""The app's guards without a model: the Host check (DNS rebinding), the API docs switch and the
one-line body of Starlette's own refusals (unknown path, wrong method, unreadable body)."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
from fastapi import APIRouter
from starlette.testclient import TestClient

from llmrec.config import Config
from llmrec.serve.app import allowed_hosts, create_app, host_name


def client(routers=(), **serve) -> TestClient:
    """The app on a stand-in service (only its config is read before a route runs), called as
    http://127.0.0.1:8000 unless a test sends another Host header."""
    cfg = Config()
    service = SimpleNamespace(cfg=replace(cfg, serve=replace(cfg.serve, **serve)))
    return TestClient(create_app(service, routers), base_url="http://127.0.0.1:8000",  # type: ignore[arg-type]
                      raise_server_exceptions=False)


def one_line(r, status: int, field: str) -> str:
    """The error text of a one-line body, after checking its status and field."""
    body = r.json()
    assert (r.status_code, body["field"]) == (status, field), r.text
    assert set(body) == {"error", "field"} and body["error"].startswith(f"{field}: ")
    return body["error"]


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8000", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"),
    ("rec.example.internal:443", "rec.example.internal"), ("", ""),
])
def test_host_name_drops_the_port(header, name):
    assert host_name(header) == name


def test_allowed_hosts_follow_the_bound_address():
    cfg = Config().serve
    assert allowed_hosts(cfg) == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts(replace(cfg, host="0.0.0.0")) == {"0.0.0.0", "127.0.0.1", "localhost", "::1"}
    assert allowed_hosts(replace(cfg, host="10.1.2.3", allowed_hosts=("Rec.Example",))) == {"10.1.2.3", "rec.example"}


def test_a_foreign_host_header_is_refused():
    c = client()
    error = one_line(c.get("/health", headers={"host": "evil.example"}), 400, "Host")
    assert "'evil.example' is not this server's address" in error and "serve.allowed_hosts" in error
    one_line(c.get("/health", headers={"host": "evil.example:8000"}), 400, "Host")
    one_line(c.post("/v1/rank", json={"candidates": ["1"]}, headers={"host": "127.0.0.1.evil.example"}), 400, "Host")
    # the bound address and the loopback names pass the check (and reach the router: no such path)
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        one_line(c.get("/nope", headers={"host": host}), 404, "path")


def test_an_allowed_extra_host_is_served():
    c = client(allowed_hosts=("rec.example.internal",))
    one_line(c.get("/nope", headers={"host": "rec.example.internal:8443"}), 404, "path")
    one_line(c.get("/nope", headers={"host": "evil.example"}), 400, "Host")


def test_api_docs_are_off_unless_asked_for():
    off = client()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert one_line(off.get(path), 404, "path") == f"path: no endpoint {path!r}"
    on = client(api_docs=True)
    assert on.get("/docs").status_code == 200 and "swagger" in on.get("/docs").text.lower()
    assert on.get("/redoc").status_code == 200
    spec = on.get("/openapi.json").json()
    assert {"/v1/rank", "/v1/recommend", "/health"} <= set(spec["paths"])


def test_starlettes_refusals_have_the_one_line_body():
    c = client()
    assert one_line(c.get("/v1/nothing"), 404, "path") == "path: no endpoint '/v1/nothing'"
    r = c.get("/v1/rank")
    assert one_line(r, 405, "method") == "method: GET is not allowed on /v1/rank; use POST"
    assert r.headers["allow"] == "POST"
    r = c.post("/v1/rank", content=b'{"candidates": ["\xc3"]}', headers={"content-type": "application/json"})
    assert "could not be read ('utf-8' codec can't decode byte 0xc3" in one_line(r, 400, "body")


def test_a_server_fault_is_a_one_line_500():
    broken = APIRouter()

    @broken.get("/broken")
    async def fails() -> None:
        raise ZeroDivisionError("a bug")

    r = client([broken]).get("/broken")
    assert one_line(r, 500, "server") == "server: internal error (ZeroDivisionError); see the server log"
