"""Downloads that resume, check their sha256 and say what to do when offline.

A file is streamed to `<name>.part` beside its final place; an interrupted download resumes from
the part's length (HTTP Range) on the next fetch. A finished file is checked against its pinned
size and sha256 and moved into place only when both match; a mismatch is refused and the bytes are
kept as `<name>.mismatch` for inspection. Files whose digest no source publishes are checked
against the digest recorded on their first fetch (`checksums.json`), so a later change is noticed.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmrec.assets import sha256_file
from llmrec.data.sources import RemoteFile, Source
from llmrec.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 30


def _recorded(folder: Path) -> dict[str, str]:
    path = folder / "checksums.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _record(folder: Path, filename: str, digest: str) -> None:
    sums = _recorded(folder)
    sums[filename] = digest
    (folder / "checksums.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")


def forget(folder: Path, filename: str) -> None:
    """Remove a file taken on trust (no published digest) and its recorded digest: it proved unreadable."""
    (folder / filename).unlink(missing_ok=True)
    sums = _recorded(folder)
    if sums.pop(filename, None) is not None:
        (folder / "checksums.json").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")


def expected_sha256(folder: Path, f: RemoteFile) -> tuple[str, str]:
    """(digest, where it comes from): the registry's pin, else the first fetch's record, else ("", "")."""
    if f.sha256:
        return f.sha256, "registry"
    got = _recorded(folder).get(f.filename, "")
    return got, ("first fetch" if got else "")


def check(path: Path, f: RemoteFile, folder: Path, origin: str) -> str:
    """Raise DataError unless `path` has the file's size and digest; returns the digest."""
    size = path.stat().st_size
    if f.size and size != f.size:
        raise DataError(f"{origin}: {size:,} bytes where {f.filename} has {f.size:,} ({f.url}); "
                        + ("a truncated copy" if size < f.size and origin.startswith("--from") else
                           "the download was cut short: fetch again to resume" if size < f.size else
                           "another file or another version"))
    digest = sha256_file(path)
    want, where = expected_sha256(folder, f)
    if want and digest != want:
        raise DataError(f"{origin}: sha256 {digest} differs from the {where} sha256 {want} of {f.filename} "
                        f"({f.url}); refusing it")
    return digest


def fetch_file(source: Source, f: RemoteFile, folder: Path, given: Path | None = None,
               log: Callable[[str], Any] = print) -> Path:
    """The checked local copy of `f` in `folder`: already there, copied from `given`, or downloaded."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f.filename
    if dest.is_file():
        return dest
    if given is not None:
        if not given.is_file():
            raise DataError(f"--from {given}: no such file")
        digest = check(given, f, folder, f"--from {given}")
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(given, tmp)
        tmp.replace(dest)
        log(f"{source.name}: took {f.filename} from {given}")
    else:
        if source.manual:
            raise DataError(f"{source.name}: {f.filename} has no direct download ({source.manual}); give it with "
                            f"`llmrec datasets fetch {source.name} --from FILE`")
        part = _download(source, f, dest.with_name(dest.name + ".part"), log)
        try:
            digest = check(part, f, folder, f"download of {f.url}")
        except DataError:
            if not f.size or part.stat().st_size >= f.size:
                part.replace(dest.with_name(dest.name + ".mismatch"))
            raise
        part.replace(dest)
    if not f.sha256 and not expected_sha256(folder, f)[0]:
        _record(folder, f.filename, digest)
        log(f"{source.name}: {f.filename} has no published sha256; recorded {digest} for later fetches")
    return dest


def _download(source: Source, f: RemoteFile, part: Path, log: Callable[[str], Any]) -> Path:
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(f.url, headers={"User-Agent": "llmrec", **({"Range": f"bytes={have}-"} if have else {})})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"{source.name}: could not download {f.url} ({reason}); download it by hand and give it "
                        f"with `llmrec datasets fetch {source.name} --from FILE`") from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            have = 0  # the server ignored the range: start over
        total = int(response.headers.get("Content-Length") or 0) + have or f.size or None
        log(f"{source.name}: {'resuming' if resumed else 'downloading'} {f.url}")
        with open(part, "ab" if resumed else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                                  desc=f.filename) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except (urllib.error.URLError, OSError) as e:
                raise DataError(f"{source.name}: download of {f.url} stopped at {out.tell():,} bytes ({e}); "
                                "fetch again to resume") from None
    return part
