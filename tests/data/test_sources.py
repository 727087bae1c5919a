"""Registered datasets: each converter on a fixture in its upstream format, the download and
--from checks, and the CLI. Nothing here downloads from the internet (a local HTTP server stands
in for the upstream host)."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from typing import ClassVar

import pytest

from llmrec.data.sources import RemoteFile
from llmrec.data.sources import fetch as sources
from llmrec.data.sources.movielens import split_title
from llmrec.errors import DataError
from llmrec.registry import DATASETS
from tests.data.upstream import ITEMS, LOG, WRITERS

# how each family names users and items, and what it keeps of rating and time
USER = {"amazon": "U{}", "steam": "gamer {}", "goodreads": "u{}", "yelp": "u{}"}
ITEM = {"amazon-2014": "B00{}", "amazon-2018": "B00{}", "amazon-2023": "P00{}", "yelp": "b{}"}


def _family(name: str) -> str:
    return name.split("-")[0]


def _ids(name: str, user: str, item: str) -> tuple[str, str]:
    fam = _family(name)
    return USER.get(fam, "{}").format(user), ITEM.get(name[:11], ITEM.get(fam, "{}")).format(item)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "root", lambda name: tmp_path / "sources" / name)
    return tmp_path


def unpinned(name: str) -> str:
    """A copy of registered dataset `name` whose files carry no digest or size (fixtures are not the
    upstream bytes), registered as fx-<name>."""
    real = DATASETS.get(name)
    files = tuple(dataclasses.replace(f, sha256="", size=0) for f in real.files)
    DATASETS.register(f"fx-{name}", dataclasses.replace(real, name=f"fx-{name}", files=files, manual=""))
    return f"fx-{name}"


@pytest.fixture
def converted(home, tmp_path, request):
    name = request.param
    up = tmp_path / "upstream"
    up.mkdir()
    fx = unpinned(name)
    try:
        folder = sources.fetch(fx, WRITERS[name](up), log=lambda *_: None)
        yield name, fx, folder
    finally:
        DATASETS.unregister(fx)


@pytest.mark.parametrize("converted", sorted(WRITERS), indirect=True)
def test_converter_reads_its_upstream_format(converted):
    import json

    name, fx, folder = converted
    ds = sources.load(fx, log=lambda *_: None)
    df = ds.interactions
    expected = sorted(_ids(name, u, i) for u, i, _, _ in LOG)
    assert sorted(zip(df["user_id"], df["item_id"])) == expected
    got = {(u, i): (r, t) for u, i, r, t in df[["user_id", "item_id", "rating", "timestamp"]].itertuples(index=False)}
    for u, i, r, t in LOG:
        rating, when = got[_ids(name, u, i)]
        if name == "steam":  # a review's date: the day, no hour; no rating
            assert (rating, when) == (1.0, t - t % 86400)
        elif name == "lastfm":  # the listening count; the first tag's time (ms in the file)
            assert (rating, when) == (r * 100, t)
        else:
            assert (rating, when) == (r, t)
    assert len(ds.items) == len(ITEMS)
    by_title = {it.title: it for it in ds.items.values()}
    heat = "Heat & More" if name.startswith("amazon") else "Heat"
    assert heat in by_title, sorted(by_title)
    if _family(name) == "ml":
        assert by_title["Café Society"].year == 1999  # Latin-1 in ml-1m, UTF-8 in the CSV releases
        assert by_title["American President, The"].year == 1995  # the quoted CSV title, its year parsed off
        assert by_title["Untitled Project"].year is None and by_title["Untitled Project"].genres == ()
        assert by_title["Toy Story"].genres == ("Animation", "Children")
    if name.startswith("amazon"):
        heat_item = by_title["Heat & More"]
        assert heat_item.genres == ("Action", "Crime")  # the path below the store-wide "Beauty"
        assert heat_item.fields["description"] == 'Great item "3"'  # entities undone, markup removed
        assert heat_item.fields["brand"] == "Acme"
    stats = json.loads((folder / "convert.json").read_text())
    assert stats["interactions"] == len(LOG) and stats["items"] == len(ITEMS)
    if name.startswith("amazon"):
        assert stats["dropped"]["unreadable interaction row"] == 1
        assert stats["dropped"]["item title over 300 characters (page text, not a title)"] == 1
    if name == "lastfm":
        assert stats["dropped"] == {"listened, never tagged: no time": 1}
        assert set(by_title["Heat"].genres) == {"rock", "métal"}  # tags.dat is Latin-1
    if name == "goodreads-poetry":
        assert by_title["Heat"].genres == ("action", "crime")  # "to-read" is a shelf, not a genre


@pytest.mark.parametrize("converted", sorted(WRITERS), indirect=True)
def test_prepare_and_rank_two_users_by_name_alone(converted, tmp_path):
    import json

    from llmrec.config import load_config
    from llmrec.recipes import prepare, rank

    name, fx, _ = converted
    out = tmp_path / "prepared"
    cfg = load_config(None, [f"out_dir={out}", f"data.dataset={fx}", "candidates.kinds=['sampled','window','bm25']",
                             "candidates.n=2", "candidates.stages=['test']"])
    prepare.run(cfg, log=lambda *_: None)
    assert {p.name for p in (out / "candidates").iterdir()} == {f"{k}-2.test.jsonl" for k in ("sampled", "window", "bm25")}
    res = rank.run(load_config(str(out / "config.toml"), [
        "rank.users=2", "rank.template=letters/candidates_v1", "rank.candidates=sampled-2.test",
        f"rank.run_dir={tmp_path / 'run'}"]), log=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "ranks.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["candidates"]) == 2 and r["rank"] in (1, 2) for r in rows), rows
    assert {r["positive"] for r in rows} <= {_ids(name, "1", i)[1] for i in ITEMS}
    assert res is not None


def test_title_years_are_parsed():
    assert split_title("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The (Cité des enfants perdus, La)", 1995)
    assert split_title("Babylon 5 (1994-1998)") == ("Babylon 5", 1994)
    assert split_title("Millions (2004) ") == ("Millions", 2004)
    assert split_title("Moonlight") == ("Moonlight", None)
    assert split_title("(500) Days of Summer (2009)") == ("(500) Days of Summer", 2009)


def test_checksum_mismatch_is_refused(home, tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    given = WRITERS["ml-1m"](up)
    with pytest.raises(DataError, match=r"931 bytes where ml-1m.zip has 5,917,549 .*a truncated copy"):
        sources.fetch("ml-1m", given, log=lambda *_: None)  # the real entry: size and digest pinned
    real = DATASETS.get("ml-1m")
    DATASETS.register("fx-pinned", dataclasses.replace(real, name="fx-pinned", files=(
        dataclasses.replace(real.files[0], size=0),)))
    try:
        with pytest.raises(DataError, match=r"sha256 [0-9a-f]{64} differs from the registry sha256 a6898adb"):
            sources.fetch("fx-pinned", given, log=lambda *_: None)
    finally:
        DATASETS.unregister("fx-pinned")
    assert not (home / "sources" / "fx-pinned" / "raw" / "ml-1m.zip").exists()


def test_bad_files_give_one_line_errors(home, tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    fx = unpinned("amazon-2014-beauty")
    try:
        reviews, meta = WRITERS["amazon-2014-beauty"](up)
        cut = tmp_path / "cut" / reviews.name
        cut.parent.mkdir()
        cut.write_bytes(reviews.read_bytes()[: reviews.stat().st_size // 2])
        with pytest.raises(DataError, match="truncated or wrong file") as e:
            sources.fetch(fx, [cut, meta], log=lambda *_: None)
        assert "\n" not in str(e.value)
        with pytest.raises(DataError, match="no such file"):
            sources.fetch(fx, [tmp_path / "nowhere" / reviews.name], log=lambda *_: None)
        with pytest.raises(DataError, match="expects files named reviews_Beauty_5.json.gz, meta_Beauty.json.gz"):
            sources.fetch(fx, [meta.with_name("other.json.gz").resolve()] if meta.rename(
                meta.with_name("other.json.gz")) else [], log=lambda *_: None)
    finally:
        DATASETS.unregister(fx)
    fx = unpinned("ml-1m")
    try:
        wrong = tmp_path / "ml-1m.zip"
        wrong.write_text("userId,movieId\n1,2\n")
        with pytest.raises(DataError, match="not a readable zip archive"):
            sources.fetch(fx, [wrong], log=lambda *_: None)
    finally:
        DATASETS.unregister(fx)


def test_manual_and_offline_sources_name_the_way_by_hand(home):
    with pytest.raises(DataError, match=r"no direct download .*--from FILE"):
        sources.fetch("yelp", log=lambda *_: None)
    real = DATASETS.get("ml-1m")
    DATASETS.register("fx-offline", dataclasses.replace(real, name="fx-offline", files=(
        dataclasses.replace(real.files[0], url="http://127.0.0.1:9/ml-1m.zip"),)))
    try:
        with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/ml-1m.zip .*"
                                            r"llmrec datasets fetch fx-offline --from FILE"):
            sources.fetch("fx-offline", log=lambda *_: None)
    finally:
        DATASETS.unregister("fx-offline")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Serves one file with Range support; the first response stops halfway."""

    data = b""
    cut = True
    ranges: ClassVar[list[str]] = []

    def do_GET(self):
        start = 0
        if rng := self.headers.get("Range"):
            _Flaky.ranges.append(rng)
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if _Flaky.cut:
            _Flaky.cut = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_interrupted_download_resumes_and_is_checked(home, tmp_path):
    import hashlib

    up = tmp_path / "up"
    up.mkdir()
    (zipped,) = WRITERS["ml-1m"](up)
    _Flaky.data, _Flaky.cut, _Flaky.ranges = zipped.read_bytes(), True, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = DATASETS.get("ml-1m")
    f = RemoteFile(f"http://127.0.0.1:{server.server_port}/ml-1m.zip", hashlib.sha256(_Flaky.data).hexdigest(),
                   len(_Flaky.data), members=real.files[0].members)
    DATASETS.register("fx-http", dataclasses.replace(real, name="fx-http", files=(f,)))
    try:
        with pytest.raises(DataError, match="fetch again to resume"):
            sources.fetch("fx-http", log=lambda *_: None)
        part = home / "sources" / "fx-http" / "raw" / "ml-1m.zip.part"
        assert 0 < part.stat().st_size < len(_Flaky.data)
        folder = sources.fetch("fx-http", log=lambda *_: None)
        assert _Flaky.ranges == [f"bytes={part.stat().st_size if part.exists() else len(_Flaky.data) // 2}-"]
        assert (folder / "interactions.parquet").is_file() and not part.exists()
    finally:
        DATASETS.unregister("fx-http")
        server.shutdown()


def test_conversion_is_kept_until_the_files_change(home, tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    fx = unpinned("ml-latest-small")
    try:
        (zipped,) = WRITERS["ml-latest-small"](up)
        logs: list[str] = []
        folder = sources.fetch(fx, [zipped], log=logs.append)
        assert any("converting" in m for m in logs) and any("recorded" in m for m in logs)
        logs.clear()
        assert sources.fetch(fx, log=logs.append) == folder and not any("converting" in m for m in logs)
        assert sources.fetch(fx, force=True, log=logs.append) == folder and any("converting" in m for m in logs)
    finally:
        DATASETS.unregister(fx)


def test_datasets_cli_lists_and_describes(capsys):
    from llmrec.cli import main

    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert len(names) >= 10 and {"ml-1m", "ml-latest-small", "steam", "lastfm", "yelp"} <= set(names)
    assert "GroupLens research licence" in out
    assert main(["datasets", "info", "ml-1m"]) == 0
    out = capsys.readouterr().out
    assert "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20" in out and "Harper" in out
    assert main(["datasets", "info", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_rating_scale_reaches_the_prompt(ml100k):
    import pandas as pd

    assert ml100k.rating_scale == "1-5"
    half = ml100k.with_interactions(ml100k.interactions.assign(rating=pd.Series([0.5, 5.0] * (len(ml100k.interactions) // 2))))
    assert half.rating_scale == "0.5-5"



def test_a_field_absent_everywhere_is_warned(home, tmp_path):
    fx = unpinned("amazon-2018-luxury-beauty")
    try:
        logs: list[str] = []
        sources.fetch(fx, WRITERS["amazon-2018-luxury-beauty"](tmp_path), log=logs.append)
        assert any("no item has a year" in m for m in logs), logs
        assert not any("no item has a genres" in m for m in logs)
    finally:
        DATASETS.unregister(fx)
