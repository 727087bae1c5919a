"""Benchmark: naive vs shared-prefix title-likelihood scoring on the embedded model and ML-100K.

All figures come from one process and one model: candidates/s for the naive path (each
candidate re-runs its prompt), for the packed shared-prefix path, and for the bound "one plain
causal forward over the unique tokens" (prompt once + all candidate tokens, no custom mask).
Prints the speed-up and the shared/bound time ratio, and checks that both paths agree.
With --vllm (run it with the vLLM virtualenv's python) the same users are also scored by the vLLM
backend's two paths (plain prompt logprobs; per-token requests that reuse the prefix cache) in
the same run, with their candidates/s, the ratio to the transformers shared-prefix path and their
agreement. --random-init scores with randomly initialised weights of the model's shape
(throughput does not depend on the weights; for machines without the embedded model's cache).

    python scripts/bench_scoring.py --users 50 --naive-users 10
    .venv-vllm/bin/python scripts/bench_scoring.py --users 50 --naive-users 10 --vllm
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50, help="users scored by the shared-prefix path and the bound")
    ap.add_argument("--naive-users", type=int, default=10, help="of those, users also scored naively (slow)")
    ap.add_argument("--history-len", type=int, default=20)
    ap.add_argument("--template", default="title/next_item_v1")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-dir", default="runs/bench", help="where ML-100K candidates are prepared")
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM backend's plain and prefix paths")
    ap.add_argument("--random-init", action="store_true", help="random weights of the model's shape")
    args = ap.parse_args()
    if args.random_init:
        args.model = random_model(args.model, args.out_dir)

    from llmrec.backends.hf import HFBackend
    from llmrec.config import load_config
    from llmrec.data.prepared import open_prepared
    from llmrec.models.load import load_tokenizer
    from llmrec.prompts.render import load_template
    from llmrec.recipes import prepare
    from llmrec.scoring.rank import LLMRanker

    cfg = load_config(None, [f"out_dir={args.out_dir!r}".replace("'", '"'), "candidates.kinds=['sampled']",
                             "candidates.stages=['test']", f"split.history_len={args.history_len}"])
    prepare.run(cfg, log=lambda *_: None, force=True)  # the benchmark's own scratch folder
    prepared = open_prepared(cfg, log=lambda *_: None)
    ds = prepared.dataset(log=lambda *_: None)
    queries = prepared.job(ds).queries[: args.users]
    backend = HFBackend(args.model, device=args.device)
    tok = load_tokenizer(args.model)
    ranker = LLMRanker(load_template(args.template), backend, tok, ds)
    n_cands = sum(len(q.candidates) for q in queries)
    sync = torch.cuda.synchronize if backend.device.startswith("cuda") else (lambda: None)

    def timed(fn):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - t

    ranker.score(queries[:1])  # warm-up
    shared, t_shared = timed(lambda: [s for k in range(0, len(queries), 4) for s in ranker.score(queries[k:k + 4])])

    # Bound: the same unique tokens (prompt + every candidate's tokens) as one plain causal sequence.
    seqs = []
    for q in queries:
        (s,), _ = ranker.scorables(q)
        seqs.append(s.prompt.ids + [t for c in s.answers for t in c])

    def bound():
        with torch.inference_mode():
            for s in seqs:
                ids = torch.tensor([s], device=backend.device)
                h = backend._hidden(ids, torch.ones_like(ids), torch.arange(len(s), device=backend.device)[None])
                backend._logprobs_at(h[0, len(s) - 21:])  # the LM head on as many rows as are read

    _, t_bound = timed(bound)

    sub = queries[: args.naive_users]
    n_sub = sum(len(q.candidates) for q in sub)
    backend.shared_prefix = False
    naive, t_naive = timed(lambda: [s for k in range(0, len(sub), 4) for s in ranker.score(sub[k:k + 4])])
    backend.shared_prefix = True
    _, t_shared_sub = timed(lambda: [s for k in range(0, len(sub), 4) for s in ranker.score(sub[k:k + 4])])
    diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(shared, naive))
    same_rank = all((np.argsort(-a.scores, kind="stable") == np.argsort(-b.scores, kind="stable")).all()
                    for a, b in zip(shared, naive))

    tokens = sum(len(s) for s in seqs)
    print(f"device={backend.device} dtype={backend.dtype} template={args.template} "
          f"history_len={args.history_len} torch_threads={torch.get_num_threads()}")
    print(f"users={len(queries)} candidates={n_cands} unique_tokens={tokens} (naive subset: {len(sub)} users)")
    print(f"{'path':34s}{'seconds':>10s}{'cand/s':>10s}")
    print(f"{'naive (subset)':34s}{t_naive:10.2f}{n_sub / t_naive:10.1f}")
    print(f"{'shared-prefix (subset)':34s}{t_shared_sub:10.2f}{n_sub / t_shared_sub:10.1f}")
    print(f"{'shared-prefix (all)':34s}{t_shared:10.2f}{n_cands / t_shared:10.1f}")
    print(f"{'bound: one forward, unique tokens':34s}{t_bound:10.2f}{n_cands / t_bound:10.1f}")
    print(f"speed-up shared vs naive: {t_naive / t_shared_sub:.2f}x")
    print(f"shared / bound time ratio: {t_shared / t_bound:.2f}")
    print(f"max |score difference| shared vs naive: {diff:.2e}; same rankings: {same_rank}")
    if args.vllm:
        backend.close()
        bench_vllm(args, ranker, queries, shared, t_shared, n_cands)


def bench_vllm(args, ranker, queries, reference, t_reference: float, n_cands: int) -> None:
    """The vLLM backend's two paths on the same users, one engine (prefix caching on)."""
    from llmrec.backends import VLLMSettings
    from llmrec.backends.vllm import VLLMBackend

    t = time.perf_counter()
    engine = VLLMBackend(args.model, device=args.device, settings=VLLMSettings(path="prefix"))
    print(f"vllm engine start: {time.perf_counter() - t:.1f}s")
    ranker.backend = engine
    try:
        ranker.score(queries[:1])  # warm-up
        for path in ("plain", "prefix"):
            engine.settings = VLLMSettings(path=path)
            t = time.perf_counter()
            got = [s for k in range(0, len(queries), 16) for s in ranker.score(queries[k:k + 16])]
            dt = time.perf_counter() - t
            diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(got, reference))
            print(f"{'vllm ' + path:34s}{dt:10.2f}{n_cands / dt:10.1f}   time / hf shared-prefix "
                  f"{dt / t_reference:.2f}; max |diff| to hf {diff:.2e}")
    finally:
        engine.close()


def random_model(name: str, out_dir: str) -> str:
    """A folder with the named model's config and tokenizer and freshly initialised weights."""
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM

    from llmrec.models.load import load_tokenizer, resolve_model

    folder = Path(out_dir) / f"random-{Path(str(name)).name}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(name)))
        model.save_pretrained(folder)
        load_tokenizer(name).save_pretrained(folder)
    return str(folder.resolve())


if __name__ == "__main__":
    main()
