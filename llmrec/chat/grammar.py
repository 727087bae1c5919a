"""The understanding answer's grammar: what the LM may write when it reads a request.

`parse_answer` reads the LM's answer strictly and refuses anything off its format. Decoding under
this grammar (xgrammar's EBNF, applied on transformers by a logits processor and on vLLM by its
structured outputs) makes every answer one `parse_answer` accepts by construction: the keys and
separators of the format, genres among the catalogue's, year ranges among the decades of the
catalogue and the years the request itself names, and titles among the catalogue titles the
request mentions (folded as `Vocabulary` folds them; none mentioned, no `like` / `not` lines).
A small model that cannot follow the format on its own then only chooses among valid readings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from llmrec.chat.constraints import YEARS, Vocabulary, fold

MAX_LINES = 5
MAX_GENRES = 3
MAX_TITLES = 2


def literal(text: str) -> str:
    """An EBNF string literal (quotes, backslashes and control characters escaped)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def alternatives(values: Iterable[str]) -> str:
    return " | ".join(literal(v) for v in dict.fromkeys(values))


def year_ranges(request: str, years: Iterable[int]) -> list[str]:
    """Decades of the catalogue's years, and ranges between the years the request names and the
    catalogue's first and last year (so "from 1994" and "before 1980" have a reading)."""
    years = sorted({y for y in years if YEARS[0] <= y <= YEARS[1]})
    if not years:
        return []
    lo, hi = years[0], years[-1]
    out = [f"{d}-{d + 9}" for d in range(lo - lo % 10, hi + 1, 10)]
    named = sorted({int(y) for y in re.findall(r"(?<!\d)(1[89]\d\d|20[0-2]\d)(?!\d)", request)
                    if YEARS[0] <= int(y) <= YEARS[1]})
    for a in named:
        out += [f"{a}-{a}", f"{min(a, lo)}-{a}", f"{a}-{max(a, hi)}"]
        out += [f"{a}-{b}" for b in named if b > a]
    return list(dict.fromkeys(out))


def mentioned_titles(request: str, vocab: Vocabulary) -> list[str]:
    """Folded catalogue titles that occur in the folded request as whole words."""
    text = f" {fold(request)} "
    return [t for t in vocab.titles if len(t) > 1 and f" {t} " in text]


def understanding_grammar(request: str, vocab: Vocabulary, years: Iterable[int]) -> str:
    """The EBNF of every answer to `request` that `parse_answer` accepts (at most `MAX_LINES` lines,
    `MAX_GENRES` genres and `MAX_TITLES` titles a line)."""
    genres = sorted(set(vocab.genres.values()))
    ranges = year_ranges(request, years)
    titles = mentioned_titles(request, vocab)
    kinds = ['"genres: " genres', '"not genres: " genres'] + (['"years: " years'] if ranges else [])
    if titles:
        kinds += ['"like: " titles', '"not: " titles']
    rules = [
        'root ::= "none" | line' + ' ("\\n" line)?' * (MAX_LINES - 1),
        "line ::= " + " | ".join(kinds),
        "genres ::= genre" + ' (", " genre)?' * (MAX_GENRES - 1),
        "genre ::= " + alternatives(genres),
    ]
    if ranges:
        rules.append("years ::= " + alternatives(ranges))
    if titles:
        rules += ["titles ::= title" + ' (", " title)?' * (MAX_TITLES - 1), "title ::= " + alternatives(titles)]
    return "\n".join(rules) + "\n"
