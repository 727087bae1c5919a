"""The FastAPI application and `llmrec serve`: routes, request limits, one-line errors, uvicorn.

Every refused request gets a 4xx JSON body `{"error": "<field>: <what is wrong>", "field": ...}`:
400 for a body that is not JSON (or not UTF-8) and for a Host header naming another server, 413
for a body over `serve.max_body_bytes` or a list over its `serve.max_*` bound, 422 for a wrong
type (never converted: `"k": "3"` is refused), unknown key or unknown item id, 404 for an unknown
user or path, 405 for a wrong method, 503 when the batch queue is full; a server fault is a 500
in the same form. The server binds loopback unless told otherwise, answers only requests whose
Host header names its address (`HostCheck`, against DNS rebinding) and serves the interactive API
docs only when `serve.api_docs = true`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmrec import __version__
from llmrec.config import Config, ServeConfig
from llmrec.errors import RequestError
from llmrec.service.batching import QueueFull
from llmrec.service.ranking import Service


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{field}: {message}", "field": field}, status_code=status, headers=headers)


def _field(loc: Iterable[object]) -> str:
    """A pydantic error location as a JSON path: ('body', 'history', 3, 'item_id') -> history[3].item_id.
    Union branches (`str`, `HistoryItem`) and validator names are not fields and are left out."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and (part[:1].islower() or part == "") and "[" not in part and part != "str":
            path += f".{part}" if path else part
    return path or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    # A union (a history entry: id or object) reports one error per branch: the deepest is the one
    # that went furthest into the request ({"item_id", "stars"} -> history[0].stars, not "not a string").
    err = max(errors, key=lambda e: len(e.get("loc", ())))
    if err.get("type") == "json_invalid":
        ctx = err.get("ctx") or {}
        return _error(400, "body", f"invalid JSON ({ctx.get('error', err.get('msg'))})")
    if err.get("type") == "missing" and len(err.get("loc", ())) == 1:
        return _error(400, "body", "expected a JSON object")
    field = _field(err.get("loc", ()))
    got = f", got {err['input']!r:.80}" if "input" in err and err.get("type") != "missing" else ""
    return _error(422, field, f"{err.get('msg', 'invalid')}{got}")


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return _error(exc.status, exc.field, exc.message)


async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
    return _error(503, "queue", str(exc), headers={"Retry-After": "1"})


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own refusals (unknown path, wrong method, a body that is not
    UTF-8), which would otherwise answer `{"detail": ...}`, in the one-line form."""
    path = request.url.path
    if exc.status_code == 404:
        field, message = "path", f"no endpoint {path!r}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        field, message = "method", f"{request.method} is not allowed on {path}" + (f"; use {allowed}" if allowed else "")
    elif exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8); the cause says why
        field, message = "body", f"could not be read ({exc.__cause__ or exc.detail})"
    else:
        field, message = "request", str(exc.detail)
    return _error(exc.status_code, field, message, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A fault of the server (a bug): the one-line form instead of plain text; the traceback goes
    to the server's log."""
    return _error(500, "server", f"internal error ({type(exc).__name__}); see the server log")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(s: ServeConfig) -> frozenset[str]:
    """Host header names this server answers: `serve.host`, the loopback names when it listens
    on loopback (or on every address), and `serve.allowed_hosts`."""
    names = {s.host.lower(), *(h.lower() for h in s.allowed_hosts)}
    try:
        address = ipaddress.ip_address(s.host)
        on_loopback = address.is_loopback or address.is_unspecified  # 0.0.0.0 and :: include loopback
    except ValueError:  # a name, not an address
        on_loopback = s.host.lower() == "localhost"
    if on_loopback:
        names.update(LOOPBACK_NAMES)
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" -> "::1", "Localhost:80" -> "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: a request whose Host header names another server is refused with 400. A
    web page whose DNS name an attacker points at 127.0.0.1 (DNS rebinding) sends its own name."""

    def __init__(self, app, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                response = _error(400, "Host", f"{header!r} is not this server's address (allowed: "
                                               f"{', '.join(sorted(self.allowed))}); add the name to serve.allowed_hosts")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413 before it is parsed
    (by its Content-Length, or while a chunked body is read)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = _error(413, "body", f"request body over serve.max_body_bytes = {self.limit} bytes")
        await response(scope, receive, send)


def create_app(service: Service, routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The app serving `service` (already loaded): the ranking routes plus any extra `routers`.
    The batch queue starts and stops with the app's event loop."""
    from llmrec.serve.routes import router

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            await service.close()

    s = service.cfg.serve
    docs = s.api_docs  # off by default: the API's map is not published to whoever can reach the port
    app = FastAPI(title="llmrec", version=__version__, lifespan=lifespan,
                  description="LLM ranking service: the online form of `llmrec rank`.",
                  openapi_url="/openapi.json" if docs else None, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None)
    app.state.service = service
    app.include_router(router)
    for extra in routers:
        app.include_router(extra)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(QueueFull, _queue_full)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(BodyLimit, limit=s.max_body_bytes)
    app.add_middleware(HostCheck, allowed=allowed_hosts(s))  # added last: runs first
    return app


def serve(cfg: Config, log=print, routers: Iterable[APIRouter] | None = None) -> None:
    """`llmrec serve`: load the model and data, then serve on `serve.host:serve.port` until Ctrl-C
    (with extra `routers`; by default the chat session API and its page, llmrec/serve/chat_routes.py)."""
    import uvicorn

    if routers is None:
        from llmrec.serve.chat_routes import router as chat_router

        routers = [chat_router]

    service = Service.from_config(cfg, log)
    s = service.cfg.serve
    log(f"serving {service.template.name} on {service.cfg.model.name}"
        f"{' + ' + service.cfg.model.adapter if service.cfg.model.adapter else ''} "
        f"(retriever {service.retriever.name}) at http://{s.host}:{s.port}")
    if s.host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: serve.host = {s.host!r} accepts connections from other machines; the API has no "
            "authentication")
    uvicorn.run(create_app(service, routers), host=s.host, port=s.port, log_level="warning", access_log=False)
