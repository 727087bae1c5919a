"""The converted form of a dataset: two Parquet tables written while the upstream files stream.

    interactions.parquet   user_id, item_id (str), rating, timestamp (float64 seconds), in file order
    items.parquet          item_id, title, year (int or null), genres (list of str), and text fields

Converters call `interaction(...)` and `item(...)` per row and `drop(reason)` for a row they
cannot use; `finish()` keeps the interactions whose item has a title and the items that were
interacted with, and writes `convert.json` with every count by reason. Interactions are written in
batches (a 20M-row file never sits in memory); items, far fewer, are kept in a dict.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import re
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmrec.data.dataset import timestamp_problem
from llmrec.errors import DataError

INTERACTIONS = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("rating", pa.float64()),
                          ("timestamp", pa.float64())])
BATCH = 200_000
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """HTML entities unescaped (twice: Amazon titles hold `&amp;amp;`), tags removed, spaces folded."""
    text = html.unescape(html.unescape(str(value or "")))
    return _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()


class Tables:
    """Streaming writer of the two tables into `folder` (written under a temporary name first)."""

    def __init__(self, folder: Path, max_title: int = 300) -> None:
        self.folder, self.max_title = folder, max_title
        folder.mkdir(parents=True, exist_ok=True)
        self._raw = folder / "interactions.raw.parquet"
        self._writer = pq.ParquetWriter(self._raw, INTERACTIONS)
        self._cols: dict[str, list] = {c: [] for c in INTERACTIONS.names}
        self.items: dict[str, dict[str, Any]] = {}
        self.dropped: Counter[str] = Counter()
        self.rows = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def interaction(self, user: Any, item: Any, rating: float, timestamp: float) -> None:
        user, item = str(user or "").strip(), str(item or "").strip()
        if not user or not item:
            return self.drop("empty user or item id")
        if timestamp_problem(float(timestamp)):
            return self.drop("timestamp missing or out of range")
        for c, v in zip(INTERACTION_COLUMNS, (user, item, float(rating), float(timestamp))):
            self._cols[c].append(v)
        self.rows += 1
        if len(self._cols["user_id"]) >= BATCH:
            self._flush()

    def item(self, item_id: Any, title: Any, year: int | None = None, genres: list[str] | tuple[str, ...] = (),
             **fields: Any) -> None:
        """An item's metadata; a repeated id keeps the first (counted), an empty title is dropped."""
        item_id = str(item_id or "").strip()
        if not item_id:
            return self.drop("item metadata without an id")
        if item_id in self.items:
            return self.drop("item metadata repeated (first kept)")
        title = clean_text(title)
        if not title:
            return self.drop("item metadata without a title")
        if len(title) > self.max_title:
            return self.drop(f"item title over {self.max_title} characters (page text, not a title)")
        seen: dict[str, None] = {}
        for g in genres:
            g = clean_text(g)
            if g and g != "(no genres listed)":
                seen[g] = None
        self.items[item_id] = {"title": title, "year": year, "genres": list(seen),
                               **{k: clean_text(v) for k, v in fields.items() if clean_text(v)}}

    def _flush(self) -> None:
        if self._cols["user_id"]:
            self._writer.write_table(pa.table(self._cols, schema=INTERACTIONS))
            self._cols = {c: [] for c in INTERACTIONS.names}

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Write the final tables and convert.json; returns the counts."""
        self._flush()
        self._writer.close()
        used: set[str] = set()
        kept = 0
        final = self.folder / "interactions.parquet"
        known = pa.array(list(self.items), pa.string())
        with pq.ParquetWriter(final.with_suffix(".tmp"), INTERACTIONS) as out:
            for batch in pq.ParquetFile(self._raw).iter_batches(BATCH):
                t = pa.Table.from_batches([batch])
                mask = pc.is_in(t.column("item_id"), value_set=known)
                missing = len(mask) - (pc.sum(mask).as_py() or 0)
                if missing:
                    self.dropped["interaction with an item that has no metadata"] += missing
                t = t.filter(mask)
                used.update(pc.unique(t.column("item_id")).to_pylist())
                kept += t.num_rows
                out.write_table(t)
        self._raw.unlink()
        if not kept:
            raise DataError(f"no interactions left after conversion; dropped: {dict(self.dropped)}")
        final.with_suffix(".tmp").replace(final)
        unused = sum(1 for i in self.items if i not in used)
        if unused:
            self.dropped["item never interacted with"] += unused
        keys = sorted({k for i in used for k in self.items[i]} - {"title", "year", "genres"})
        rows = [self.items[i] for i in sorted(used)]
        items = pa.table({"item_id": sorted(used), "title": [r["title"] for r in rows],
                          "year": pa.array([r["year"] for r in rows], pa.int32()),
                          "genres": pa.array([r["genres"] for r in rows], pa.list_(pa.string())),
                          **{k: pa.array([r.get(k) for r in rows], pa.string()) for k in keys}})
        pq.write_table(items, self.folder / "items.parquet")
        stats = {**meta, "interactions_read": self.rows + sum(v for k, v in self.dropped.items()
                                                              if k in _ROW_REASONS),
                 "interactions": kept, "items": len(used), "dropped": dict(sorted(self.dropped.items())),
                 "items_with_year": sum(r["year"] is not None for r in rows),
                 "items_with_genres": sum(bool(r["genres"]) for r in rows)}
        (self.folder / "convert.json").write_text(json.dumps(stats, indent=1) + "\n")
        return stats


INTERACTION_COLUMNS = tuple(INTERACTIONS.names)
_ROW_REASONS = ("empty user or item id", "timestamp missing or out of range", "unreadable interaction row")


class Files:
    """The fetched files of a source, opened by role: a plain file, a gzip file, or an archive member."""

    def __init__(self, paths: dict[str, tuple[Path, str]]) -> None:
        self.paths = paths  # role -> (local file, archive member pattern or "")

    def has(self, role: str) -> bool:
        return role in self.paths

    @contextmanager
    def open(self, role: str, encoding: str = "utf-8") -> Iterator[IO[str]]:
        """The role's file as text lines (decoded with `encoding`, bad bytes replaced)."""
        path, member = self.paths[role]
        try:
            with self._binary(path, member) as raw:
                yield io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        except (zipfile.BadZipFile, tarfile.TarError):
            raise DataError(f"{path}: not a readable {'zip' if path.suffix == '.zip' else 'tar'} archive "
                            "(a wrong or truncated file)") from None
        except FileNotFoundError:
            raise DataError(f"file not found: {path}") from None
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: unreadable ({e}): a truncated or wrong file") from None

    @staticmethod
    @contextmanager
    def _binary(path: Path, member: str) -> Iterator[IO[bytes]]:
        if not member:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as f:
                yield f
            return
        base = member.rsplit("/", 1)[-1]
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                name = _member(path, z.namelist(), member, base)
                with z.open(name) as f:
                    yield f
            return
        with tarfile.open(path) as t:
            name = _member(path, t.getnames(), member, base)
            f = t.extractfile(name)
            if f is None:
                raise DataError(f"{path}: member {name!r} is not a file")
            with f:
                yield f


def _member(path: Path, names: list[str], member: str, base: str) -> str:
    """The archive member named `member`, or the shortest path ending with its file name."""
    if member in names:
        return member
    found = sorted((n for n in names if n == base or n.endswith("/" + base)), key=len)
    if not found:
        raise DataError(f"{path}: no member {member!r} in the archive (it holds {', '.join(names[:8])})")
    return found[0]


def read_tables(folder: Path, name: str, item_noun: str = "item", log=print):
    """The Dataset of a converted folder (`interactions.parquet`, `items.parquet`)."""
    import pandas as pd

    from llmrec.data.dataset import Dataset, Item

    paths = [folder / "interactions.parquet", folder / "items.parquet"]
    for p in paths:
        if not p.is_file():
            raise DataError(f"file not found: {p} (a converted dataset folder holds interactions.parquet and "
                            "items.parquet)")
    try:
        df = pd.read_parquet(paths[0], columns=list(INTERACTION_COLUMNS))
        items_t = pq.read_table(paths[1])
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{folder}: unreadable Parquet ({e})") from None
    missing = [c for c in ("item_id", "title") if c not in items_t.column_names]
    if missing:
        raise DataError(f"{paths[1]}: no column {missing[0]!r}; columns are {items_t.column_names}")
    df["user_id"], df["item_id"] = df["user_id"].astype(str), df["item_id"].astype(str)
    df["row"] = range(len(df))
    extra = [c for c in items_t.column_names if c not in ("item_id", "title", "year", "genres")]
    items: dict[str, Item] = {}
    for r in items_t.to_pylist():
        iid = str(r["item_id"])
        items[iid] = Item(iid, str(r["title"]), r.get("year"), tuple(r.get("genres") or ()),
                          {c: str(r[c]) for c in extra if r.get(c) not in (None, "")})
    unknown = ~df["item_id"].isin(items.keys())
    if unknown.any():
        raise DataError(f"{paths[0]}: {int(unknown.sum())} interactions name items missing from items.parquet, "
                        f"e.g. {df[unknown].iloc[0]['item_id']!r}")
    dup = df.duplicated(list(INTERACTION_COLUMNS))
    n_dup = int(dup.sum())
    if n_dup:
        log(f"warning: dropped {n_dup} exact duplicate interaction rows ({paths[0]})")
        df = df[~dup].reset_index(drop=True)
    return Dataset(name, items, df, {}, item_noun, n_dup)


def records(f: IO[str], tables: Tables, reason: str = "unreadable interaction row") -> Iterator[dict[str, Any]]:
    """Objects of a JSON-lines file; lines written as Python literals (the 2014 Amazon metadata,
    Steam) are read with `ast.literal_eval`, which evaluates no code. A bad line is counted."""
    import ast

    for line in f:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            try:
                rec = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                tables.drop(reason)
                continue
        if isinstance(rec, dict):
            yield rec
        else:
            tables.drop(reason)
