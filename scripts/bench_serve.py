"""Load test of `llmrec serve` on loopback: batched vs one query per model call, in one run.

Starts `llmrec serve` twice on the prepared folder (first with `serve.max_batch=--batch`, then
with `serve.max_batch=1`), and each time runs --clients concurrent clients that each send
--requests POST /v1/rank requests one after another: a user of the candidate file (`user_id` and
its candidates; the server reads the history from the split). Prints per setting the p50/p95
latency, the throughput and the batch sizes the server reports in /health, then the ratios, and
the largest score difference between the two servers (batching must not change scores beyond
fp32 noise).

    python scripts/bench_serve.py                        # 20 clients x 5 requests, sampled-20.test
    python scripts/bench_serve.py --clients 4 --requests 2 rank.template=letters/candidates_v1

With --chat, one server and --clients concurrent chat sessions of --requests turns each (a
request, then "like 1", "dislike 2 and something older", "more like 1", "no horror", ...; odd
sessions for a user of the split, even ones anonymous): p50/p95 turn latency, turns per second,
and a check in the SQLite file that every turn was stored exactly once. Overrides such as
chat.understand=rules chat.reply=facts time the loop without text generation.

    python scripts/bench_serve.py --chat                 # 20 sessions x 5 turns, LM understanding and reasons
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from llmrec.config import Config, load_config
from llmrec.data.prepared import open_prepared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: str | None, overrides: list[str], port: int, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "llmrec.cli", "serve", "--port", str(port), *overrides]
    if config:
        args += ["--config", config]
    proc = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the child owns it
    deadline = time.time() + 600
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llmrec serve exited with {proc.returncode}; see {log}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
            return proc
        except httpx.TransportError:
            if time.time() > deadline:
                proc.kill()
                raise SystemExit(f"llmrec serve did not come up in 600 s; see {log}") from None
            time.sleep(0.5)


async def load(url: str, payloads: list[dict], clients: int) -> tuple[list[float], float, dict[str, list[float]]]:
    """`clients` workers, each sending its share of `payloads` one after another."""
    latencies: list[float] = []
    scores: dict[str, list[float]] = {}
    shares = [payloads[c::clients] for c in range(clients)]

    async def client(share: list[dict], http: httpx.AsyncClient) -> None:
        for p in share:
            t = time.perf_counter()
            r = await http.post("/v1/rank", json=p)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            scores[p["user_id"]] = r.json()["scores"]

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(s, http) for s in shares))
        wall = time.perf_counter() - started
    return latencies, wall, scores


CHAT_TEXTS = ["a {genre} movie from the 90s", "like 1", "dislike 2 and something older", "more like 1", "no horror"]
CHAT_GENRES = ["comedy", "drama", "thriller", "romance", "action"]


async def chat_load(url: str, sessions: int, turns: int) -> tuple[list[float], float, list[str], list[str]]:
    """`sessions` concurrent chat sessions of `turns` turns; (latencies, wall, session ids, errors)."""
    latencies: list[float] = []
    errors: list[str] = []

    async def session(k: int, http: httpx.AsyncClient) -> str:
        r = await http.post("/v1/chat/sessions", json={"user_id": str(k + 1)} if k % 2 else {})
        r.raise_for_status()
        sid = r.json()["session_id"]
        for n in range(turns):
            text = CHAT_TEXTS[n % len(CHAT_TEXTS)].format(genre=CHAT_GENRES[k % len(CHAT_GENRES)])
            t = time.perf_counter()
            r = await http.post(f"/v1/chat/sessions/{sid}/turns", json={"text": text})
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200 or r.json()["turn"] != n + 1:
                errors.append(f"{sid} turn {n + 1}: {r.status_code} {r.text[:200]}")
        return sid

    async with httpx.AsyncClient(base_url=url, timeout=900, limits=httpx.Limits(max_connections=sessions)) as http:
        started = time.perf_counter()
        sids = await asyncio.gather(*(session(k, http) for k in range(sessions)))
        wall = time.perf_counter() - started
    return latencies, wall, list(sids), errors


def bench_chat(args: argparse.Namespace) -> None:
    import sqlite3
    import tempfile

    db = Path(tempfile.mkdtemp(prefix="bench_chat_")) / "chat.sqlite"
    port, log = free_port(), Path("/tmp/bench_serve_chat.log")
    overrides = [*args.overrides, f"serve.max_batch={args.batch}", f"serve.max_wait_ms={args.max_wait_ms}",
                 f"chat.db={db}"]
    t = time.perf_counter()
    proc = start_server(args.config, overrides, port, log)
    startup = time.perf_counter() - t
    url = f"http://127.0.0.1:{port}"
    try:
        latencies, wall, sids, errors = asyncio.run(chat_load(url, args.clients, args.requests))
        batches = httpx.get(f"{url}/health").json()["batches"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT session_id, turn FROM turns").fetchall()
        by = dict(con.execute("SELECT understood_by, COUNT(*) FROM turns GROUP BY understood_by").fetchall())
        reasons = dict(con.execute("SELECT reason_by, COUNT(*) FROM recommendations GROUP BY reason_by").fetchall())
    expected = sorted((s, n) for s in sids for n in range(1, args.requests + 1))
    lost = len(set(expected) - set(rows))
    dup = len(rows) - len(set(rows))
    lat = np.array(latencies)
    n = args.clients * args.requests
    print(f"chat: {args.clients} sessions x {args.requests} turns = {n} turns in {wall:.1f}s, {n / wall:.2f} turns/s, "
          f"p50 {np.percentile(lat, 50):.2f}s, p95 {np.percentile(lat, 95):.2f}s; errors {len(errors)}, "
          f"turns stored {len(rows)} (lost {lost}, duplicated {dup}); understood by {by}; reasons by {reasons}; "
          f"rerank batches {batches}; server start {startup:.0f}s (overrides: {' '.join(args.overrides) or 'none'})")
    for e in errors[:5]:
        print("  error:", e)
    if errors or lost or dup:
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="TOML config (default: the packaged ml100k.toml)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=5, help="requests per client")
    ap.add_argument("--batch", type=int, default=8, help="serve.max_batch of the batched server")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="serve.max_wait_ms of both servers")
    ap.add_argument("--chat", action="store_true", help="chat mode: --clients sessions x --requests turns")
    ap.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides for both servers")
    args = ap.parse_args()
    if args.chat:
        bench_chat(args)
        return

    cfg: Config = load_config(args.config, args.overrides, Config)
    prepared = open_prepared(cfg, log=lambda *_: None)
    _, cs = prepared.candidates(prepared.cfg.rank.candidates)
    n = args.clients * args.requests
    if len(cs.lists) < n:
        raise SystemExit(f"{prepared.cfg.rank.candidates} has {len(cs.lists)} users; {n} requests need as many")
    payloads = [{"user_id": c.user_id, "candidates": list(c.candidates)} for c in cs.lists[:n]]
    print(f"{n} POST /v1/rank requests ({args.clients} concurrent clients x {args.requests}), "
          f"{len(payloads[0]['candidates'])} candidates each from {prepared.cfg.rank.candidates}, template "
          f"{prepared.cfg.rank.template}, history_len {prepared.cfg.split.history_len}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)

    results = {}
    for batch in (args.batch, 1):
        port = free_port()
        overrides = [*args.overrides, f"serve.max_batch={batch}", f"serve.max_wait_ms={args.max_wait_ms}",
                     f"serve.max_queue={max(256, n)}"]
        log = Path(f"/tmp/bench_serve_{batch}.log")
        t = time.perf_counter()
        proc = start_server(args.config, overrides, port, log)
        startup = time.perf_counter() - t
        url = f"http://127.0.0.1:{port}"
        try:
            httpx.post(f"{url}/v1/rank", json=payloads[0], timeout=900).raise_for_status()  # warm-up, not timed
            before = httpx.get(f"{url}/health").json()["batches"]
            latencies, wall, scores = asyncio.run(load(url, payloads, args.clients))
            after = httpx.get(f"{url}/health").json()["batches"]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        sizes = {int(k): v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
        calls = sum(sizes.values())
        lat = np.array(latencies)
        results[batch] = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                          "throughput": n / wall, "wall": wall, "calls": calls,
                          "mean_batch": sum(k * v for k, v in sizes.items()) / calls, "sizes": sizes,
                          "startup": startup, "scores": scores}
        r = results[batch]
        print(f"serve.max_batch={batch}: {n} requests in {wall:.1f}s, {r['throughput']:.2f} req/s, "
              f"p50 {r['p50']:.2f}s, p95 {r['p95']:.2f}s, {calls} ranker calls (mean batch {r['mean_batch']:.2f}, "
              f"sizes {dict(sorted(sizes.items()))}); server start {startup:.0f}s", flush=True)

    b, u = results[args.batch], results[1]
    diff = max(float(np.max(np.abs(np.array(b["scores"][k]) - np.array(u["scores"][k])))) for k in b["scores"])
    print()
    print("| serve.max_batch | requests | seconds | req/s | p50 s | p95 s | ranker calls | mean batch |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in (args.batch, 1):
        r = results[batch]
        print(f"| {batch} | {n} | {r['wall']:.1f} | {r['throughput']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | "
              f"{r['calls']} | {r['mean_batch']:.2f} |")
    print(f"\nbatched / unbatched: throughput x{b['throughput'] / u['throughput']:.2f}, "
          f"p50 latency x{b['p50'] / u['p50']:.2f}, p95 latency x{b['p95'] / u['p95']:.2f}; "
          f"largest score difference between the two servers {diff:.2g}")
    print(json.dumps({str(k): {m: v for m, v in r.items() if m != "scores"} for k, r in results.items()}))


if __name__ == "__main__":
    main()
