"""One chat server per test module: SmolLM2 on the prepared ML-100K fixture behind uvicorn on 127.0.0.1,
with the chat router, its sessions in a fresh SQLite file."""

from __future__ import annotations

import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from tests.serve.conftest import SERVE, ThreadServer

# Bounded generation keeps a turn around a second or two on a CPU; the LM reads the requests (not the
# default, rules) so that its path is what these tests exercise.
CHAT = ["chat.understand=lm", "chat.max_new_tokens=12", "chat.understand_max_new_tokens=40", "chat.k=4", "chat.retrieve=8"]


def chat_config(prepared, *extra: str):
    return from_dict(type(prepared), apply_overrides(to_dict(prepared), [*SERVE, *CHAT, *extra]))


@pytest.fixture(scope="session")
def chat_service(prepared, hf_backend):
    from llmrec.service.ranking import Service

    return Service.from_config(chat_config(prepared), log=lambda *_: None, backend=hf_backend)


def chat_server(service, db, **settings):
    """A server whose chat engine keeps its sessions in `db`, with `settings` replacing chat ones."""
    from dataclasses import replace

    from llmrec.chat.engine import ChatEngine
    from llmrec.serve.app import create_app
    from llmrec.serve.chat_routes import router

    if settings:
        service = replace(service, cfg=replace(service.cfg, chat=replace(service.cfg.chat, **settings)))
    app = create_app(service, [router])
    app.state.chat = ChatEngine.from_service(service, log=lambda *_: None, db=str(db))
    return ThreadServer(app), app.state.chat
