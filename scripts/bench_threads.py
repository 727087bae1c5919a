"""How many torch threads the small torch baselines should use, on a quiet and on a shared CPU.

Each torch baseline (bpr-adam, mf, neumf, sasrec) is fitted for a fixed number of epochs (early
stopping off) on the ML-100K leave-one-out split with 1 thread and with every core, first on a
quiet machine, then while `--load` busy processes share the CPU (what a laptop running a browser,
or a machine running a training job, looks like). Printed: seconds per epoch of each, and the
ratios (all cores / 1 thread) measured in this one run. `baseline.threads` chooses the count for
`llmrec baseline` (default 0: the idle cores, the cores minus the 1-minute load average).

    python scripts/bench_threads.py [--epochs 3] [--load 2] [--models bpr-adam mf neumf sasrec]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def spin(stop) -> None:
    """One busy process: pure-Python arithmetic until told to stop."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["bpr-adam", "mf", "neumf", "sasrec"])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (early stopping off)")
    ap.add_argument("--load", type=int, default=2, help="busy processes in the shared-CPU condition (0: skip it)")
    ap.add_argument("--timeout", type=float, default=600, help="give up a fit after this many seconds")
    args = ap.parse_args()

    import torch

    from llmrec import baselines
    from llmrec.config import DataConfig
    from llmrec.data.loaders import load_dataset
    from llmrec.data.split import leave_one_out

    cores = os.cpu_count() or 1
    data = baselines.TrainData.from_split(leave_one_out(load_dataset(DataConfig(), log=lambda *_: None)))
    counts = sorted({1, cores})
    conditions = ["quiet"] + ([f"{args.load} busy"] if args.load else [])
    seconds: dict[tuple[str, str, int], float] = {}
    for condition in conditions:
        stop = mp.Event()
        busy = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.load if condition != "quiet" else 0)]
        for p in busy:
            p.start()
        try:
            for name in args.models:
                for threads in counts:
                    torch.set_num_threads(threads)
                    model = baselines.make(name, epochs=args.epochs, patience=args.epochs + 1)
                    started = time.perf_counter()
                    model.fit(data)
                    seconds[name, condition, threads] = (time.perf_counter() - started) / args.epochs
                    print(f"{name:9s} {condition:7s} {threads} thread(s): {seconds[name, condition, threads]:.2f} s/epoch",
                          flush=True)
        finally:
            stop.set()
            for p in busy:
                p.join()

    print(f"\nML-100K, {len(data.users)} users; {args.epochs} epochs per fit; {cores} cores; seconds per epoch")
    head = " | ".join(f"{c}, {t} thr" for c in conditions for t in counts)
    print(f"| model | {head} | " + " | ".join(f"{c}: {cores} thr / 1 thr" for c in conditions) + " |")
    print("|---" * (1 + len(conditions) * (len(counts) + 1)) + "|")
    for name in args.models:
        cells = [f"{seconds[name, c, t]:.2f}" for c in conditions for t in counts]
        ratios = [f"x{seconds[name, c, cores] / seconds[name, c, 1]:.2f}" for c in conditions]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
