"""Why `kg-path` scores an item: its paths from the user's history, in words.

A path type's term w_t log(1 + n_t) is shared equally by its n_t paths, so the paths' shares add
up to the score and the highest shares are the reasons that weigh most ("you watched A; A and I
share director X"). Entities are shown by name where the KG has names, else by id: ML-100K's KG
names entities by Freebase ids only (`m.0bxtg`), which this offline package cannot resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from llmrec.errors import DataError
from llmrec.kg.paths import COWATCHED, KGPaths
from llmrec.models.generate import Request


@dataclass(frozen=True)
class Path:
    """One path user -> `history_item` -> (`entity` | item-item fact | `users` co-watchers) -> item."""

    history_item: int
    path_type: str
    share: float  # this path's part of the score
    entity: int | None = None  # index into the KG's entities; None for item-item facts and co-watching
    users: int = 0  # co-watched: training users who interacted with both items


def paths(model: KGPaths, user: int, item: int, stage: str = "test") -> tuple[float, list[Path]]:
    """The score of `item` for `user` and every path behind it, highest share first (ties: most
    recent history item first)."""
    assert model.weights is not None and model.data is not None and model.graph is not None, "fit first"
    kg, data = model.graph, model.data
    counts = model.path_count_features(np.array([user]), stage)[:, 0, item]
    per_path = np.divide(model.weights * np.log1p(counts), counts, out=np.zeros_like(counts), where=counts > 0)
    history = list(dict.fromkeys(reversed(data.history(user, stage).tolist())))  # most recent first
    found: list[Path] = []
    for h in history:
        if h == item:
            continue  # the counts leave out an item's paths to itself
        for t, rel in enumerate(kg.relations):
            b = kg.item_entity[t]
            for e in np.intersect1d(b[h].indices, b[item].indices):
                found.append(Path(h, rel, float(per_path[t]), entity=int(e)))
            if kg.item_item[t][h, item]:
                found.append(Path(h, rel, float(per_path[t])))
        if model.cowatched:
            t = model.path_types.index(COWATCHED)
            n = int(model.counts[t][h, item])
            if n:
                found.append(Path(h, COWATCHED, float(n * per_path[t]), users=n))
    found.sort(key=lambda p: -p.share)
    return float(model.weights @ np.log1p(counts)), found


def in_words(path: Path, model: KGPaths, titles: Mapping[str, str], item: int) -> str:
    """"you watched A; A and I share director X"."""
    items = model.data.items
    a, i = (f'"{titles.get(items[k], items[k])}"' for k in (path.history_item, item))
    if path.path_type == COWATCHED:
        who = "1 user" if path.users == 1 else f"{path.users} users"
        return f"you watched {a}; {who} watched both {a} and {i}"
    if path.entity is None:
        return f"you watched {a}; {a} and {i} are linked as {path.path_type}"
    return f"you watched {a}; {a} and {i} share {path.path_type} {model.graph.entity_label(path.entity)}"


def explain(model: KGPaths, titles: Mapping[str, str], user_id: str, item_id: str, top: int = 5,
            stage: str = "test") -> list[str]:
    """Lines for `llmrec explain`: the score, the `top` paths in words with their shares, the weights."""
    data = model.data
    if user_id not in data.user_index:
        raise DataError(f"unknown user {user_id!r}: not in the prepared split ({len(data.users)} users)")
    if item_id not in data.item_index:
        raise DataError(f"unknown item {item_id!r}: not in the catalogue ({len(data.items)} items)")
    u, i = data.user_index[user_id], data.item_index[item_id]
    score, found = paths(model, u, i, stage)
    title = titles.get(item_id, item_id)
    seen = i in set(data.history(u, stage).tolist())
    lines = [f'user {user_id}, item {item_id} "{title}": kg-path score {score:.3f} from {len(found)} paths'
             + (" (the item is in the user's history)" if seen else "")]
    if not found:
        lines.append("  no path from the user's history reaches this item (no shared entity, no co-watcher)")
    for n, p in enumerate(found[:top], 1):
        lines.append(f"  {n}. {in_words(p, model, titles, i)}  [{p.share:+.3f}]")
    if len(found) > top:
        lines.append(f"  ... {len(found) - top} more paths, {sum(p.share for p in found[top:]):+.3f} together")
    weights = ", ".join(f"{t} {w:+.2f}" for t, w in sorted(model.relation_weights().items(), key=lambda x: -x[1]))
    lines.append(f"path-type weights (fitted on the validation items): {weights}")
    if model.graph.ids_only and not model.graph.names:
        lines.append("entities are shown by id: this knowledge graph has no entity names")
    return lines


def path_vars(path: Path, model: KGPaths, titles: Mapping[str, str]) -> dict[str, object]:
    """One path as the `kg-explain` template sees it. An entity known by id only is left out
    (`entity` empty): a Freebase id means nothing in a sentence."""
    kg, items = model.graph, model.data.items
    kind = "co-watched" if path.path_type == COWATCHED else "link" if path.entity is None else "entity"
    entity = ""
    if path.entity is not None:
        e = kg.entities[path.entity]
        entity = kg.names.get(e, "" if kg.ids_only else e)
    return {"watched": titles.get(items[path.history_item], items[path.history_item]), "kind": kind,
            "relation": path.path_type, "entity": entity, "users": path.users}


def verbalize(generator, template, model: KGPaths, titles: Mapping[str, str], user_id: str, item_id: str, top: int = 3,
              max_new_tokens: int = 48, item_noun: str = "movie", stage: str = "test") -> str:
    """One sentence from the LM (`generator`: `llmrec.models.generate.Generator`, greedy, bounded) built on the `top`
    paths of `paths`: the first line it writes, or a note when there is no path to build on."""
    data = model.data
    u, i = data.user_index[user_id], data.item_index[item_id]
    _, found = paths(model, u, i, stage)
    if not found:
        return "(no path to explain)"
    prompt = generator.prompt(template, item={"id": item_id, "title": titles.get(item_id, item_id)}, item_noun=item_noun,
                       paths=[path_vars(p, model, titles) for p in found[:top]])
    text = generator([Request(prompt, max_new_tokens, "\n")])[0].text.strip()
    return text.split("\n", 1)[0].strip() or "(the model wrote nothing)"
