"""The ranking endpoints: /health, /v1/rank, /v1/recommend.

Each route reads the loaded `Service` from the app (`service_of`) and calls it; other modules (a
chat session API, say) add their own `APIRouter` the same way and pass it to `create_app`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from llmrec.serve import schemas
from llmrec.serve.service import Service

router = APIRouter()
_ERRORS = {status: {"model": schemas.ErrorBody} for status in (400, 404, 413, 422, 503)}


def service_of(request: Request) -> Service:
    return request.app.state.service


@router.get("/health", response_model=schemas.Health)
async def health(request: Request) -> schemas.Health:
    """The model, template and adapter being served, and the batch queue's state."""
    return service_of(request).health()


@router.post("/v1/rank", response_model=schemas.RankResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def rank(body: schemas.RankRequest, request: Request) -> schemas.RankResponse:
    """Score the candidates for a history (or a user of the prepared split), as `llmrec rank` would."""
    return await service_of(request).rank(body)


@router.post("/v1/recommend", response_model=schemas.RecommendResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def recommend(body: schemas.RecommendRequest, request: Request) -> schemas.RecommendResponse:
    """Top k: `serve.retriever`'s `serve.retrieve` items (none from the history), reranked by the LLM."""
    return await service_of(request).recommend(body)
