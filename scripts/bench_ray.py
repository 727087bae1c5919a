"""Benchmark of `llmrec rank ... rank.engine=ray`, in one run, each job in a fresh process.

1. Overhead: the same users (--users of sampled-20.test, the real model, --template) ranked by
   rank.engine=local and by rank.engine=ray with one actor holding every CPU. Both jobs load the
   model once; the Ray job is timed with the cluster already up (as on a cluster, where `ray
   start` runs once) and the cluster's start is printed apart. --repeats pairs, in alternating
   order (the machine's speed drifts); the ratio's mean and spread. Target: ray / local <= 1.15.
2. Memory and scaling: a synthetic JSONL of --synthetic users (ML-100K item ids, 10 history items,
   20 candidates) ranked by a trivial scorer (the first candidate best), so the pipeline itself is
   measured: reading, checking, moving blocks, writing parts, merging. Peak RSS of the driver and
   of the largest actor at a tenth of the users and at all of them (target: flat), then
   throughput with 1 and --actors actors (target: rising).

    python scripts/bench_ray.py                                   # 3 pairs of 100-user jobs; 1,000,000 synthetic
    python scripts/bench_ray.py --users 20 --repeats 1 --synthetic 100000   # a quick look

Needs the prepared folder (`llmrec prepare`; built here when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.config import Config, apply_overrides, from_dict, load_config, to_dict


def with_(cfg: Config, *overrides: str) -> Config:
    return from_dict(Config, apply_overrides(to_dict(cfg), list(overrides)))


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class FirstCandidateScorer:
    """A trivial scorer that also records its actor's peak RSS (one small file per actor)."""

    def __init__(self, rss_dir: str) -> None:
        self.path = Path(rss_dir) / f"actor-{os.getpid()}"

    def score(self, qs):
        from llmrec.scoring.rank import Scored

        self.path.write_text(f"{max_rss_mib():.1f}")
        return [Scored(q.user_id, q.candidates, -np.arange(len(q.candidates), dtype=float), 0, 0) for q in qs]

    def close(self) -> None:
        pass


def synthetic_input(path: Path, users: int, item_ids: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, users, 10_000):
            n = min(10_000, users - start)
            picks = rng.choice(len(item_ids), size=(n, 30), replace=True)
            for k in range(n):
                ids = list(dict.fromkeys(item_ids[j] for j in picks[k]))
                history, candidates = ids[:10], ids[10:30] or ids[:1]
                f.write(json.dumps({"user_id": f"s{start + k}", "history": history, "candidates": candidates,
                                    "positive": candidates[0]}) + "\n")


def child(args: argparse.Namespace) -> None:
    """One job in this process; prints one JSON line of figures."""
    import ray

    from llmrec.recipes import rank

    cfg = load_config(args.config, args.overrides)
    out: dict[str, float] = {}
    if cfg.rank.engine == "ray":
        started = time.perf_counter()
        ray.init(address="local", include_dashboard=False, logging_level="error")
        out["cluster_start_s"] = time.perf_counter() - started
    scorer = None
    if args.rss_dir:
        rss_dir = args.rss_dir
        scorer = lambda cfg, template, ds, stage: FirstCandidateScorer(rss_dir)
    started = time.perf_counter()
    res = rank.run(cfg, log=lambda *_: None, make_scorer=scorer)
    out.update(job_s=time.perf_counter() - started, users=res.users_ranked, driver_rss_mib=max_rss_mib(),
               ndcg10=res.metrics.get("NDCG@10", float("nan")))
    if args.rss_dir:
        out["actor_rss_mib"] = max(float(p.read_text()) for p in Path(args.rss_dir).glob("actor-*"))
    print("RESULT " + json.dumps(out), flush=True)


def run_child(config: Path, overrides: list[str], rss_dir: str = "") -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", "--config", str(config), *(["--rss-dir", rss_dir] if rss_dir else []),
           *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"bench job failed ({' '.join(overrides)}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100, help="users of the overhead comparison (real model)")
    p.add_argument("--repeats", type=int, default=3, help="pairs of jobs (local, Ray) of the overhead comparison")
    p.add_argument("--template", default="letters/candidates_v1")
    p.add_argument("--synthetic", type=int, default=1_000_000, help="users of the synthetic job (trivial scorer; 0: skip it)")
    p.add_argument("--actors", type=int, default=2, help="actors of the scaling comparison (vs 1)")
    p.add_argument("--block-users", type=int, default=1000, help="rank.ray.block_users of the synthetic job")
    p.add_argument("--config", default=None, help="config TOML (default: the shipped ML-100K one)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rss-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = p.parse_args()
    if args.child:
        return child(args)

    from llmrec.config import dump_toml
    from llmrec.data.prepared import PREPARED, open_prepared
    from llmrec.recipes import prepare

    cfg = load_config(args.config, args.overrides)
    if not (Path(cfg.out_dir) / PREPARED).is_file():
        prepare.run(cfg)
    prepared = open_prepared(cfg, log=lambda *_: None)
    work = Path(tempfile.mkdtemp(prefix="bench_ray-"))
    config = work / "config.toml"
    config.write_text(dump_toml(prepared.cfg))
    print(f"work folder: {work}; {os.cpu_count()} CPUs")

    print(f"\n1. overhead: {args.users} users, {args.template}, the real model, {args.repeats} pairs of jobs")
    llm = [f"rank.template={args.template}", f"rank.users={args.users}"]
    ratios, starts = [], []
    for r in range(args.repeats):
        times = {}
        for engine in ("local", "ray") if r % 2 == 0 else ("ray", "local"):  # alternate to cancel drift
            run_dir = work / f"{engine}-{r}"
            extra = ["rank.engine=ray", "rank.ray.actors=1"] if engine == "ray" else []
            got = run_child(config, [*llm, *extra, f"rank.run_dir={run_dir}"])
            times[engine] = got["job_s"]
            starts += [got["cluster_start_s"]] if engine == "ray" else []
        a, b = (json.loads((work / f"{engine}-{r}" / "metrics.json").read_text()) for engine in ("local", "ray"))
        same = a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)
        ratios.append(times["ray"] / times["local"])
        print(f"   pair {r + 1}: local {times['local']:.1f}s, ray {times['ray']:.1f}s, ray / local = {ratios[-1]:.3f}; "
              f"metrics equal: {same}")
    mean, sd = float(np.mean(ratios)), float(np.std(ratios, ddof=1)) if len(ratios) > 1 else 0.0
    print(f"   ray / local = {mean:.3f} +- {sd:.3f} (mean +- sd over {len(ratios)} pairs; target <= 1.15: "
          f"{'met' if mean <= 1.15 else 'MISSED'}); starting the local cluster took {np.mean(starts):.1f}s more")

    if not args.synthetic:
        return None
    ds = prepared.dataset(log=lambda *_: None)
    items = sorted(ds.items)
    sizes = (args.synthetic // 10, args.synthetic)
    print(f"\n2. synthetic job, trivial scorer, blocks of {args.block_users}: {sizes[0]:,} and {sizes[1]:,} users")
    figures = {}
    for n in sizes:
        path = work / f"synthetic-{n}.jsonl"
        started = time.perf_counter()
        synthetic_input(path, n, items)
        print(f"   wrote {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f}s")
        for actors in (1, args.actors) if n == sizes[1] else (1,):
            rss_dir = work / f"rss-{n}-{actors}"
            rss_dir.mkdir()
            figures[n, actors] = f = run_child(config, [
                f"rank.input={path}", "rank.engine=ray", f"rank.ray.actors={actors}", f"rank.ray.block_users={args.block_users}",
                f"rank.batch_users={args.block_users}", f"rank.run_dir={work / f'syn-{n}-{actors}'}"], str(rss_dir))
            print(f"   {n:>9,} users, {actors} actor(s): {f['job_s']:.1f}s, {n / f['job_s']:,.0f} users/s; peak RSS "
                  f"driver {f['driver_rss_mib']:.0f} MiB, largest actor {f['actor_rss_mib']:.0f} MiB")
        path.unlink()
    small, big = figures[sizes[0], 1], figures[sizes[1], 1]
    print(f"   peak RSS at 10x the users: driver x{big['driver_rss_mib'] / small['driver_rss_mib']:.2f}, "
          f"actor x{big['actor_rss_mib'] / small['actor_rss_mib']:.2f} (target: flat)")
    scale = (sizes[1] / figures[sizes[1], args.actors]["job_s"]) / (sizes[1] / big["job_s"])
    print(f"   throughput {args.actors} actors / 1 actor = {scale:.2f} (target: above 1)")


if __name__ == "__main__":
    main()
