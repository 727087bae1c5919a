"""How good are the extracted facts: precision and recall against what is known offline.

- `genre`, `year`, `decade` are scored by name against the items file (ML-100K: its 18 genres
  and release year): precision = extracted (item, value) pairs that are true / pairs extracted,
  recall = true pairs found / true pairs of the items extracted for. Genre names are compared
  case-insensitively after a few aliases (`science fiction` = `sci-fi`, `film noir` =
  `film-noir`, `children` = `children's`); ML-100K's `unknown` genre is no truth.
- `director`, `writer`, `producer`, `actor`, `country`, `language` cannot be scored by name
  offline: the dataset's KG (a Freebase extract) names its entities by Freebase ids only. What can
  be scored is structure (`pairwise`): for each relation the KG also has, over the items that
  have facts of it in both, pairs of items the LM gives a common value (same name, case-
  insensitively) against pairs that share a KG entity. Pairwise precision = LM pairs that share a
  KG entity / LM pairs; recall = KG-sharing pairs the LM also joins / KG-sharing pairs; the base
  rate (KG-sharing pairs / all pairs) is the precision of joining pairs at random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from llmrec.data.dataset import Item
from llmrec.kg.graph import KnowledgeGraph

BY_METADATA = ("genre", "year", "decade")
BY_KG_ONLY = ("director", "writer", "producer", "actor", "country", "language")
_GENRE_ALIASES = {"science fiction": "sci-fi", "scifi": "sci-fi", "sci fi": "sci-fi", "film noir": "film-noir",
                  "noir": "film-noir", "children": "children's", "childrens": "children's"}


def normalise(relation: str, entity: str) -> str:
    """The form values are compared in: case-folded, spaces collapsed, genre aliases applied."""
    e = " ".join(entity.split()).casefold().rstrip(".")
    return _GENRE_ALIASES.get(e, e) if relation == "genre" else e


def truth(item: Item) -> dict[str, set[str]]:
    """What the items file says of one item, in `normalise`d form."""
    out: dict[str, set[str]] = {"genre": {normalise("genre", g) for g in item.genres} - {"unknown"},
                                "year": set(), "decade": set()}
    if item.year:
        out["year"] = {str(item.year)}
        out["decade"] = {f"{item.year // 10 * 10}s"}
    return out


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def by_metadata(facts: Mapping[str, Sequence[tuple[str, str]]], items: Mapping[str, Item]) -> list[dict[str, Any]]:
    """One row per relation: facts extracted, precision, recall, items with a fact of it.

    `facts` holds every item extracted for (an item with no facts counts towards recall)."""
    rows = []
    for rel in BY_METADATA + BY_KG_ONLY:
        got = {(i, normalise(rel, e)) for i, fs in facts.items() for r, e in fs if r == rel}
        row: dict[str, Any] = {"relation": rel, "facts": sum(r == rel for fs in facts.values() for r, _ in fs),
                               "items": len({i for i, _ in got}), "precision": None, "recall": None}
        if rel in BY_METADATA:
            true = {(i, v) for i in facts for v in truth(items[i])[rel]}
            row.update(precision=_ratio(len(got & true), len(got)), recall=_ratio(len(got & true), len(true)),
                       true_facts=len(true), correct=len(got & true))
        rows.append(row)
    return rows


def pairwise(facts: Mapping[str, Sequence[tuple[str, str]]], kg: KnowledgeGraph) -> list[dict[str, Any]]:
    """Per relation in both the LM's facts and the KG: pairwise agreement (module docstring)."""
    index = {i: k for k, i in enumerate(kg.items)}
    rows = []
    for rel in (r for r in BY_METADATA[:1] + BY_KG_ONLY if r in kg.relations):
        b = kg.item_entity[kg.relations.index(rel)]
        kg_of = {i: set(b[index[i]].indices.tolist()) for i in facts if i in index}
        lm_of = {i: {normalise(rel, e) for r, e in fs if r == rel} for i, fs in facts.items()}
        both = sorted(i for i in facts if kg_of.get(i) and lm_of[i])
        pairs = lm_pairs = kg_pairs = agree = 0
        for x, y in combinations(both, 2):
            pairs += 1
            lm, kg_share = bool(lm_of[x] & lm_of[y]), bool(kg_of[x] & kg_of[y])
            lm_pairs += lm
            kg_pairs += kg_share
            agree += lm and kg_share
        rows.append({"relation": rel, "items": len(both), "pairs": pairs, "lm_pairs": lm_pairs, "kg_pairs": kg_pairs,
                     "agree": agree, "precision": _ratio(agree, lm_pairs), "recall": _ratio(agree, kg_pairs),
                     "base_rate": _ratio(kg_pairs, pairs)})
    return rows


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The by-metadata rows as a markdown table."""
    lines = ["| relation | facts | precision | recall | items |", "|---|---|---|---|---|"]
    for r in rows:
        p = _f(r["precision"]) if r["relation"] in BY_METADATA else "n/a (no names offline)"
        lines.append(f"| {r['relation']} | {r['facts']} | {p} | {_f(r['recall'])} | {r['items']} |")
    return "\n".join(lines)


def pairwise_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| relation | items | pairs | LM pairs | KG pairs | agree | precision | recall | base rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['relation']} | {r['items']} | {r['pairs']} | {r['lm_pairs']} | {r['kg_pairs']} | "
                     f"{r['agree']} | {_f(r['precision'])} | {_f(r['recall'])} | {_f(r['base_rate'])} |")
    return "\n".join(lines)
