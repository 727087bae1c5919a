"""Small files written in each registered dataset's upstream format, from one tiny log.

The log: 4 users, 6 items, every user with 4-5 interactions in time order. Each writer keeps the
quirks of its source: MovieLens `::` lines in Latin-1 and quoted CSV titles with the year, Amazon
JSON lines with Python-literal metadata (2014), HTML entities in titles and `parent_asin` (2023),
Steam's Python-literal lines, Last.fm's tab-separated files in a zip, Goodreads' nested JSON,
Yelp's JSON files in a tar.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

ITEMS = {  # id -> (title, year, genres)
    "1": ("Café Society", 1999, ["Drama", "Romance"]),
    "2": ("American President, The", 1995, ["Comedy", "Drama"]),
    "3": ("Heat", 1995, ["Action", "Crime"]),
    "4": ("Jumanji", 1995, ["Adventure", "Children"]),
    "5": ("Untitled Project", None, []),
    "6": ("Toy Story", 1995, ["Animation", "Children"]),
}
LOG = [  # (user, item, rating, unix seconds)
    ("10", "1", 4.0, 1_000_000_000), ("10", "2", 3.0, 1_000_000_100), ("10", "3", 5.0, 1_000_000_200),
    ("10", "4", 2.0, 1_000_000_300), ("11", "2", 5.0, 1_000_100_000), ("11", "3", 4.0, 1_000_200_000),
    ("11", "5", 1.0, 1_000_300_000), ("11", "6", 3.0, 1_000_400_000), ("11", "1", 4.0, 1_000_500_000),
    ("12", "6", 5.0, 1_100_000_000), ("12", "4", 4.0, 1_100_086_400), ("12", "3", 3.0, 1_100_172_800),
    ("12", "2", 4.0, 1_100_259_200), ("13", "5", 2.0, 1_200_000_000), ("13", "1", 5.0, 1_200_086_400),
    ("13", "6", 4.0, 1_200_172_800), ("13", "4", 3.0, 1_200_259_200),
]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _movie_title(item: str) -> str:
    title, year, _ = ITEMS[item]
    return f"{title} ({year})" if year else title


def ml_dat(folder: Path) -> list[Path]:
    ratings = "".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in LOG)
    movies = "".join(f"{i}::{_movie_title(i)}::{'|'.join(g) or '(no genres listed)'}\n" for i, (_, _, g) in ITEMS.items())
    return [_zip(folder / "ml-1m.zip", {"ml-1m/ratings.dat": ratings.encode("latin-1"),
                                        "ml-1m/movies.dat": movies.encode("latin-1"), "ml-1m/README": b"x"})]


def ml_csv(folder: Path) -> list[Path]:
    ratings = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in LOG)
    movies = "movieId,title,genres\n" + "".join(
        f'{i},"{_movie_title(i)}",{"|".join(g) or "(no genres listed)"}\n' for i, (_, _, g) in ITEMS.items())
    return [_zip(folder / "ml-latest-small.zip", {"ml-latest-small/ratings.csv": ratings.encode(),
                                                  "ml-latest-small/movies.csv": movies.encode()})]


def _amazon_meta(i: str, release: str) -> dict:
    title, _, genres = ITEMS[i]
    meta = {"title": title.replace("&", "&amp;") + (" &amp; More" if i == "3" else ""), "brand": "Acme",
            "price": "$9.99", "description": ["<b>Great</b> item &quot;" + i + "&quot;"]}
    if release == "2014":
        return {**meta, "asin": f"B00{i}", "categories": [["Beauty", *genres]]}
    if release == "2018":
        return {**meta, "asin": f"B00{i}", "category": ["Beauty", *genres]}
    return {**meta, "parent_asin": f"P00{i}", "categories": ["Beauty", *genres], "store": "Acme"}


def amazon(folder: Path, release: str) -> list[Path]:
    reviews = []
    for u, i, r, t in LOG:
        if release == "2023":
            reviews.append(json.dumps({"rating": r, "title": "ok", "text": "fine", "asin": f"B00{i}x",
                                       "parent_asin": f"P00{i}", "user_id": f"U{u}", "timestamp": t * 1000,
                                       "helpful_vote": 0, "verified_purchase": True}))
        else:
            reviews.append(json.dumps({"reviewerID": f"U{u}", "asin": f"B00{i}", "overall": r, "unixReviewTime": t,
                                       "reviewText": "fine", "summary": "ok"}))
    reviews.append("{not json")
    metas = [_amazon_meta(i, release) for i in ITEMS]
    metas.append({"asin": "B00404", "parent_asin": "P00404", "title": "var aPageStart = (new Date()).getTime();" * 20})
    if release == "2014":  # the 2014 metadata is written as Python literals, not JSON
        meta_lines = [repr(m) for m in metas]
        return [_gz(folder / "reviews_Beauty_5.json.gz", reviews), _gz(folder / "meta_Beauty.json.gz", meta_lines)]
    meta_lines = [json.dumps(m) for m in metas]
    if release == "2018":
        return [_gz(folder / "Luxury_Beauty_5.json.gz", reviews), _gz(folder / "meta_Luxury_Beauty.json.gz", meta_lines)]
    (folder / "All_Beauty.jsonl").write_text("\n".join(reviews) + "\n")
    (folder / "meta_All_Beauty.jsonl").write_text("\n".join(meta_lines) + "\n")
    return [folder / "All_Beauty.jsonl", folder / "meta_All_Beauty.jsonl"]


def _day(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def steam(folder: Path) -> list[Path]:
    reviews = [repr({"username": f"gamer {u}", "hours": 1.5, "product_id": i, "page_order": 0, "date": _day(t),
                     "text": "fun", "early_access": False, "page": 1}) for u, i, _, t in LOG]
    games = [repr({"publisher": "Acme", "genres": g, "app_name": title, "title": title, "release_date": f"{y or ''}-01-04",
                   "tags": ["Indie"], "price": 4.99, "early_access": False, "id": i, "developer": "Acme"})
             for i, (title, y, g) in ITEMS.items()]
    return [_gz(folder / "steam_reviews.json.gz", reviews), _gz(folder / "steam_games.json.gz", games)]


def lastfm(folder: Path) -> list[Path]:
    listens = "userID\tartistID\tweight\n" + "".join(f"{u}\t{i}\t{int(r * 100)}\n" for u, i, r, _ in LOG)
    listens += "10\t6\t12\n"  # listened, never tagged: no time
    tagged = "userID\tartistID\ttagID\ttimestamp\n" + "".join(
        f"{u}\t{i}\t{k}\t{t * 1000}\n" for u, i, _, t in LOG for k in (1, 2))
    artists = "id\tname\turl\tpictureURL\n" + "".join(f"{i}\t{t}\thttp://last.fm/{i}\t\n" for i, (t, _, _) in ITEMS.items())
    tags = "tagID\ttagValue\n1\trock\n2\tmétal\n"
    return [_zip(folder / "hetrec2011-lastfm-2k.zip", {
        "user_artists.dat": listens.encode(), "user_taggedartists-timestamps.dat": tagged.encode(),
        "artists.dat": artists.encode(), "tags.dat": tags.encode("latin-1")})]


def goodreads(folder: Path) -> list[Path]:
    def when(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%a %b %d %H:%M:%S +0000 %Y")

    inter = [json.dumps({"user_id": f"u{u}", "book_id": i, "review_id": "r", "is_read": True, "rating": int(r),
                         "review_text_incomplete": "", "date_added": when(t)}) for u, i, r, t in LOG]
    books = [json.dumps({"book_id": i, "title": f"{t} (Series #1)", "title_without_series": t,
                         "publication_year": str(y or ""), "description": "A book.",
                         "popular_shelves": [{"count": "9", "name": "to-read"}, *({"count": "3", "name": g.lower()}
                                                                                  for g in genres)],
                         "authors": [{"author_id": "7", "role": ""}]}) for i, (t, y, genres) in ITEMS.items()]
    return [_gz(folder / "goodreads_interactions_poetry.json.gz", inter),
            _gz(folder / "goodreads_books_poetry.json.gz", books)]


def yelp(folder: Path) -> list[Path]:
    reviews = "".join(json.dumps({"review_id": f"r{n}", "user_id": f"u{u}", "business_id": f"b{i}", "stars": r,
                                  "date": datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                                  "text": "good"}) + "\n" for n, (u, i, r, t) in enumerate(LOG))
    business = "".join(json.dumps({"business_id": f"b{i}", "name": t, "city": "Tucson", "state": "AZ",
                                   "categories": ", ".join(g)}) + "\n" for i, (t, _, g) in ITEMS.items())
    path = folder / "yelp_dataset.tar"
    with tarfile.open(path, "w") as tar:
        for name, text in (("yelp_academic_dataset_review.json", reviews),
                           ("yelp_academic_dataset_business.json", business)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return [path]


WRITERS = {  # a registered dataset of each family -> its fixture writer
    "ml-1m": ml_dat, "ml-latest-small": ml_csv,
    "amazon-2014-beauty": lambda d: amazon(d, "2014"), "amazon-2018-luxury-beauty": lambda d: amazon(d, "2018"),
    "amazon-2023-all-beauty": lambda d: amazon(d, "2023"), "steam": steam, "lastfm": lastfm,
    "goodreads-poetry": goodreads, "yelp": yelp,
}
