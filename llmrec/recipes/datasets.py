"""`llmrec datasets list | info NAME | fetch NAME [--from FILE ...] [--force]`."""

from __future__ import annotations

import json
from pathlib import Path

from llmrec.data.sources import fetch as sources
from llmrec.errors import DataError
from llmrec.registry import DATASETS


def _state(name: str) -> str:
    source = sources.get(name)
    if source.extra.get("embedded"):
        return "embedded"
    done = sources.root(name) / "tables" / "convert.json"
    if done.is_file():
        stats = json.loads(done.read_text())
        return f"converted ({stats['interactions']:,} interactions)"
    return "by hand" if source.manual else "not fetched"


def run(action: str, names: list[str], given: list[str] | None = None, force: bool = False, log=print) -> int:
    if action == "list":
        log(f"{'name':34s} {'download':>10s}  {'published size':58s} {'state':24s} licence")
        for entry in DATASETS:
            s = entry.load()
            size = "wheel" if s.extra.get("embedded") else (f"{s.size / 1e6:,.0f} MB" if s.size else "unknown")
            log(f"{s.name:34s} {size:>10s}  {s.published[:58]:58s} {_state(s.name):24s} {s.licence.split(';')[0].split(' (')[0].split(':')[0]}")
        return 0
    if not names:
        raise DataError(f"`llmrec datasets {action}` needs a dataset name (see `llmrec datasets list`)")
    if action == "info":
        for name in names:
            for line in sources.describe(sources.get(name)):
                log(line)
        return 0
    if given and len(names) > 1:
        raise DataError("--from gives the files of one dataset: name one")
    for name in names:
        folder = sources.fetch(name, [Path(g) for g in given or ()], force=force, log=log)
        log(f"{name}: ready in {folder}; prepare it with `llmrec prepare data.dataset={name}`")
    return 0
