"""Benchmark: whole-catalogue scoring on ML-100K's `full.test` lists (every item a user has not
seen, about 1,650) with the embedded model and a title template that ends each title with a marker.

Per user, in one process and on one model: the tokens computed by the token trie against
per-candidate packing (prompt once, every candidate's tokens after it), seconds per user and peak
resident memory above the loaded model for exact scoring both ways, and for beam search top-10
at each beam width, with the overlap of the beam's top-10 with the exact top-10 and its validity
(duplicates, items outside the list: 0 by construction). With --vllm (run it with the vLLM
virtualenv's python) the vLLM backend's trie path and beam search are timed on the same users and
checked against transformers.

    python scripts/bench_catalogue.py --users 3 --beams 10 20 50
    .venv-vllm/bin/python scripts/bench_catalogue.py --users 3 --beams 10 20 50 --vllm
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np


class PeakRSS:
    """Peak resident memory of this process while the block runs, above its level at entry
    (sampled every 5 ms from /proc; torch's CPU allocations are invisible to tracemalloc)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn, *args):
    """fn(*args), its seconds and its peak memory (MiB above the start)."""
    with PeakRSS() as mem:
        t = time.perf_counter()
        out = fn(*args)
        seconds = time.perf_counter() - t
    return out, seconds, mem.mib


def spread(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.2f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=3, help="users (the first of full.test), each scored in full")
    ap.add_argument("--beams", type=int, nargs="+", default=[10, 20, 50], help="beam widths for top-10")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--history-len", type=int, default=10)
    ap.add_argument("--template", default="title/catalogue_v1")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out-dir", default="runs/bench-catalogue", help="where ML-100K's full lists are prepared")
    ap.add_argument("--skip-per-candidate", action="store_true", help="leave out the (slow) per-candidate path")
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM backend's trie and beam search")
    args = ap.parse_args()

    from llmrec.backends.hf import HFBackend
    from llmrec.config import load_config
    from llmrec.data.prepared import open_prepared
    from llmrec.models.load import load_tokenizer
    from llmrec.prompts.render import load_template
    from llmrec.recipes import prepare
    from llmrec.scoring.catalogue import TokenTrie
    from llmrec.scoring.rank import LLMRanker

    cfg = load_config(None, [f"out_dir={args.out_dir!r}".replace("'", '"'), "candidates.kinds=['full']",
                             "candidates.stages=['test']", f"split.history_len={args.history_len}",
                             "rank.candidates=full.test"])
    prepare.run(cfg, log=lambda *_: None, force=True)  # the benchmark's own scratch folder
    prepared = open_prepared(cfg, log=lambda *_: None)
    ds = prepared.dataset(log=lambda *_: None)
    queries = prepared.job(ds).queries[: args.users]
    tok = load_tokenizer(args.model)
    template = load_template(args.template)
    hf = HFBackend(args.model)
    by_trie = LLMRanker(template, hf, tok, ds, trie="always")
    per_cand = LLMRanker(template, hf, tok, ds, trie="never")
    print(f"{args.template}, {args.model}, {len(queries)} users, {len(queries[0].candidates)} candidates "
          f"for the first, history {args.history_len}, torch threads {__import__('torch').get_num_threads()}")

    exact, rows = {}, []
    for q in queries:
        (s,), _ = by_trie.scorables(q)
        paths = dict(zip(q.candidates, s.answers))
        trie = TokenTrie.build(paths)
        row = {"user": q.user_id, "prompt": len(s.prompt.ids), "trie_nodes": len(trie),
               "candidate_tokens": sum(len(p) for p in paths.values())}
        (a,), row["trie_s"], row["trie_mib"] = timed(by_trie.score, [q])
        exact[q.user_id] = a
        if not args.skip_per_candidate:
            (b,), row["per_candidate_s"], row["per_candidate_mib"] = timed(per_cand.score, [q])
            row["max_diff"] = float(np.abs(a.scores - b.scores).max())
        rows.append(row)
        print("  user", row)

    def top(s, k):
        order = np.argsort(-s.scores, kind="stable")[:k]
        return [s.candidates[i] for i in order]

    print(f"\nexact, per user (mean ± sd over {len(rows)} users)")
    print(f"  tokens after the prompt: trie {spread([r['trie_nodes'] for r in rows])}, per-candidate "
          f"{spread([r['candidate_tokens'] for r in rows])}, ratio "
          f"{spread([r['trie_nodes'] / r['candidate_tokens'] for r in rows])}")
    print(f"  hf trie: {spread([r['trie_s'] for r in rows])} s, peak +{spread([r['trie_mib'] for r in rows])} MiB")
    if not args.skip_per_candidate:
        print(f"  hf per-candidate: {spread([r['per_candidate_s'] for r in rows])} s, peak "
              f"+{spread([r['per_candidate_mib'] for r in rows])} MiB; time ratio trie/per-candidate "
              f"{spread([r['trie_s'] / r['per_candidate_s'] for r in rows])}; max |diff| "
              f"{max(r['max_diff'] for r in rows):.2e}")

    def beams(ranker, name):
        for width in args.beams:
            secs, mibs, overlaps, bad = [], [], [], 0
            for q in queries:
                (g,), sec, mib = timed(ranker.generate, [q], args.top_k, width)
                secs.append(sec)
                mibs.append(mib)
                ref = set(top(exact[q.user_id], args.top_k))
                overlaps.append(len(ref & set(g.candidates)) / args.top_k)
                bad += len(g.candidates) - len(set(g.candidates)) + len(set(g.candidates) - set(q.candidates))
            print(f"  {name} beam {width}: {spread(secs)} s/user, peak +{spread(mibs)} MiB, top-{args.top_k} "
                  f"overlap with exact {spread(overlaps)}, invalid or duplicate {bad}")

    print(f"\nbeam search top-{args.top_k}")
    beams(by_trie, "hf")

    if args.vllm:
        from llmrec.backends import VLLMSettings
        from llmrec.backends.vllm import VLLMBackend

        engine = VLLMBackend(args.model, settings=VLLMSettings(enforce_eager=True, max_model_len=2048))
        try:
            vl = LLMRanker(template, engine, tok, ds, trie="always")
            secs, diffs = [], []
            for q in queries:
                (v,), sec, _ = timed(vl.score, [q])
                secs.append(sec)
                diffs.append(float(np.abs(v.scores - exact[q.user_id].scores).max()))
            print(f"\nvllm exact (trie through the prefix cache): {spread(secs)} s/user, max |diff| with hf "
                  f"{max(diffs):.2e} (memory: the engine's own processes, not measured here)")
            beams(vl, "vllm")
        finally:
            engine.close()


if __name__ == "__main__":
    main()
