"""`llmrec chat`: the conversational loop in the terminal, for a user of the prepared split or anonymous.

Builds the ranking service and the chat engine as `llmrec serve` does, then reads one request or
feedback line at a time ("like 2", "dislike 3", "more like 1", or a new request) and prints the
reply. Sessions live in SQLite (`chat.db`), so `--session ID` continues one. A bad line (an
unknown position, an empty request) is reported and the chat goes on; an empty line or Ctrl-D
ends it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from llmrec.chat.engine import ChatEngine
from llmrec.config import Config
from llmrec.errors import LLMRecError
from llmrec.service.ranking import Service


def run(cfg: Config, user: str | None = None, session: str | None = None, db: str | None = None,
        read: Callable[[str], str] = input, log=print) -> str:
    """Chat until an empty line or end of input; returns the session id."""
    def note(*a: object) -> None:
        print(*a, file=sys.stderr)

    service = Service.from_config(cfg, log=note)
    engine = ChatEngine.from_service(service, log=note, db=db)
    return asyncio.run(_loop(service, engine, user, session, read, log))


async def _loop(service: Service, engine: ChatEngine, user: str | None, session: str | None,
                read: Callable[[str], str], log) -> str:
    service.start()
    try:
        if session:
            engine.session(session)  # unknown: an error before the first prompt
            sid = session
        else:
            sid, _ = engine.create_session(user)
        log(f"session {sid} ({'user ' + user if user else 'anonymous'}); type a request, 'like 2', 'dislike 3', "
            "'more like 1'; an empty line or Ctrl-D ends")
        while True:
            try:
                text = (await asyncio.to_thread(read, "> ")).strip()
            except EOFError:
                break
            if not text:
                break
            try:
                t = await engine.turn(sid, text)
            except LLMRecError as e:  # a bad turn (a request error) is reported; the chat goes on
                print(f"llmrec: error: {e}", file=sys.stderr)
                continue
            log(t.reply + f"\n[understood by {t.understood_by}{': ' + t.lm_error if t.lm_error else ''}; "
                          f"{t.seconds:.1f} s]")
        return sid
    finally:
        await service.close()
