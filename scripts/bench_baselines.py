"""Peer benchmark: llmrec's baselines against reference implementations on the same split.

Pairs: llmrec `bpr` / `als` against the `implicit` library's BPR / ALS (its defaults, 64 factors),
llmrec `sasrec` / `neumf` against RecBole's SASRec / NeuMF (run by `scripts/recbole_peer.py` in its
own virtualenv `.venv-recbole`, skipped with a note when that is missing), plus `ease` and `pop`.
Everything is fitted on the training part of the ML-100K leave-one-out split (default settings:
hash tie-break, seed 0) for each seed, with the same thread count on every side (torch, BLAS,
implicit's OpenMP, RecBole's torch). Printed: test NDCG@10 and HR@10 under full ranking (the test
item among every item outside the user's history), sampled-20 NDCG@10 on the prepared candidate
lists, fit seconds (mean ± sd over seeds), and the ratios llmrec / peer.

    bash scripts/setup_recbole.sh   # once, for the RecBole peers
    python scripts/bench_baselines.py [--seeds 0 1 2] [--threads 1] [--models bpr als ease neumf sasrec pop]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"bpr": "implicit BPR", "als": "implicit ALS", "sasrec": "RecBole SASRec", "neumf": "RecBole NeuMF"}


def test_metrics(score_all, data, split, cands) -> dict[str, float]:
    """Full-ranking NDCG@10 / HR@10 of the test item (items outside the user's history) and
    NDCG@10 on the sampled-20 test lists."""
    scores = np.asarray(score_all(np.arange(len(data.users))), dtype=np.float64)
    ndcg, hr, sampled = [], [], []
    for u, user in enumerate(data.users):
        seq, s = split[user], scores[u].copy()
        lst = cands[user]
        sub = s[[data.item_index[i] for i in lst.candidates]]
        p = sub[lst.candidates.index(lst.positive)]
        rank = 1 + np.sum(sub > p) + (np.sum(sub == p) - 1) / 2
        sampled.append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
        s[[data.item_index[i] for i in seq.history("test")]] = -np.inf
        p = s[data.item_index[seq.test]]
        rank = 1 + np.sum(s > p) + (np.sum(s == p) - 1) / 2
        ndcg.append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
        hr.append(float(rank <= 10))
    return {"ndcg10": float(np.mean(ndcg)), "hr10": float(np.mean(hr)), "sampled_ndcg10": float(np.mean(sampled))}


def implicit_peer(name: str, data, seed: int, threads: int):
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    cls = BayesianPersonalizedRanking if name == "bpr" else AlternatingLeastSquares
    model = cls(factors=64, random_state=seed, num_threads=threads)
    started = time.perf_counter()
    model.fit(data.binary.astype(np.float32), show_progress=False)
    seconds = time.perf_counter() - started
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return (lambda users: uf[users] @ itf.T), seconds


def recbole_peer(name: str, seed: int, threads: int, split_path: Path, epochs: int) -> dict | None:
    python = ROOT / ".venv-recbole" / "bin" / "python"
    if not python.is_file():
        return None
    cmd = [str(python), str(ROOT / "scripts" / "recbole_peer.py"), "--model", {"sasrec": "SASRec", "neumf": "NeuMF"}[name],
           "--seed", str(seed), "--threads", str(threads), "--split", str(split_path), "--epochs", str(epochs), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"RecBole {name} seed {seed} failed: {(proc.stderr or proc.stdout)[-400:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=["bpr", "als", "ease", "neumf", "sasrec", "pop"])
    ap.add_argument("--recbole-epochs", type=int, default=200, help="RecBole NeuMF's epoch cap (it early-stops)")
    ap.add_argument("--recbole-sasrec-epochs", type=int, default=0,
                    help="RecBole SASRec's epoch cap; 0 skips it (it trains on every prefix of every history: "
                         "about 300 s an epoch on one CPU thread for ML-100K)")
    ap.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE",
                    help="data settings for another dataset or variant, e.g. min_rating=4 (ML-100K positives)")
    ap.add_argument("--out", default="runs/ml-100k/bench_baselines.json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch
    from threadpoolctl import threadpool_limits

    from llmrec import baselines
    from llmrec.config import DataConfig, SplitConfig, load_config
    from llmrec.data.candidates import build
    from llmrec.data.loaders import load_dataset
    from llmrec.data.split import leave_one_out

    torch.set_num_threads(args.threads)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # one-off import cost kept out of the timings
    split_cfg = SplitConfig()
    data_cfg = load_config(None, [f"data.{x}" for x in args.data]).data if args.data else DataConfig()
    split = leave_one_out(load_dataset(data_cfg, log=lambda *_: None), split_cfg.tie_break, split_cfg.seed)
    data = baselines.TrainData.from_split(split)
    cands = build(split, "sampled", 20, 0, "test").by_user()
    split_path = Path(args.out).with_suffix(".split.jsonl")  # what the RecBole peers read
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split.save(split_path)

    results: dict[str, list[dict]] = {}
    with threadpool_limits(args.threads):
        for name in args.models:
            for seed in args.seeds if name not in ("pop", "ease") else args.seeds[:1]:
                kwargs = {} if name in ("pop", "ease") else {"seed": seed}
                started = time.perf_counter()
                model = baselines.make(name, **kwargs).fit(data)
                seconds = time.perf_counter() - started
                row = {"seed": seed, "fit_seconds": seconds, **test_metrics(model.score_all, data, split, cands)}
                results.setdefault(f"llmrec {name}", []).append(row)
                print(f"llmrec {name} seed {seed}: {row}", flush=True)
                if name in ("bpr", "als"):
                    score_all, seconds = implicit_peer(name, data, seed, args.threads)
                    row = {"seed": seed, "fit_seconds": seconds, **test_metrics(score_all, data, split, cands)}
                    results.setdefault(PEERS[name], []).append(row)
                    print(f"{PEERS[name]} seed {seed}: {row}", flush=True)
                elif name == "neumf" or (name == "sasrec" and args.recbole_sasrec_epochs):
                    epochs = args.recbole_epochs if name == "neumf" else args.recbole_sasrec_epochs
                    out = recbole_peer(name, seed, args.threads, split_path, epochs)
                    if out is not None:
                        row = {"seed": seed, "fit_seconds": out["fit_seconds"], "ndcg10": out["test_ndcg10"],
                               "hr10": out["test_hr10"], "sampled_ndcg10": None, "best_epoch": out.get("best_epoch"),
                               "epochs_run": out.get("epochs_run"), "note": out.get("note")}
                        results.setdefault(PEERS[name], []).append(row)
                        print(f"{PEERS[name]} seed {seed}: {row}", flush=True)

    def stat(rows: list[dict], key: str) -> str:
        x = [r[key] for r in rows if r.get(key) is not None]
        return "-" if not x else f"{np.mean(x):.4f} ± {np.std(x):.4f}" if key != "fit_seconds" else \
            f"{np.mean(x):.1f} ± {np.std(x):.1f}"

    print(f"\n{data_cfg.dataset} {' '.join(args.data)} leave-one-out, {len(data.users)} users, {len(data.items)} items, {data.binary.nnz} training "
          f"interactions; seeds {args.seeds}; {args.threads} thread(s) each; mean ± sd over seeds")
    print("| model | full NDCG@10 | full HR@10 | sampled-20 NDCG@10 | fit s |")
    print("|---|---|---|---|---|")
    for label, rows in results.items():
        print(f"| {label} | {stat(rows, 'ndcg10')} | {stat(rows, 'hr10')} | {stat(rows, 'sampled_ndcg10')} | "
              f"{stat(rows, 'fit_seconds')} |")
    print("\nratios llmrec / peer (means over seeds):")
    for name, peer in PEERS.items():
        ours, theirs = results.get(f"llmrec {name}"), results.get(peer)
        if ours and theirs:
            q = np.mean([r["ndcg10"] for r in ours]) / np.mean([r["ndcg10"] for r in theirs])
            t = np.mean([r["fit_seconds"] for r in ours]) / np.mean([r["fit_seconds"] for r in theirs])
            print(f"  {name} vs {peer}: full NDCG@10 x{q:.2f}, fit time x{t:.2f}")
        elif ours:
            print(f"  {name} vs {peer}: peer not run (RecBole: bash scripts/setup_recbole.sh; its SASRec only "
                  "with --recbole-sasrec-epochs N)")
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
