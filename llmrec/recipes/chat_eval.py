"""`llmrec chat-eval`: simulated users (iEvaLM-style) against the chat loop and non-LLM baselines.

For each of the first `users` users of the prepared split the target is the held-out test item;
the simulated user asks for its first genre and decade, accepts when it is among the `chat.k`
items shown, else rejects and reveals one more attribute (`llmrec/chat/evaluate.py`). Writes
`chat_eval.json` and `chat_eval.md` into `out` (default `<out_dir>/chat-eval`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from llmrec.chat import evaluate
from llmrec.chat.engine import ChatEngine
from llmrec.config import Config
from llmrec.errors import ConfigError
from llmrec.service.ranking import Service


def run(cfg: Config, users: int = 200, turns: int = 5, systems: str = "baseline,retrieval,llm", out: str = "",
        log=print) -> dict[str, Any]:
    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    bad = [s for s in chosen if s not in evaluate.SYSTEMS]
    if bad or not chosen:
        raise ConfigError(f"--systems: expected a comma-separated subset of {list(evaluate.SYSTEMS)}; got {systems!r}")
    if users < 1 or turns < 1:
        raise ConfigError(f"--users and --turns must be >= 1; got {users}, {turns}")

    def note(*a: object) -> None:
        print(*a, file=sys.stderr)

    service = Service.from_config(cfg, log=note)
    engine = ChatEngine.from_service(service, log=note, db=":memory:")
    folder = Path(out or Path(service.cfg.out_dir) / "chat-eval")
    log(f"chat-eval: {users} simulated users x {turns} turns, systems {', '.join(chosen)} -> {folder}")
    report = evaluate.run(engine, users, turns, chosen, folder)
    log(evaluate.table(report["systems"], turns))
    pr = report.get("parse_rate")
    if pr:
        log(f"LM understanding: {pr['parsed']}/{pr['requests']} distinct requests parsed strictly "
            f"({pr['agrees_with_rules']} equal to the rules' reading); failures: {pr['failures']}")
    log(f"wrote {folder / 'chat_eval.json'} and {folder / 'chat_eval.md'}")
    return report
