"""`llmrec chat-eval`: simulated users talk to the chat loop (after iEvaLM, Wang et al. 2023,
"Rethinking the Evaluation for Conversational Recommendation in the Era of Large Language Models").

For each of the first N users of the prepared split, the target is the held-out test item. The
simulated user opens with a request made from the target's attributes ("I'm looking for a comedy
movie from the 1990s": its first genre and its decade), accepts when the target is among the
`chat.k` items shown, and otherwise rejects the list and reveals one more attribute per turn (its
other genres one by one, then its exact year; then it only rejects). Items shown once are not
shown again. Targets without a genre or a year are skipped (counted).

Systems, all on the same simulated users and the same understanding of their requests:

- `filter+<retriever>`: the non-LLM baseline: the constraints as a hard filter, ranked by
  `serve.retriever` alone (training popularity, or a baseline run's vectors, e.g. BPR-MF);
- `retrieval`: the chat loop's retrieval (request embedding + constraints + collaborative score)
  without reranking;
- `llm`: the chat loop: that retrieval's top `chat.retrieve` reranked by the LLM ranker.

Reported per system: success@t (share of users who accepted by turn t, t = 1..turns) and mean
turns (a user who never accepts counts `turns`). The understanding step is `chat.understand`,
applied once to every distinct text the simulated users can say (LM prompts batched); with
`lm`, the report says how often the LM's answer parsed strictly and why it did not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.chat.constraints import Constraints, merge, parse_rules
from llmrec.chat.engine import ChatEngine, Understood
from llmrec.chat.store import State
from llmrec.data.dataset import Item
from llmrec.service.ranking import STAGE

SYSTEMS = ("baseline", "retrieval", "llm")


@dataclass
class SimUser:
    user_id: str
    target: Item
    reveal: list[str] = field(default_factory=list)  # what the user says after each rejection

    def opening(self, noun: str) -> str:
        decade = self.target.year // 10 * 10  # type: ignore[operator]
        return f"I'm looking for a {self.target.genres[0].lower()} {noun} from the {decade}s."


def sim_users(engine: ChatEngine, n: int) -> tuple[list[SimUser], int]:
    """The first `n` users (split order) whose target has a genre and a year, and how many were skipped."""
    users, skipped = [], 0
    for seq in engine.service.split:
        if len(users) == n:
            break
        item = engine.dataset.items[seq.target(STAGE)]
        genres = [g for g in item.genres if g.casefold() != "unknown"]
        if not genres or item.year is None:
            skipped += 1
            continue
        item = Item(item.id, item.title, item.year, tuple(genres), item.fields)
        noun = engine.dataset.item_noun
        reveal = [f"No, none of these. It should also be a {g.lower()} {noun}." for g in genres[1:]]
        reveal.append(f"No, none of these. I want one from {item.year}.")
        users.append(SimUser(seq.user_id, item, reveal))
    return users, skipped


async def _dialogue(engine: ChatEngine, user: SimUser, system: str, turns: int, k: int,
                    understood: dict[str, Understood]) -> int | None:
    """The turn at which the user accepts (1-based), or None."""
    state = State(user_id=user.user_id)
    cons = Constraints()
    text = user.opening(engine.dataset.item_noun)
    for turn in range(1, turns + 1):
        cons = merge(cons, understood[text].constraints)
        state.requests.append(text)
        if system == "baseline":
            found, _ = await asyncio.to_thread(engine.retrieve, state, cons, "", 0.0, 1.0, k)
            shown = [i for i, _ in found]
        elif system == "retrieval":
            found, _ = await asyncio.to_thread(engine.retrieve, state, cons, " ".join(state.requests[-3:]), None,
                                               None, k)
            shown = [i for i, _ in found]
        else:
            shown = [i for i, _ in (await engine.recommend(state, cons))[0]]
        assert len(shown) <= k
        if user.target.id in shown:
            return turn
        state.shown.extend(shown)
        text = user.reveal[turn - 1] if turn - 1 < len(user.reveal) else "No, none of these."
    return None


def utterances(users: Sequence[SimUser], noun: str, turns: int) -> list[str]:
    """Every distinct text the simulated users can say in `turns` turns, in first-seen order."""
    texts = []
    for u in users:
        texts += [u.opening(noun), *u.reveal[:turns - 1], "No, none of these."]
    return list(dict.fromkeys(texts))


async def understand_all(engine: ChatEngine, texts: Sequence[str]) -> dict[str, Understood]:
    """Each text understood once, as the chat loop would (`chat.understand`), the LM's prompts batched."""
    if engine.settings.understand == "rules":
        return {t: await engine.understand(t) for t in texts}
    prompts = [engine.understanding_prompt(t) for t in texts]
    gens = await asyncio.to_thread(engine.generator, [engine.understanding_request(t, p)
                                                      for t, p in zip(texts, prompts)])
    return {t: engine.read_answer(t, p, g) for t, p, g in zip(texts, prompts, gens)}


def parse_rate(understood: dict[str, Understood], engine: ChatEngine) -> dict[str, object] | None:
    """How often the LM's answer parsed strictly, over the distinct requests, and why it did not."""
    if engine.settings.understand == "rules":
        return None
    reasons: dict[str, int] = {}
    for u in understood.values():
        if u.by != "lm":
            key = u.lm_error.split(" '")[0].split(' "')[0]
            reasons[key] = reasons.get(key, 0) + 1
    parsed = [t for t, u in understood.items() if u.by == "lm"]
    agree = sum(understood[t].constraints == parse_rules(t, engine.vocab) for t in parsed)
    return {"requests": len(understood), "parsed": len(parsed), "parsed_share": len(parsed) / max(1, len(understood)),
            "agrees_with_rules": agree, "failures": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "examples": [u.lm_answer[:120] for u in list(understood.values())[:3]]}


async def simulate(engine: ChatEngine, users: Sequence[SimUser], system: str, understood: dict[str, Understood],
                   turns: int = 5, concurrency: int = 16) -> list[int | None]:
    """Every user's dialogue with `system`; up to `concurrency` at once (their rerank queries batch)."""
    gate = asyncio.Semaphore(concurrency)
    k = engine.settings.k

    async def one(u: SimUser) -> int | None:
        async with gate:
            return await _dialogue(engine, u, system, turns, k, understood)

    return list(await asyncio.gather(*(one(u) for u in users)))


def summarise(results: Sequence[int | None], turns: int) -> dict[str, float]:
    accepted = np.array([t if t is not None else turns + 1 for t in results])
    out = {f"success@{t}": float((accepted <= t).mean()) for t in range(1, turns + 1)}
    out["mean_turns"] = float(np.minimum(accepted, turns).mean())
    return out


def table(rows: dict[str, dict[str, float]], turns: int) -> str:
    head = "| system | " + " | ".join(f"success@{t}" for t in range(1, turns + 1)) + " | mean turns |"
    lines = [head, "|" + "---|" * (turns + 2)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[f'success@{t}']:.3f}" for t in range(1, turns + 1))
                     + f" | {r['mean_turns']:.2f} |")
    return "\n".join(lines)


def run(engine: ChatEngine, users: int, turns: int, systems: Sequence[str], out: Path,
        log=print) -> dict[str, object]:
    sims, skipped = sim_users(engine, users)
    log(f"chat-eval: {len(sims)} simulated users ({skipped} skipped: target without genre or year), "
        f"k = {engine.settings.k}, {turns} turns, understanding: {engine.settings.understand}")
    retriever = engine.service.retriever.name
    names = {"baseline": f"filter+{retriever}", "retrieval": "retrieval (embedding+constraints+cf)",
             "llm": f"llm rerank ({engine.service.template.name})"}
    rows: dict[str, dict[str, float]] = {}
    results: dict[str, list[int | None]] = {}
    seconds: dict[str, float] = {}

    async def main() -> dict[str, object] | None:
        engine.service.start()
        try:
            t0 = time.perf_counter()
            understood = await understand_all(engine, utterances(sims, engine.dataset.item_noun, turns))
            seconds["understanding"] = time.perf_counter() - t0
            pr = parse_rate(understood, engine)
            log(f"understood {len(understood)} distinct requests ({engine.settings.understand}) in "
                f"{seconds['understanding']:.0f} s" + (f"; the LM's answer parsed for {pr['parsed']}" if pr else ""))
            for system in systems:
                t0 = time.perf_counter()
                results[system] = await simulate(engine, sims, system, understood, turns)
                seconds[system] = time.perf_counter() - t0
                rows[names[system]] = summarise(results[system], turns)
                log(f"{names[system]}: {rows[names[system]]} ({seconds[system]:.0f} s)")
            return pr
        finally:
            await engine.service.close()

    pr = asyncio.run(main())
    report = {"users": len(sims), "skipped": skipped, "k": engine.settings.k, "turns": turns,
              "understand": engine.settings.understand, "retriever": retriever,
              "template": engine.service.template.name, "systems": rows, "seconds": seconds, "parse_rate": pr,
              "per_user": {s: {u.user_id: r for u, r in zip(sims, res)} for s, res in results.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat_eval.json").write_text(json.dumps(report, indent=1))
    (out / "chat_eval.md").write_text(table(rows, turns) + "\n")
    return report
