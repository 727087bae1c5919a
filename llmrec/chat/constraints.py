"""What a chat request asks for: genres, a year range, "like TITLE", exclusions.

Two readers produce the same `Constraints`:

- `parse_answer`: the LM's answer to the understanding template (`templates/chat/understand_v2.j2`),
  read strictly: every non-blank line must be `key: value` with a known key (`genres`,
  `not genres`, `years`, `like`, `not`) whose values are catalogue genres, a year range within
  `YEARS` or catalogue titles; the single line `none` is an empty request. Anything else is a
  parse failure, and the caller falls back to the rules, so a small model's chatter never turns
  into a wrong filter.
- `parse_rules`: a rule-based reader of the request itself: genre names and their common
  synonyms, negated genres ("no horror", "without romance"), decades ("90s", "1990s", "the
  eighties"), years and year ranges ("from 1994", "before 1980", "1990-1995", "in 1994"), and
  catalogue titles after "like" / "similar to" (liked) or "not" / "except" (excluded).

Constraints of successive turns are merged (`merge`): a new genre or year range narrows the
request, exclusions accumulate. Conversational recommenders keep such a slot state across turns
(Sun & Zhang 2018, "Conversational Recommender System"; Wang et al. 2023, iEvaLM).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from llmrec.data.dataset import Item

YEARS = (1870, 2030)
KEYS = ("genres", "not genres", "years", "like", "not")

# Words people use for the ML-100K genres (the catalogue's own genre names are always known).
SYNONYMS = {
    "sci-fi": ("sci-fi", "scifi", "sci fi", "science fiction", "science-fiction", "space"),
    "comedy": ("comedy", "comedies", "funny", "comic", "humorous", "humor", "humour"),
    "horror": ("horror", "scary", "frightening"),
    "romance": ("romance", "romantic", "romances", "love story", "love stories", "romcom", "rom-com"),
    "animation": ("animation", "animated", "cartoon", "cartoons", "anime"),
    "children's": ("children's", "childrens", "children", "kids", "kid", "family"),
    "documentary": ("documentary", "documentaries", "doc"),
    "film-noir": ("film-noir", "film noir", "noir"),
    "musical": ("musical", "musicals", "music"),
    "thriller": ("thriller", "thrillers", "suspense", "suspenseful"),
    "western": ("western", "westerns", "cowboy", "cowboys"),
    "war": ("war",),
    "crime": ("crime", "gangster", "gangsters", "heist"),
    "mystery": ("mystery", "mysteries", "whodunit", "detective"),
    "fantasy": ("fantasy", "fantasies", "magic"),
    "action": ("action",),
    "adventure": ("adventure", "adventures"),
    "drama": ("drama", "dramas", "dramatic"),
}
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
_WANT = ("i", "i'd", "would", "you", "we", "we'd", "d", "also", "really", "might", "don't", "didn't", "do")
_NEG = r"(?:no|not|non|without|except|excluding|but not|nothing|avoid|hate|dislike|no more)"


@dataclass(frozen=True)
class Constraints:
    """A request's slots. Genres are catalogue genre names; items are catalogue ids."""

    genres: tuple[str, ...] = ()  # an item must have every one of them
    not_genres: tuple[str, ...] = ()  # an item must have none of them
    year_min: int | None = None
    year_max: int | None = None
    like: tuple[str, ...] = ()  # "like TITLE": items to find neighbours of
    exclude: tuple[str, ...] = ()  # "not TITLE": never recommended

    def is_empty(self) -> bool:
        return self == Constraints()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Constraints:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def allows(self, item: Item) -> bool:
        """Whether `item` passes the hard filters (genres, years, exclusions)."""
        if item.id in self.exclude or any(g in item.genres for g in self.not_genres):
            return False
        if not all(g in item.genres for g in self.genres):
            return False
        if self.year_min is not None and (item.year is None or item.year < self.year_min):
            return False
        return not (self.year_max is not None and (item.year is None or item.year > self.year_max))

    def describe(self, titles: Mapping[str, str]) -> str:
        """The constraints in a few words, for the reply template and logs."""
        parts = []
        if self.genres:
            parts.append(" and ".join(self.genres))
        if self.year_min is not None or self.year_max is not None:
            lo, hi = self.year_min, self.year_max
            parts.append(f"from {lo}-{hi}" if lo is not None and hi is not None and lo != hi else
                         f"from {lo}" if hi is None else f"up to {hi}" if lo is None else f"from {lo}")
        if self.like:
            parts.append("like " + ", ".join(titles.get(i, i) for i in self.like))
        if self.not_genres:
            parts.append("no " + ", ".join(self.not_genres))
        if self.exclude:
            parts.append("not " + ", ".join(titles.get(i, i) for i in self.exclude))
        return "; ".join(parts)


def merge(old: Constraints, new: Constraints) -> Constraints:
    """The session's constraints after a turn: new genres join the old ones (a later "no X"
    lifts an earlier "X"), a new year range replaces the old one, likes and exclusions accumulate."""
    genres = tuple(dict.fromkeys(g for g in (*old.genres, *new.genres) if g not in new.not_genres))
    not_genres = tuple(dict.fromkeys(g for g in (*old.not_genres, *new.not_genres) if g not in new.genres))
    years = (new.year_min, new.year_max) if (new.year_min, new.year_max) != (None, None) else (old.year_min,
                                                                                                 old.year_max)
    exclude = tuple(dict.fromkeys((*old.exclude, *new.exclude)))
    like = tuple(dict.fromkeys(i for i in (*old.like, *new.like) if i not in exclude))
    return replace(old, genres=genres, not_genres=not_genres, year_min=years[0], year_max=years[1],
                   like=like, exclude=exclude)


def fold(text: str) -> str:
    """Lower case, "The X"/"X, The" alike, punctuation other than - and ' removed, spaces collapsed."""
    t = text.casefold().replace("&", " and ")
    t = re.sub(r"^(.*), (the|a|an)$", r"\2 \1", t.strip())
    t = re.sub(r"[^\w'\- ]+", " ", t)
    t = re.sub(r"^(the|a|an) ", "", " ".join(t.split()))
    return t


@dataclass
class Vocabulary:
    """The catalogue's genres and titles, as the readers match them."""

    genres: dict[str, str]  # folded word -> catalogue genre name
    titles: dict[str, list[str]] = field(default_factory=dict)  # folded title -> item ids (most popular first)
    max_title_words: int = 1

    @classmethod
    def build(cls, items: Iterable[Item], popularity: Mapping[str, float] | None = None) -> Vocabulary:
        items = list(items)
        names = sorted({g for it in items for g in it.genres if g.casefold() != "unknown"})
        genres: dict[str, str] = {}
        for name in names:
            for word in (name.casefold(), *SYNONYMS.get(name.casefold(), ())):
                genres.setdefault(word, name)
        pop = popularity or {}
        titles: dict[str, list[str]] = {}
        for it in sorted(items, key=lambda i: -pop.get(i.id, 0.0)):
            key = fold(it.title)
            if key:
                titles.setdefault(key, []).append(it.id)
        return cls(genres, titles, max((len(k.split()) for k in titles), default=1))

    def genre(self, word: str) -> str | None:
        return self.genres.get(fold(word)) or self.genres.get(word.casefold().strip())

    def title(self, text: str) -> str | None:
        """The most popular item whose folded title is exactly `text` (folded)."""
        ids = self.titles.get(fold(text))
        return ids[0] if ids else None

    def title_prefix(self, words: list[str]) -> tuple[str | None, int]:
        """The longest catalogue title the folded `words` start with: (item id, words used)."""
        for n in range(min(len(words), self.max_title_words), 0, -1):
            ids = self.titles.get(" ".join(words[:n]))
            if ids and (n > 1 or len(words[0]) > 3):  # one short word is too often a plain word
                return ids[0], n
        return None, 0


# -- the LM's answer, read strictly ------------------------------------------------------------
def parse_answer(text: str, vocab: Vocabulary, request: str | None = None) -> tuple[Constraints | None, str]:
    """(constraints, "") when every line of the answer is well-formed, else (None, the reason).

    With the `request` given, a title the request does not mention is refused ("title not in the
    request"): a small model copies the prompt's worked example rather than read the request."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None, "empty answer"
    if len(lines) == 1 and lines[0].casefold().rstrip(".") == "none":
        return Constraints(), ""
    slots: dict[str, list[Any]] = {k: [] for k in KEYS}
    years: tuple[int | None, int | None] = (None, None)
    for line in lines:
        line = re.sub(r"^(?:[-*]|\d{1,2}[.)])\s+", "", line)
        if ":" not in line:
            return None, f"no colon in {line[:60]!r}"
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.casefold()
        if key not in KEYS:
            return None, f"unknown key {key[:30]!r}"
        values = [v.strip().strip('"').strip() for v in value.split("," if key != "years" else "\n")]
        values = [v for v in values if v]
        if not values:
            return None, f"empty {key}"
        for v in values:
            if key in ("genres", "not genres"):
                g = vocab.genre(v)
                if g is None:
                    return None, f"unknown genre {v[:30]!r}"
                slots[key].append(g)
            elif key == "years":
                m = re.fullmatch(r"(\d{4})\s*(?:-|to|–)\s*(\d{4})|(\d{4})", v)
                if not m:
                    return None, f"bad years {v[:30]!r}"
                lo, hi = (int(m[1]), int(m[2])) if m[1] else (int(m[3]), int(m[3]))
                if not (YEARS[0] <= lo <= hi <= YEARS[1]):
                    return None, f"years out of range {v[:30]!r}"
                years = (lo, hi)
            else:
                item = vocab.title(v)
                if item is None:
                    return None, f"unknown title {v[:40]!r}"
                if request is not None and fold(v) not in fold(request):
                    return None, f"title not in the request {v[:40]!r}"
                slots[key].append(item)
    return Constraints(tuple(dict.fromkeys(slots["genres"])), tuple(dict.fromkeys(slots["not genres"])),
                       years[0], years[1], tuple(dict.fromkeys(slots["like"])),
                       tuple(dict.fromkeys(slots["not"]))), ""


# -- rules over the request --------------------------------------------------------------------
def _years(text: str) -> tuple[int | None, int | None]:
    t = text.casefold()
    m = re.search(r"\b(?:between|from)\s+(\d{4})\s+(?:and|to|-)\s+(\d{4})\b", t) or \
        re.search(r"\b(\d{4})\s*(?:-|–|to)\s*(\d{4})\b", t)
    if m:
        lo, hi = sorted((int(m[1]), int(m[2])))
        return lo, hi
    m = re.search(r"\b(?:(1[89]|20)(\d)0s|'?(\d)0s)\b", t)
    if m:
        start = int(m[1] + m[2] + "0") if m[1] else 1900 + int(m[3]) * 10
        return start, start + 9
    for word, start in _DECADE_WORDS.items():
        if re.search(rf"\b{word}\b", t):
            return start, start + 9
    m = re.search(r"\b(?:after|since|newer than|later than)\s+(\d{4})\b", t) or \
        re.search(r"\bfrom\s+(\d{4})\s+(?:on|onwards?)\b", t)
    lo = int(m[1]) + (1 if m and m.group(0).startswith(("after", "newer", "later")) else 0) if m else None
    m = re.search(r"\b(?:before|until|up to|older than|earlier than)\s+(\d{4})\b", t)
    hi = int(m[1]) - (0 if m and m.group(0).startswith(("until", "up to")) else 1) if m else None
    if lo is not None or hi is not None:
        return lo, hi
    m = re.search(r"\b(?:in|from|of)\s+(1[89]\d\d|20[0-2]\d)\b", t)
    if m:
        return int(m[1]), int(m[1])
    return None, None


def parse_rules(text: str, vocab: Vocabulary) -> Constraints:
    """The constraints the rules find in a request (see the module docstring)."""
    t = " " + text.casefold().replace("\u2019", "'") + " "
    genres, not_genres = [], []
    for word in sorted(vocab.genres, key=len, reverse=True):  # longest first: "science fiction" before "fiction"
        for m in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", t):
            before = t[max(0, m.start() - 24):m.start()]
            name = vocab.genres[word]
            negated = re.search(rf"\b{_NEG}\s+(?:(?:a|an|any|too|more|the|[\w-]+,?\s+(?:or|and|nor)?)\s*)*$",
                                before) is not None
            (not_genres if negated else genres).append(name)
            t = t[:m.start()] + " " * (m.end() - m.start()) + t[m.end():]  # used up: "film noir" is not "noir" twice
    lo, hi = _years(text)
    like, exclude = _titles(text, vocab)
    return Constraints(tuple(dict.fromkeys(g for g in genres if g not in not_genres)), tuple(dict.fromkeys(not_genres)),
                       lo, hi, tuple(like), tuple(exclude))


def _titles(text: str, vocab: Vocabulary) -> tuple[list[str], list[str]]:
    """Titles after "like" / "similar to" / "such as" (liked) and "not" / "except" (excluded)."""
    words = fold(text).split()
    like: list[str] = []
    exclude: list[str] = []
    k = 0
    while k < len(words):
        w, nxt = words[k], words[k + 1] if k + 1 < len(words) else ""
        target, skip = None, 0
        prev = words[k - 1] if k else ""
        if (w == "like" and prev not in _WANT) or (w == "similar" and nxt == "to") or (w == "such" and nxt == "as"):
            target, skip = like, (2 if w in ("similar", "such") else 1)
        elif w in ("not", "except", "excluding", "besides") or (w == "other" and nxt == "than"):
            target, skip = exclude, (2 if w == "other" else 1)
        if target is not None:
            rest = words[k + skip:]
            while rest and rest[0] in ("the", "a", "an", "movie", "film", "movies", "films"):
                rest = rest[1:]
            item, used = vocab.title_prefix(rest)
            if item is not None and not (used == 1 and vocab.genre(rest[0])):
                target.append(item)
                k += skip + used
                continue
        k += 1
    return list(dict.fromkeys(like)), list(dict.fromkeys(i for i in exclude if i not in like))
