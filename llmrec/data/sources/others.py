"""Steam (UCSD: reviews and games as Python-literal lines), Last.fm (HetRec 2011: tab-separated),
Goodreads (UCSD genre subsets: nested JSON lines) and Yelp (the open dataset's JSON lines).

Each converter documents its one choice where the upstream files leave one open: which field is
the user, where the time comes from and what becomes the item's genres.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import UTC, datetime

from llmrec.data.loaders import year_of
from llmrec.data.sources import Source
from llmrec.data.sources.tables import Files, Tables, records


def _seconds(text: str, fmt: str) -> float:
    when = datetime.strptime(text.strip(), fmt)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def convert_steam(files: Files, tables: Tables, source: Source) -> None:
    """Users are `user_id` where a review has one, else `username` (most reviews carry only the
    name, as in SASRec's Steam); the time is the review's date (a day: ties are broken by the split);
    genres are the game's genres, then its tags."""
    with files.open("reviews") as f:
        for rec in records(f, tables):
            try:
                when = _seconds(str(rec["date"]), "%Y-%m-%d")
            except (KeyError, ValueError):
                tables.drop("unreadable interaction row")
                continue
            tables.interaction(rec.get("user_id") or rec.get("username"), rec.get("product_id"),
                               1.0, when)
    with files.open("games") as f:
        for rec in records(f, tables, "unreadable item row"):
            genres = list(rec.get("genres") or []) + list(rec.get("tags") or [])
            tables.item(rec.get("id"), rec.get("app_name") or rec.get("title"), year_of(rec.get("release_date")),
                        genres[:8], developer=rec.get("developer") or "", publisher=rec.get("publisher") or "",
                        price=str(rec.get("price") or ""))


def _tsv(f) -> csv.DictReader:
    return csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def convert_lastfm(files: Files, tables: Tables, source: Source) -> None:
    """HetRec 2011 Last.fm: `user_artists.dat` has listening counts but no time, and
    `user_taggedartists-timestamps.dat` has the time (ms) a user first tagged an artist. An
    interaction is a (user, artist) pair with a tag time, the earliest; its rating is the listening
    count (1 when the pair was tagged but not listened to). Pairs never tagged have no time and are
    counted as dropped. An artist's genres are its three most used tags."""
    first: dict[tuple[str, str], float] = {}
    tag_counts: dict[str, Counter[str]] = defaultdict(Counter)
    with files.open("tagged") as f:
        for rec in _tsv(f):
            try:
                key, when = (rec["userID"], rec["artistID"]), float(rec["timestamp"]) / 1000.0
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable interaction row")
                continue
            first[key] = min(when, first.get(key, when))
            tag_counts[rec["artistID"]][rec.get("tagID") or ""] += 1
    weights: dict[tuple[str, str], float] = {}
    with files.open("listens") as f:
        for rec in _tsv(f):
            try:
                weights[(rec["userID"], rec["artistID"])] = float(rec["weight"])
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable listening row")
    tables.dropped["listened, never tagged: no time"] += sum(1 for k in weights if k not in first)
    for (user, artist), when in sorted(first.items(), key=lambda kv: (kv[1], kv[0])):
        tables.interaction(user, artist, weights.get((user, artist), 1.0), when)
    names: dict[str, str] = {}
    with files.open("tags", "latin-1") as f:
        for rec in _tsv(f):
            names[rec.get("tagID") or ""] = rec.get("tagValue") or ""
    with files.open("artists") as f:
        for rec in _tsv(f):
            tags = [names.get(t, "") for t, _ in tag_counts[rec.get("id") or ""].most_common(3)]
            tables.item(rec.get("id"), rec.get("name"), None, tags, url=rec.get("url") or "")


SHELVES_NOT_GENRES = {"to-read", "currently-reading", "read", "favorites", "owned", "books-i-own", "default",
                      "library", "kindle", "ebook", "ebooks", "wish-list", "to-buy", "owned-books", "my-books"}


def convert_goodreads(files: Files, tables: Tables, source: Source) -> None:
    """Every shelving is an interaction at its `date_added`, rated 0 when the reader gave no
    stars (`data.min_rating=1` keeps the rated ones); a book's genres are its five most used shelves
    that name a genre (not "to-read", "owned" ...)."""
    with files.open("interactions") as f:
        for rec in records(f, tables):
            try:
                when = _seconds(str(rec["date_added"]), "%a %b %d %H:%M:%S %z %Y")
                rating = float(rec.get("rating") or 0)
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable interaction row")
                continue
            tables.interaction(rec.get("user_id"), rec.get("book_id"), rating, when)
    with files.open("books") as f:
        for rec in records(f, tables, "unreadable item row"):
            shelves = []
            for s in rec.get("popular_shelves") or []:
                name = str((s or {}).get("name") or "")
                if name and name not in SHELVES_NOT_GENRES:
                    shelves.append(name)
            tables.item(rec.get("book_id"), rec.get("title_without_series") or rec.get("title"),
                        year_of(rec.get("publication_year")), shelves[:5],
                        description=str(rec.get("description") or "")[:2000],
                        publisher=str(rec.get("publisher") or ""), pages=str(rec.get("num_pages") or ""))


def convert_yelp(files: Files, tables: Tables, source: Source) -> None:
    """Reviews (stars, date) of businesses; a business's genres are its categories."""
    with files.open("reviews") as f:
        for rec in records(f, tables):
            try:
                when = _seconds(str(rec["date"]), "%Y-%m-%d %H:%M:%S")
                rating = float(rec["stars"])
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable interaction row")
                continue
            tables.interaction(rec.get("user_id"), rec.get("business_id"), rating, when)
    with files.open("business") as f:
        for rec in records(f, tables, "unreadable item row"):
            cats = [c.strip() for c in str(rec.get("categories") or "").split(",") if c.strip()]
            tables.item(rec.get("business_id"), rec.get("name"), None, cats,
                        city=str(rec.get("city") or ""), state=str(rec.get("state") or ""))
