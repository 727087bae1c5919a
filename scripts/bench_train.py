"""Training throughput and memory of the shipped CPU configs: padded, length-grouped and packed
batches, gradient checkpointing, one process vs two.

Each condition is a real `llmrec train` run of `--steps` optimizer steps (a fresh `train.out` under
--work), started as its own process (or two, through torchrun) so that its peak memory is its own:
the resident set size of the process tree, sampled every 0.1 s. Printed per condition: examples/s
and real tokens/s of the training loop (from the run's train_state.json), the share of computed
token slots that were padding, peak memory; then the ratios measured in this one run (packed /
padded, grouped / padded, checkpointing / not, two processes / one). Validation is cut to its loss (no NDCG users).

Needs the prepared folder and what the configs read (`llmrec prepare`; for the sid config
`llmrec baseline --name sasrec` and `llmrec sid build --vectors runs/ml-100k/baselines/sasrec--sampled-20.test sid.levels=2`).

    python scripts/bench_train.py [--steps 10] [--configs sid title letters] [--no-two]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"sid": "scripts/configs/train_cpu_sid.toml", "title": "scripts/configs/train_cpu_lora_title.toml",
           "letters": "scripts/configs/train_cpu_lora.toml"}


def run(config: str, out: Path, steps: int, extra: list[str], processes: int) -> dict:
    """One training run; its final throughput entry plus the peak RSS of its process tree (MiB)."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["-m", "llmrec", "train", "--config", config, f"train.out={out}", f"train.max_steps={steps}",
            f"train.eval_every={steps}", "train.valid_users=0", "train.patience=100", *extra]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes)),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"train failed ({' '.join(args)}):\n{proc.stderr.read()[-2000:]}")
    final = json.loads((out / "train_state.json").read_text())["curve"][-1]
    return {**final, "peak_mib": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    ap.add_argument("--no-two", action="store_true", help="skip the two-process runs")
    ap.add_argument("--work", default="runs/bench_train", help="scratch folder for the runs' outputs")
    args = ap.parse_args()

    results: dict[tuple[str, str], dict] = {}
    for name in args.configs:
        conditions = {"padded": ([], 1), "grouped": (["train.batches=grouped"], 1),
                      "packed": (["train.batches=packed"], 1),
                      "padded + checkpointing": (["train.gradient_checkpointing=true"], 1)}
        if not args.no_two:
            conditions["padded, 2 processes"] = ([], 2)
        for label, (extra, processes) in conditions.items():
            r = run(CONFIGS[name], Path(args.work) / f"{name}-{len(results)}", args.steps, extra, processes)
            results[name, label] = r
            print(f"{name:8s} {label:24s} {r['examples_per_second']:7.2f} ex/s {r['tokens_per_second']:8.0f} tok/s "
                  f"padding {r['padding_share']:.1%}  peak {r['peak_mib']:7.0f} MiB", flush=True)

    print(f"\n{args.steps} steps per run, {os.cpu_count()} cores")
    print("| config | condition | examples/s | tokens/s | padding | peak MiB |")
    print("|---|---|---|---|---|---|")
    for (name, label), r in results.items():
        print(f"| {name} | {label} | {r['examples_per_second']:.2f} | {r['tokens_per_second']:.0f} | "
              f"{r['padding_share']:.1%} | {r['peak_mib']:.0f} |")
    print("\nratios measured in this run:")
    for name in args.configs:
        base = results[name, "padded"]
        grouped, packed = results[name, "grouped"], results[name, "packed"]
        gc = results[name, "padded + checkpointing"]
        line = (f"  {name}: examples/s grouped / padded x{grouped['examples_per_second'] / base['examples_per_second']:.2f}, "
                f"packed / padded x{packed['examples_per_second'] / base['examples_per_second']:.2f}; "
                f"checkpointing / not: peak memory x{gc['peak_mib'] / base['peak_mib']:.2f}, "
                f"examples/s x{gc['examples_per_second'] / base['examples_per_second']:.2f}")
        if (name, "padded, 2 processes") in results:
            two = results[name, "padded, 2 processes"]
            line += f"; 2 processes / 1: examples/s x{two['examples_per_second'] / base['examples_per_second']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
