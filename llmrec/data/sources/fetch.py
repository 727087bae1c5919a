"""Fetch and convert a registered dataset once; load its converted tables afterwards.

    $LLMREC_HOME/sources/<name>/raw/      the upstream files as published (checked), checksums.json
    $LLMREC_HOME/sources/<name>/tables/   interactions.parquet, items.parquet, convert.json

A conversion is redone when the raw files' digests differ from those `convert.json` records (a
new release taken with --from) or with --force; it is written to a temporary folder and renamed,
so an interrupted conversion never leaves half a dataset behind.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmrec import assets
from llmrec.data.sources import RemoteFile, Source
from llmrec.data.sources.download import fetch_file, forget
from llmrec.data.sources.tables import Files, Tables, read_tables
from llmrec.errors import DataError
from llmrec.registry import DATASETS

CONVERTER_VERSION = 1  # bump when a converter's output changes, so cached tables are rebuilt


def get(name: str) -> Source:
    return DATASETS.get(name)


def is_registered(name: str) -> bool:
    return name in DATASETS


def root(name: str) -> Path:
    return assets.home() / "sources" / name


def _match(source: Source, given: Sequence[Path]) -> dict[str, Path]:
    """--from paths by the file they stand for: same file name, a folder holding it, or (one file
    expected, one given) whatever its name."""
    out: dict[str, Path] = {}
    names = [f.filename for f in source.files]
    for path in given:
        path = Path(path)
        if path.is_dir():
            found = {n: path / n for n in names if (path / n).is_file()}
            if not found:
                raise DataError(f"--from {path}: holds none of {', '.join(names)}")
            out.update(found)
        elif path.name in names:
            out[path.name] = path
        elif len(names) == 1 and len(given) == 1:
            out[names[0]] = path
        elif not path.exists():
            raise DataError(f"--from {path}: no such file")
        else:
            raise DataError(f"--from {path}: {source.name} expects files named {', '.join(names)}")
    return out


def fetch(name: str, given: Sequence[Path] = (), force: bool = False, log: Callable[[str], Any] = print) -> Path:
    """The folder of the converted tables of dataset `name` (downloading and converting as needed)."""
    source = get(name)
    if source.extra.get("embedded"):
        return assets.fetch(name, log=log)
    if not source.files:
        raise DataError(f"dataset {name!r} has no files to fetch")
    raw, out = root(name) / "raw", root(name) / "tables"
    by_name = _match(source, given)
    digests: dict[str, str] = {}
    paths: dict[str, tuple[Path, str]] = {}
    fresh = [f.filename for f in source.files if not (raw / f.filename).is_file() and not f.sha256]
    for f in source.files:
        local = fetch_file(source, f, raw, by_name.get(f.filename), log)
        digests[f.filename] = assets.sha256_file(local)
        for role, member in f.members or ((f.role, ""),):
            paths[role] = (local, member)
    done = out / "convert.json"
    if done.is_file() and not force:
        import json

        meta = json.loads(done.read_text())
        if meta.get("files") == digests and meta.get("converter_version") == CONVERTER_VERSION:
            return out
    log(f"{name}: converting {', '.join(digests)} -> {out}")
    start = time.perf_counter()
    module, _, func = source.converter.partition(":")
    tmp = out.with_name("tables.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tables = Tables(tmp)
    try:
        getattr(importlib.import_module(module), func)(Files(paths), tables, source)
        stats = tables.finish({"dataset": name, "files": digests, "converter_version": CONVERTER_VERSION})
    except DataError as e:
        for filename in fresh:  # taken on trust just now and unreadable: not kept for the next fetch
            forget(raw, filename)
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{name}: {e}" + (f" ({', '.join(fresh)} not kept)" if fresh else "")) from None
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    dropped = ", ".join(f"{v:,} {k}" for k, v in stats["dropped"].items()) or "nothing"
    log(f"{name}: {stats['interactions']:,} interactions, {stats['items']:,} items in "
        f"{time.perf_counter() - start:.0f}s; dropped: {dropped}")
    for what, use in (("year", "year filters and templates that show a year"), ("genres", "genre filters")):
        if not stats[f"items_with_{what}"]:
            log(f"warning: {name}: no item has a {what}; {use} have nothing to work with")
    return out


def load(name: str, item_noun: str = "", given: Sequence[Path] = (), log: Callable[[str], Any] = print):
    """The Dataset of registered dataset `name` (not the embedded one, which reads its atomic files)."""
    source = get(name)
    return read_tables(fetch(name, given, log=log), name, item_noun or source.item_noun, log)


def describe(source: Source) -> list[str]:
    """`llmrec datasets info`: every field a user needs to cite, fetch and check the dataset."""
    lines = [f"{source.name}: {source.description}", f"  published: {source.published or 'unknown'}",
             f"  licence:   {source.licence}", f"  citation:  {source.citation}"]
    if source.homepage:
        lines.append(f"  homepage:  {source.homepage}")
    if source.manual:
        lines.append(f"  download:  by hand: {source.manual}")
    for f in source.files:
        lines.append(f"  file:      {f.filename}  {_size(f)}  sha256 {f.sha256 or _recorded(source, f)}")
        lines.append(f"             {f.url}")
    if source.notes:
        lines.append(f"  note:      {source.notes}")
    state = "embedded" if source.extra.get("embedded") else (
        "converted" if (root(source.name) / "tables" / "convert.json").is_file() else "not fetched")
    lines.append(f"  state:     {state}")
    return lines


def _size(f: RemoteFile) -> str:
    return f"{f.size / 1e6:,.1f} MB" if f.size else "size unknown"


def _recorded(source: Source, f: RemoteFile) -> str:
    from llmrec.data.sources.download import expected_sha256

    got, _ = expected_sha256(root(source.name) / "raw", f)
    return f"{got} (recorded at first fetch)" if got else "unpublished (recorded at first fetch)"
