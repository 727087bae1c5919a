"""Online serving: the batch ranking job as an HTTP API (`llmrec serve`).

    schemas.py    request / response bodies, `RequestError`
    batching.py   `BatchQueue`: concurrent requests scored together by one model instance
    retrieval.py  the first stage of /v1/recommend (popularity or a baseline run's vectors)
    service.py    `Service`: the ranker built as `llmrec rank` builds it, requests -> `UserQuery`
    routes.py     /health, /v1/rank, /v1/recommend
    app.py        `create_app(service, routers)`, request limits, one-line 4xx errors, `serve(cfg)`

A new set of endpoints (chat sessions, say) is its own module with its own `APIRouter`: its routes
read the `Service` with `routes.service_of(request)` and score through `service.rank_query` (the
same batch queue), and it is mounted with `create_app(service, routers=[...])` / `serve(cfg,
routers=[...])`. FastAPI and uvicorn are imported only by this package.
"""
