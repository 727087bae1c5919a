"""The chat session endpoints and the chat web page, added to `llmrec serve`.

    POST /v1/chat/sessions                 {"user_id"?}            -> 201 {"session_id", "user_id"}
    POST /v1/chat/sessions/{id}/turns      {"text", "feedback"?}   -> the turn: reply and items
    GET  /v1/chat/sessions/{id}                                    -> state and every turn so far
    GET  /                                                         -> the chat page (static HTML)

`feedback` is a list of `{"item_id", "value": "like" | "dislike"}`; the text may also carry it
("like 2", "more like 1"). Sessions live in SQLite (`chat.db`), so a restarted server continues
them. Errors are the service's one-line 4xx bodies naming the field; values are strictly typed
(`"text": 5` is refused, not converted). A turn whose client disconnects before the answer is
cancelled (`unless_gone`): its queued queries are not scored and, unless it was already being
saved, it is not stored.
"""

from __future__ import annotations

import importlib.resources
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from llmrec.chat.store import State, Turn
from llmrec.serve.routes import unless_gone
from llmrec.service.schemas import ItemId


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SessionRequest(_Strict):
    user_id: ItemId | None = None  # a user of the prepared split (history, collaborative scores); none: anonymous


class SessionCreated(BaseModel):
    session_id: str
    user_id: str | None


class FeedbackItem(_Strict):
    item_id: ItemId
    value: Literal["like", "dislike"]


class TurnRequest(_Strict):
    text: str = Field("", max_length=100_000)  # bounded again by chat.max_text
    feedback: list[FeedbackItem] = Field(default_factory=list, max_length=100)


class ItemOut(BaseModel):
    position: int
    item_id: str
    title: str
    year: int | None
    genres: list[str]
    score: float | None
    reason: str
    reason_by: str  # lm | facts


class TurnOut(BaseModel):
    turn: int
    text: str
    reply: str
    items: list[ItemOut]
    constraints: dict
    understood_by: str  # lm | rules | none
    lm_error: str
    feedback: dict[str, str]
    seconds: float


class SessionOut(BaseModel):
    session_id: str
    user_id: str | None
    liked: list[str]
    disliked: list[str]
    constraints: dict
    turns: list[TurnOut]


def _lifespan_factory():
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = getattr(app.state, "chat", None)
        if engine is None:
            from llmrec.chat.engine import ChatEngine

            engine = ChatEngine.from_service(app.state.service, log=lambda *_: None)
            app.state.chat = engine
        engine.start()
        try:
            yield
        finally:
            await engine.close()

    return lifespan


router = APIRouter(lifespan=_lifespan_factory())


def _engine(request: Request):
    return request.app.state.chat


def _turn_out(engine, t: Turn) -> TurnOut:
    items = []
    for k, r in enumerate(t.items, 1):
        it = engine.dataset.items[r.item_id]
        items.append(ItemOut(position=k, item_id=r.item_id, title=r.title, year=it.year, genres=list(it.genres),
                             score=r.score, reason=r.reason, reason_by=r.reason_by))
    return TurnOut(turn=t.turn, text=t.text, reply=t.reply, items=items, constraints=t.constraints,
                   understood_by=t.understood_by, lm_error=t.lm_error, feedback=t.feedback, seconds=t.seconds)


def _session_out(engine, sid: str, state: State, turns: list[Turn]) -> SessionOut:
    return SessionOut(session_id=sid, user_id=state.user_id, liked=state.liked, disliked=state.disliked,
                      constraints=state.constraints, turns=[_turn_out(engine, t) for t in turns])


@router.post("/v1/chat/sessions", response_model=SessionCreated, status_code=201)
async def create_session(body: SessionRequest, request: Request) -> SessionCreated:
    """A new chat session, for a user of the prepared split or anonymous."""
    sid, state = _engine(request).create_session(body.user_id)
    return SessionCreated(session_id=sid, user_id=state.user_id)


@router.post("/v1/chat/sessions/{session_id}/turns", response_model=TurnOut)
async def post_turn(session_id: str, body: TurnRequest, request: Request) -> TurnOut:
    """One round: feedback applied, the text understood, items recommended with a reason each."""
    engine = _engine(request)
    t = await unless_gone(request, engine.turn(session_id, body.text, [(f.item_id, f.value) for f in body.feedback]))
    return _turn_out(engine, t)


@router.get("/v1/chat/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: str, request: Request) -> SessionOut:
    """The session as stored: likes, dislikes, constraints and every turn."""
    engine = _engine(request)
    state, turns = engine.session(session_id)
    return _session_out(engine, session_id, state, turns)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """The chat page: one static file, no build step."""
    html = importlib.resources.files("llmrec.serve.static").joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(html)
