"""Benchmark: llmrec's BPR-MF against the `implicit` library's BPR on the same ML-100K split.

Both are fitted on the same training matrix (leave-one-out, no validation/test items) in one
process; printed: fit seconds, full-catalogue test NDCG@10 and HR@10 (unseen items only), and
the ratios. llmrec's time includes its per-epoch validation used for early stopping.

    pip install implicit && python scripts/bench_baselines.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def full_test_metrics(score_all, data, split) -> tuple[float, float]:
    """NDCG@10 and HR@10 of the test item among items outside the user's history (train + valid)."""
    ndcg, hr = [], []
    scores = np.asarray(score_all(np.arange(len(data.users))), dtype=np.float64)
    for u, user in enumerate(data.users):
        seq = split[user]
        s = scores[u]
        s[[data.item_index[i] for i in seq.history("test")]] = -np.inf
        p = s[data.item_index[seq.test]]
        rank = 1 + np.sum(s > p) + (np.sum(s == p) - 1) / 2
        ndcg.append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
        hr.append(float(rank <= 10))
    return float(np.mean(ndcg)), float(np.mean(hr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        raise SystemExit("this benchmark needs the implicit package: pip install implicit") from None

    import torch

    from llmrec import baselines
    from llmrec.config import DataConfig
    from llmrec.data.loaders import load_dataset
    from llmrec.data.split import leave_one_out

    # One-off import costs are kept out of both timings: torch's first optimizer pulls in
    # torch._dynamo (~3 s), just as `implicit` is imported before its clock starts.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    split = leave_one_out(load_dataset(DataConfig(), log=lambda *_: None))
    data = baselines.TrainData.from_split(split)

    t = time.perf_counter()
    ours = baselines.make("bpr", embedding_size=args.factors, epochs=args.epochs, seed=args.seed).fit(data)
    t_ours = time.perf_counter() - t
    ndcg_ours, hr_ours = full_test_metrics(ours.score_all, data, split)

    model = BayesianPersonalizedRanking(factors=args.factors, iterations=args.epochs, random_state=args.seed)
    t = time.perf_counter()
    model.fit(data.binary.astype(np.float32), show_progress=False)
    t_impl = time.perf_counter() - t
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
    ndcg_impl, hr_impl = full_test_metrics(lambda users: uf[users] @ itf.T, data, split)

    print(f"ML-100K leave-one-out, {len(data.users)} users, {len(data.items)} items, "
          f"{data.binary.nnz} training interactions, {args.factors} factors")
    print(f"{'model':36s}{'fit s':>8s}{'NDCG@10':>9s}{'HR@10':>8s}")
    print(f"{'llmrec BPR-MF (best epoch ' + str(ours.best_epoch) + ')':36s}{t_ours:8.2f}{ndcg_ours:9.4f}{hr_ours:8.4f}")
    print(f"{'implicit BPR (' + str(args.epochs) + ' iterations)':36s}{t_impl:8.2f}{ndcg_impl:9.4f}{hr_impl:8.4f}")
    print(f"time ratio llmrec/implicit: {t_ours / t_impl:.2f}; NDCG@10 ratio llmrec/implicit: {ndcg_ours / ndcg_impl:.2f}")


if __name__ == "__main__":
    main()
