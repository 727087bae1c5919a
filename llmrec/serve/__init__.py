"""`llmrec serve`: the HTTP front-end of the ranking service and the chat loop.

    app.py          `create_app(service, routers)`, request limits, Host check, API docs switch, one-line errors,
                    `serve(cfg)`
    routes.py       /health, /v1/rank, /v1/recommend
    chat_routes.py  the chat session API and the chat page
    static/         the chat page (one HTML file)

The service itself (ranker, batch queue, retrieval, request schemas) lives in `llmrec.service`,
the conversational loop in `llmrec.chat`; this package adds HTTP only. A new set of endpoints is
its own module with its own `APIRouter`, mounted with `create_app(service, routers=[...])`.
FastAPI and uvicorn are imported only by this package.
"""
