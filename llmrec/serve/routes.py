"""The ranking endpoints: /health, /v1/rank, /v1/recommend.

Each route reads the loaded `Service` from the app (`service_of`) and calls it; other modules (a
chat session API, say) add their own `APIRouter` the same way and pass it to `create_app`.
A route awaits the service through `unless_gone`: when the client disconnects first, the call is
cancelled, so a query still waiting in the batch queue is dropped instead of scored for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request

from llmrec.errors import RequestError
from llmrec.service import schemas
from llmrec.service.ranking import Service

router = APIRouter()
_ERRORS = {status: {"model": schemas.ErrorBody} for status in (400, 404, 413, 422, 503)}


T = TypeVar("T")


def service_of(request: Request) -> Service:
    return request.app.state.service


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body has been read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; cancelled when the client disconnects first. A cancelled query's future is
    done, so the batch queue skips it (`BatchQueue._next_batch`) and never scores it."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if task not in done:  # nobody reads this answer: 499, "client closed request"
        raise RequestError(499, "client", "disconnected before the answer; the request was dropped")
    return task.result()


@router.get("/health", response_model=schemas.Health)
async def health(request: Request) -> schemas.Health:
    """The model, template and adapter being served, and the batch queue's state."""
    return service_of(request).health()


@router.post("/v1/rank", response_model=schemas.RankResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def rank(body: schemas.RankRequest, request: Request) -> schemas.RankResponse:
    """Score the candidates for a history (or a user of the prepared split), as `llmrec rank` would."""
    return await unless_gone(request, service_of(request).rank(body))


@router.post("/v1/recommend", response_model=schemas.RecommendResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def recommend(body: schemas.RecommendRequest, request: Request) -> schemas.RecommendResponse:
    """Top k: `serve.retriever`'s `serve.retrieve` items (none from the history), reranked by the LLM."""
    return await unless_gone(request, service_of(request).recommend(body))
