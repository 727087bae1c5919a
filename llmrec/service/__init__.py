"""The ranking service without HTTP: what `llmrec serve` and the chat loop both build on.

    ranking.py    `Service`: one loaded ranker (built as `llmrec rank` builds it), its data, a retriever
                  and a batch queue; requests become the batch job's `UserQuery`
    batching.py   `BatchQueue`: concurrent queries scored together by one model instance
    retrieval.py  the first stage of a recommendation (popularity or a baseline run's vectors)
    schemas.py    request and response bodies (pydantic), strictly typed

A refused request raises `llmrec.errors.RequestError` (an `LLMRecError` with an HTTP status and
the field at fault), so the HTTP layer and the terminal front-ends report it the same way.
Nothing here imports FastAPI or uvicorn.
"""
