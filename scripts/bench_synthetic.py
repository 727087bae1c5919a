"""Scoring throughput on a synthetic workload: no dataset, no tokenizer, no downloads.

Random token prompts (like rendered histories) with 20 random-token candidates each, scored by a
randomly initialised model of SmolLM2-135M's shape (throughput does not depend on the weights).
Times, in one run: the transformers backend's naive and shared-prefix paths and, where vllm is
importable, the vLLM backend's plain and prefix-cache paths; prints one table with candidates/s
and the ratios. --catalogue N adds whole-catalogue rows: N synthetic items with shared prefixes
scored through their token trie and by per-candidate packing, and beam search top-10. Made for a GPU box without internet (scripts/gpu_check.sh); runs on a CPU too.

    python scripts/bench_synthetic.py --users 50 --prompt-len 300
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch


def smollm2_shape_model(folder: Path) -> str:
    """A Llama model with SmolLM2-135M's configuration and random weights, saved once."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    if not (folder / "config.json").is_file():
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                          rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                          bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    return str(folder.resolve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--prompt-len", type=int, default=300, help="prompt tokens (20 ML-100K titles ~ 250-350)")
    ap.add_argument("--naive-users", type=int, default=10)
    ap.add_argument("--model", default="", help="model folder (default: random weights, SmolLM2-135M shape)")
    ap.add_argument("--folder", default="runs/bench/random-smollm2-shape")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--catalogue", type=int, default=0,
                    help="also time whole-catalogue scoring of this many synthetic items (token trie vs "
                         "per-candidate, beam top-10 at beam 10/20/50), on --catalogue-users prompts")
    ap.add_argument("--catalogue-users", type=int, default=3)
    args = ap.parse_args()

    from llmrec.backends import ScoreRequest
    from llmrec.backends.hf import HFBackend

    model = args.model or smollm2_shape_model(Path(args.folder))
    rng = np.random.default_rng(0)
    reqs = [ScoreRequest(rng.integers(100, 40000, args.prompt_len).tolist(),
                         [rng.integers(100, 40000, rng.integers(4, 9)).tolist() for _ in range(args.candidates)])
            for _ in range(args.users)]
    n = sum(len(r.continuations) for r in reqs)
    sub = reqs[: args.naive_users]
    n_sub = sum(len(r.continuations) for r in sub)
    rows: list[tuple[str, int, float, str]] = []

    hf = HFBackend(model)
    sync = torch.cuda.synchronize if hf.device.startswith("cuda") else (lambda: None)

    def timed(fn, *a):
        sync()
        t = time.perf_counter()
        out = fn(*a)
        sync()
        return out, time.perf_counter() - t

    def in_batches(backend, rs, size=8):
        return [x for k in range(0, len(rs), size) for x in backend.continuation_logprobs(rs[k:k + size])]

    hf.continuation_logprobs(reqs[:2])  # warm-up
    ref, t_shared = timed(in_batches, hf, reqs)
    rows.append(("hf shared-prefix", n, t_shared, ""))
    hf.shared_prefix = False
    naive, t_naive = timed(in_batches, hf, sub)
    hf.shared_prefix = True
    _, t_shared_sub = timed(in_batches, hf, sub)
    diff = max(float(np.abs(a - b).max()) for ra, rb in zip(ref, naive) for a, b in zip(ra, rb))
    rows.append(("hf naive (subset)", n_sub, t_naive, f"shared-prefix {t_naive / t_shared_sub:.1f}x faster on it"))
    device, dtype = hf.device, hf.dtype
    catalogue = catalogue_rows(hf, args, rng, timed) if args.catalogue else []
    hf.close()

    if not args.no_vllm and importlib.util.find_spec("vllm") is not None:
        from llmrec.backends import VLLMSettings
        from llmrec.backends.vllm import VLLMBackend

        engine, t_start = timed(lambda: VLLMBackend(model, settings=VLLMSettings(path="prefix")))
        try:
            engine.continuation_logprobs(reqs[:2])
            for path in ("plain", "prefix"):
                engine.settings = VLLMSettings(path=path)
                got, dt = timed(engine.continuation_logprobs, reqs)
                d = max(float(np.abs(a - b).max()) for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
                rows.append((f"vllm {path}", n, dt, f"time / hf shared {dt / t_shared:.2f}; max |diff| {d:.1e}"))
        finally:
            engine.close()
        print(f"vllm engine start {t_start:.1f}s")
    elif not args.no_vllm:
        print("vllm is not importable here: vLLM rows skipped")

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"device={device} ({gpu}) dtype={dtype} torch={torch.__version__} users={args.users} "
          f"candidates={n} prompt_len={args.prompt_len} model={model}")
    print(f"{'path':22s}{'cands':>7s}{'seconds':>10s}{'cand/s':>10s}  notes")
    for name, count, sec, note in rows:
        print(f"{name:22s}{count:7d}{sec:10.2f}{count / sec:10.1f}  {note}")
    print(f"max |diff| hf shared vs naive: {diff:.1e}")
    for line in catalogue:
        print(line)


def synthetic_catalogue(n: int, rng) -> dict[str, list[int]]:
    """`n` items whose token paths share prefixes as titles do: a first token among n/8 (Zipf-like),
    then 2-7 more tokens, a tenth of the items sharing their first two tokens with another."""
    firsts = rng.integers(100, 40000, max(2, n // 8))
    paths: dict[str, list[int]] = {}
    for k in range(n):
        first = int(firsts[min(int(rng.zipf(1.5)) - 1, len(firsts) - 1)])
        if paths and rng.random() < 0.1:
            first, second = list(paths.values())[int(rng.integers(len(paths)))][:2]
            path = [first, second] + rng.integers(100, 40000, rng.integers(1, 6)).tolist()
        else:
            path = [first] + rng.integers(100, 40000, rng.integers(2, 8)).tolist()
        paths[str(k)] = path
    return paths


def catalogue_rows(hf, args, rng, timed) -> list[str]:
    """Seconds per user for a whole synthetic catalogue: trie vs per-candidate packing, then beam top-10."""
    from llmrec.backends import ScoreRequest
    from llmrec.scoring.catalogue import TokenTrie, beam_search, trie_scores

    paths = synthetic_catalogue(args.catalogue, rng)
    trie = TokenTrie.build(paths)
    tokens = sum(len(p) for p in paths.values())
    prompts = [rng.integers(100, 40000, args.prompt_len).tolist() for _ in range(args.catalogue_users)]
    out = [(f"catalogue: {len(paths)} items, {tokens} candidate tokens, {len(trie)} trie nodes "
           f"({len(trie) / tokens:.2f}), {len(prompts)} users")]
    t_trie, t_cand, diff, exact = [], [], 0.0, []
    for p in prompts:
        by_trie, dt = timed(trie_scores, hf, p, trie)
        t_trie.append(dt)
        (per,), dt = timed(hf.continuation_logprobs, [ScoreRequest(p, list(paths.values()))])
        t_cand.append(dt)
        diff = max(diff, max(abs(float(by_trie[i].sum()) - float(x.sum())) for i, x in zip(paths, per)))
        exact.append({i for i, _ in sorted(by_trie.items(), key=lambda kv: -kv[1].sum())[:10]})
    out.append(f"  exact, trie          {np.mean(t_trie):8.2f} s/user")
    out.append(f"  exact, per-candidate {np.mean(t_cand):8.2f} s/user  (trie / per-candidate "
               f"{np.mean(t_trie) / np.mean(t_cand):.2f}; max |diff| {diff:.1e})")
    for width in (10, 20, 50):
        secs, overlap = [], []
        for p, ref in zip(prompts, exact):
            found, dt = timed(beam_search, hf, p, trie, 10, width)
            secs.append(dt)
            overlap.append(len(ref & set(found.items)) / 10)
        out.append(f"  beam {width:2d} top-10       {np.mean(secs):8.2f} s/user  (overlap with exact "
                   f"{np.mean(overlap):.2f})")
    return out


if __name__ == "__main__":
    main()
