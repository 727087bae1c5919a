"""MovieLens (GroupLens): the `::`-separated ml-1m files (Latin-1) and the CSV releases (ml-20m,
ml-25m, ml-latest-small: `userId,movieId,rating,timestamp` and `movieId,title,genres`).

Titles carry the release year ("Toy Story (1995)"): it is parsed into `year` and taken off the
title, as in the ML-100K items file; "(no genres listed)" is no genre.
"""

from __future__ import annotations

import csv
import re

from llmrec.data.sources import Source
from llmrec.data.sources.tables import Files, Tables

_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")


def split_title(raw: str) -> tuple[str, int | None]:
    """("Toy Story", 1995) from "Toy Story (1995)"; a title without a year is kept whole."""
    m = _YEAR.match(raw.strip())
    if m and m.group("title"):
        return m.group("title"), int(m.group("year"))
    return raw.strip(), None


def _movie(tables: Tables, movie_id: str, raw_title: str, genres: str) -> None:
    title, year = split_title(raw_title)
    tables.item(movie_id, title, year, genres.split("|"))


def convert_dat(files: Files, tables: Tables, source: Source) -> None:
    """ml-1m / ml-10m: `UserID::MovieID::Rating::Timestamp` and `MovieID::Title::Genres`."""
    with files.open("ratings", "latin-1") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("::")
            if len(parts) != 4:
                tables.drop("unreadable interaction row")
                continue
            try:
                tables.interaction(parts[0], parts[1], float(parts[2]), float(parts[3]))
            except ValueError:
                tables.drop("unreadable interaction row")
    with files.open("movies", "latin-1") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("::")
            if len(parts) != 3:
                tables.drop("unreadable item row")
                continue
            _movie(tables, *parts)


def convert_csv(files: Files, tables: Tables, source: Source) -> None:
    """The CSV releases (UTF-8, quoted titles)."""
    with files.open("ratings") as f:
        for rec in csv.DictReader(f):
            try:
                tables.interaction(rec["userId"], rec["movieId"], float(rec["rating"]), float(rec["timestamp"]))
            except (KeyError, TypeError, ValueError):
                tables.drop("unreadable interaction row")
    with files.open("movies") as f:
        for rec in csv.DictReader(f):
            if not rec.get("movieId"):
                tables.drop("unreadable item row")
                continue
            _movie(tables, rec["movieId"], rec.get("title") or "", rec.get("genres") or "")
