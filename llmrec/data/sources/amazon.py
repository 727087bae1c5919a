"""Amazon reviews (McAuley lab): the 2014 and 2018 per-category 5-core review files with their
metadata, and the 2023 per-category review and metadata files (JSON lines).

One reader serves the three releases, which name the same things differently:

    release  user         item                  rating    time (s)              metadata lines
    2014     reviewerID   asin                  overall   unixReviewTime        Python literals
    2018     reviewerID   asin                  overall   unixReviewTime        JSON
    2023     user_id      parent_asin (else asin) rating  timestamp / 1000 (ms)  JSON

2023 reviews name the variant (`asin`) and the product (`parent_asin`); the product is the item,
as in the release's own benchmark files. Titles and descriptions hold HTML entities and markup,
which are undone; a "title" of several hundred characters is page script, not a title, and is
dropped with its interactions (counted).
"""

from __future__ import annotations

from typing import Any

from llmrec.data.sources import Source
from llmrec.data.sources.tables import Files, Tables, records


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v)
    return str(value or "")


def _categories(rec: dict[str, Any]) -> list[str]:
    """The category path below the store-wide top level (2014: a list of paths, the first taken)."""
    cats = rec.get("categories", rec.get("category")) or []
    if cats and isinstance(cats[0], list):
        cats = cats[0]
    cats = [str(c) for c in cats if c]
    return cats[1:] if len(cats) > 1 else cats


def convert(files: Files, tables: Tables, source: Source) -> None:
    with files.open("reviews") as f:
        for rec in records(f, tables):
            user = rec.get("reviewerID", rec.get("user_id"))
            item = rec.get("parent_asin") or rec.get("asin")
            try:
                rating = float(rec.get("overall", rec.get("rating")))
                if "unixReviewTime" in rec:
                    when = float(rec["unixReviewTime"])
                else:
                    when = float(rec["timestamp"]) / 1000.0
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable interaction row")
                continue
            tables.interaction(user, item, rating, when)
    with files.open("meta") as f:
        for rec in records(f, tables, "unreadable item row"):
            cats = _categories(rec)
            tables.item(rec.get("parent_asin") or rec.get("asin"), rec.get("title"), None, cats,
                        brand=rec.get("brand") or rec.get("store") or "",
                        categories=" > ".join(cats),
                        description=_text(rec.get("description"))[:2000],
                        price=str(rec.get("price") or ""))
