"""Request and response bodies of the HTTP API, and the error a bad request becomes.

Item and user ids are strings (JSON integers are accepted and read as their decimal text, as in
`rank.input` files). A history entry is an id or `{"item_id", "rating"?, "timestamp"?}`, oldest
first. Unknown keys are refused, so a misspelt field is an error rather than silently ignored, and
values are strictly typed: `"k": "3"`, `"k": true` or `"rating": "5"` are refused, never converted
(an integer is still a valid float).
Size bounds depend on the config (`serve.*`) and are checked after parsing (`llmrec/service/ranking.py`).
A refused request raises `llmrec.errors.RequestError`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _id_text(value: object) -> object:
    """Integers become their text; anything else is left for the `str` check to refuse."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ItemId = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HistoryItem(_Strict):
    item_id: ItemId
    rating: float | None = None
    timestamp: float | None = None


History = list[ItemId | HistoryItem]


class RankRequest(_Strict):
    """Score `candidates` for a user: the online form of one `llmrec rank` input line."""

    candidates: list[ItemId]
    history: History | None = None  # default: the user's history in the prepared split (needs user_id)
    user_id: ItemId | None = None  # orders candidates in letters prompts (rank.seed); finds the history


class RankResponse(BaseModel):
    user_id: str | None
    scores: list[float | None]  # aligned with the request's candidates; higher is better
    ranking: list[str]  # candidates best first (ties keep the request's order)
    history_used: int  # history items in the prompt (after split.history_len and the token budget)
    dropped_history: int  # oldest items left out by the token budget
    prompt_tokens: int


class RecommendRequest(_Strict):
    """Top `k` items for a user: retrieved by `serve.retriever`, reranked by the LLM."""

    k: int | None = Field(None, ge=1)  # default: 10, or serve.retrieve when smaller
    history: History | None = None
    user_id: ItemId | None = None


class Recommendation(BaseModel):
    item_id: str
    title: str
    score: float | None  # the LLM ranker's
    retriever_score: float


class RecommendResponse(BaseModel):
    user_id: str | None
    retriever: str
    items: list[Recommendation]  # best first, `k` of them (fewer when the retriever finds fewer)


class Health(BaseModel):
    status: str
    model: str
    adapter: str
    adapter_sha256: str
    template: str
    template_sha256: str
    backend: str
    scoring: str
    retriever: str
    dataset: str  # fingerprint of the prepared data
    items: int
    queue_depth: int  # queries waiting for a batch
    in_flight: int  # queries being scored now
    max_batch: int
    batches: dict[str, int]  # batch size -> batches scored since start


class ErrorBody(BaseModel):
    error: str  # one line: "<field>: <what is wrong>"
    field: str
