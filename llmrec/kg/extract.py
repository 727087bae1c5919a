"""Knowledge extraction with the LM: (item, relation, entity) facts from an item's text.

A `kg-extract` template (`templates/kg/extract_v1.j2`) shows the item's title (and year and
genres) after a worked example and asks for facts, one per line as `relation: value`; the LM
continues greedily for a bounded number of tokens, in left-padded batches. The answer is parsed
strictly (as in LLM-based KG construction, e.g. Petroni et al. 2019 "Language Models as Knowledge
Bases?", and the KG-completion prompts surveyed by Pan et al. 2024): only a fixed list of
relations and well-formed values are kept; every other line is dropped and counted under one
reason, so a run says how much of what the LM wrote was usable. The facts are written as a CSV
triple file (`head,relation,tail`, the head an item id) that `llmrec.kg.triples.read` loads and the
KG scorers take in place of the dataset's KG (`make("kg-ppr", kg=path)`, `llmrec explain --kg`).

Parsing rules, in order, for each non-blank line of the answer (the answer ends at the first blank
line; the worked example is separated from the item by one, so a model that goes on to invent
another item stops there):

- `overlong`: longer than `MAX_LINE` characters;
- `prompt_echo`: repeats a prompt line that is not itself a fact (the instruction, the item's own
  title or genres line); a copied fact of the worked example is kept, scored like any other
  fact, and counted as `example_copies`;
- a list marker (`- `, `* `, `1. `, `2) `) is tolerated and removed;
- `missing_colon`; `unknown_relation` (relations are matched case-insensitively);
  `empty_entity`;
- `bad_value`: a year that is not four digits within 1870-2030, a decade that is not like
  `1990s` or `'90s`, or an entity of another relation with no letter in it;
- `duplicate`: the same relation and entity (case-insensitively) already kept for this item;
- `truncated`: the last line when generation stopped at the token limit, not at a blank line or
  the end-of-sequence token (it may be cut mid-word).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Item
from llmrec.errors import DataError
from llmrec.models.generate import Generator, Request
from llmrec.prompts.render import Template

RELATIONS = ("director", "writer", "producer", "actor", "genre", "year", "decade", "country", "language")
DROP_REASONS = ("overlong", "prompt_echo", "missing_colon", "unknown_relation", "empty_entity", "bad_value",
                "duplicate", "truncated")
MAX_LINE = 120
DEFAULT_TEMPLATE = "kg/extract_v1"
_MARKER = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+")
_BLANK = re.compile(r"\n[ \t]*\n")
_DECADE = re.compile(r"^(?:(\d{3})0|'?(\d)0)s$")


# -- parsing -----------------------------------------------------------------------------------
@dataclass
class Parsed:
    """One answer: the facts kept (relation, entity), the lines dropped per reason, the lines read."""

    facts: list[tuple[str, str]]
    dropped: Counter
    lines: int
    example_copies: int = 0


def _fold(s: str) -> str:
    return " ".join(s.split()).casefold()


def _fact(line: str) -> tuple[str, str] | str:
    """(relation, entity) of a well-formed line, else the reason it is not one."""
    if ":" not in line:
        return "missing_colon"
    rel, _, ent = line.partition(":")
    rel, ent = rel.strip().casefold(), " ".join(ent.split())
    if rel not in RELATIONS:
        return "unknown_relation"
    if not ent:
        return "empty_entity"
    if rel == "year":
        return (rel, ent) if re.fullmatch(r"\d{4}", ent) and 1870 <= int(ent) <= 2030 else "bad_value"
    if rel == "decade":
        m = _DECADE.match(ent)
        return (rel, f"{m.group(1)}0s" if m.group(1) else f"19{m.group(2)}0s") if m else "bad_value"
    return (rel, ent) if any(c.isalpha() for c in ent) else "bad_value"


def parse(text: str, prompt: str = "", finished: bool = True) -> Parsed:
    """The facts of one generated answer under the rules in the module docstring."""
    answer = _BLANK.split(text.lstrip(" \t\n"), maxsplit=1)
    ended = len(answer) > 1
    lines = [s.strip() for s in answer[0].split("\n") if s.strip()]
    prompt_lines = [s.strip() for s in prompt.split("\n") if s.strip()]
    prompt_facts = {_fold(s) for s in prompt_lines if isinstance(_fact(_MARKER.sub("", s)), tuple)}
    echo = {_fold(s) for s in prompt_lines} - prompt_facts
    dropped: Counter = Counter()
    facts: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    copies = 0
    for n, line in enumerate(lines):
        if n == len(lines) - 1 and not finished and not ended:
            dropped["truncated"] += 1
            continue
        if len(line) > MAX_LINE:
            dropped["overlong"] += 1
            continue
        if _fold(line) in echo:
            dropped["prompt_echo"] += 1
            continue
        line = _MARKER.sub("", line)
        fact = _fact(line)
        if isinstance(fact, str):
            dropped[fact] += 1
            continue
        key = (fact[0], fact[1].casefold())
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        facts.append(fact)
        copies += _fold(line) in prompt_facts
    return Parsed(facts, dropped, len(lines), copies)


# -- a whole extraction ------------------------------------------------------------------------
@dataclass
class Extraction:
    """Facts per item (in the order extracted) and the counts behind them."""

    items: list[str]
    facts: dict[str, list[tuple[str, str]]]
    dropped: Counter
    lines: int
    example_copies: int
    raw: list[dict[str, Any]] = field(default_factory=list)  # per item: prompt tokens, text, finished, counts

    @property
    def kept(self) -> int:
        return sum(len(f) for f in self.facts.values())

    def triples(self) -> list[tuple[str, str, str]]:
        return [(i, r, e) for i in self.items for r, e in self.facts[i]]


def extract(generator: Generator, template: Template, items: Iterable[Item], item_noun: str = "movie",
            max_new_tokens: int = 96, progress: str = "kg-extract") -> Extraction:
    """Generate (greedy, bounded, ending at the first blank line) and parse facts for each item."""
    items = list(items)
    prompts = [generator.prompt(template, item=it.to_dict(), item_noun=item_noun, relations=list(RELATIONS))
               for it in items]
    gens = generator([Request(p, max_new_tokens, "\n\n") for p in prompts], progress=progress)
    ex = Extraction([it.id for it in items], {}, Counter(), 0, 0)
    for it, prompt, g in zip(items, prompts, gens):
        p = parse(g.text, prompt, g.finished)
        ex.facts[it.id] = p.facts
        ex.dropped.update(p.dropped)
        ex.lines += p.lines
        ex.example_copies += p.example_copies
        ex.raw.append({"item_id": it.id, "text": g.text, "finished": g.finished, "new_tokens": g.tokens,
                       "lines": p.lines, "kept": len(p.facts), "dropped": dict(p.dropped)})
    return ex


def write_triples(path: str | Path, triples: Sequence[tuple[str, str, str]]) -> Path:
    """A CSV triple file with the header `head,relation,tail` (head: the item id), as `triples.read`
    loads it. An empty extraction writes the header only (`triples.read` refuses a file with no
    triples, so a scorer never runs on an empty graph by accident)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["head", "relation", "tail"])
            w.writerows(triples)
    except OSError as e:
        raise DataError(f"cannot write the triple file {path}: {e.strerror}") from None
    return path


def write_raw(path: str | Path, ex: Extraction) -> Path:
    """The generations, one JSON line per item, for reading what the model wrote."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in ex.raw)
    return path
