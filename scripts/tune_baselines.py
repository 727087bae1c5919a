"""Choose the baselines' default settings on the validation items (never on the test items).

Each model gets a small grid around the settings its paper or reference implementation uses; each
point is fitted once (seed 0) on the training part of the ML-100K leave-one-out split and scored by
validation NDCG@10 (full ranking over the items the user has not seen in training: the signal the
trained models early-stop on). The best point per model is printed last; the defaults in
`llmrec/baselines/*.py` are this script's choices (BPR's: the best mean over ML-100K and
ml-latest-small, `--data format=parquet path=<converted folder> dataset=ml-latest-small`;
MF's likewise).

    python scripts/tune_baselines.py [--models mf bpr als ease neumf sasrec] [--threads 1] [--data KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time

GRIDS: dict[str, list[dict]] = {
    "mf": [{"unrated": k, "learning_rate": lr} for k in (0, 1, 4) for lr in (0.01, 0.03)],
    "bpr": [{"learning_rate": lr, "weight_decay": wd} for lr in (0.005, 0.01, 0.02) for wd in (0.01, 0.001)],
    "als": [{"weight_decay": reg, "alpha": a} for reg in (0.01, 0.1, 1.0) for a in (1.0, 2.0, 5.0, 10.0, 40.0)],
    "ease": [{"weight_decay": lam} for lam in (50.0, 100.0, 200.0, 500.0, 1000.0)],
    "neumf": [{"embedding_size": d} for d in (16, 32, 64)],
    "sasrec": [{"dropout": p} for p in (0.2, 0.5)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS / implicit threads")
    ap.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE", help="data settings of another dataset")
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from llmrec import baselines
    from llmrec.config import DataConfig, SplitConfig, load_config
    from llmrec.data.loaders import load_dataset
    from llmrec.data.split import leave_one_out

    torch.set_num_threads(args.threads)
    split_cfg = SplitConfig()
    data_cfg = load_config(None, [f"data.{x}" for x in args.data]).data if args.data else DataConfig()
    split = leave_one_out(load_dataset(data_cfg, log=lambda *_: None), split_cfg.tie_break, split_cfg.seed)
    data = baselines.TrainData.from_split(split)
    best: dict[str, tuple[float, dict]] = {}
    with threadpool_limits(args.threads):
        for name in args.models:
            for point in GRIDS[name]:
                started = time.perf_counter()
                model = baselines.make(name, **point).fit(data)
                ndcg = max(getattr(model, "history", []) or [baselines.full_valid_ndcg10(model, data)])
                epoch = getattr(model, "best_epoch", None)
                print(f"{name:7s} {point} valid NDCG@10 {ndcg:.4f} (best epoch {epoch}) "
                      f"{time.perf_counter() - started:.1f}s", flush=True)
                if ndcg > best.get(name, (-1.0, {}))[0]:
                    best[name] = (ndcg, point)
    print("\nchosen on validation NDCG@10:")
    for name, (ndcg, point) in best.items():
        print(f"  {name:7s} {point}  ({ndcg:.4f})")


if __name__ == "__main__":
    main()
