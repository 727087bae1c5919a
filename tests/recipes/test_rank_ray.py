"""The Ray engine on a local cluster (2 CPUs, one per test session): the same ranks as one
process, resumes (after Ctrl-C too) and actor deaths without a repeated or missing user, Parquet
in and out."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.cloudpickle

from llmrec.config import apply_overrides, from_dict, load_config, to_dict
from llmrec.errors import ConfigError, DataError
from llmrec.eval import runs
from llmrec.eval.runs import read_ranks
from llmrec.jobs import ray as rank_ray
from llmrec.recipes import rank
from llmrec.scoring.rank import Scored

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module

QUIET = {"log": lambda *_: None}


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


class PositionScorer:
    """A trivial scorer (the first candidate best) that can die once, on one user, like a crashed GPU worker."""

    def __init__(self, crash_user: str = "", marker: str = "") -> None:
        self.crash_user, self.marker = crash_user, marker

    def score(self, qs):
        for q in qs:
            if q.user_id == self.crash_user and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)  # the actor process dies mid-block
        return [Scored(q.user_id, q.candidates, -np.arange(len(q.candidates), dtype=float), 0, 0) for q in qs]

    def close(self) -> None:
        pass


def position(crash_user="", marker=""):
    return lambda cfg, template, ds, stage: PositionScorer(crash_user, marker)


def user_ids(run_dir):
    return [r["user_id"] for r in read_ranks(run_dir)]


@pytest.mark.slow
def test_ray_job_ranks_as_the_single_process_job(prepared, ray_cluster, tmp_path):
    """The real model on two actors, blocks of 3 users: the same users, order, scores and metrics."""
    cfg = with_(prepared, "rank.template=letters/candidates_v1", "rank.users=7", "rank.batch_users=3")
    local = rank.run(with_(cfg, f"rank.run_dir={tmp_path / 'local'}"), **QUIET)
    ray_cfg = with_(cfg, "rank.engine=ray", "rank.ray.actors=2", "rank.ray.block_users=3", f"rank.run_dir={tmp_path / 'ray'}")
    res = rank.run(ray_cfg, **QUIET)
    a, b = read_ranks(local.run_dir), read_ranks(res.run_dir)
    assert [r["user_id"] for r in b] == [r["user_id"] for r in a] == [str(u) for u in range(1, 8)]
    for x, y in zip(a, b):
        assert y["candidates"] == x["candidates"] and y["rank"] == x["rank"]
        assert y["scores"] == pytest.approx(x["scores"], abs=1e-4)
    assert res.metrics == pytest.approx(local.metrics, abs=1e-9)
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["engine"] == "ray" and meta["actors"] == 2 and meta["blocks"] == 3 and meta["users"] == 7
    assert meta["settings"] == json.loads((local.run_dir / "run.json").read_text())["settings"]
    # One run directory, one engine: neither resumes the other's files.
    with pytest.raises(ConfigError, match="rank.engine=ray .*resume it with those settings"):
        rank.run(with_(cfg, f"rank.run_dir={tmp_path / 'ray'}"), **QUIET)
    with pytest.raises(ConfigError, match="rank.engine=local"):
        rank.run(with_(ray_cfg, f"rank.run_dir={tmp_path / 'local'}"), **QUIET)


def test_interrupted_ray_job_reruns_each_user_once(prepared, ray_cluster, tmp_path, monkeypatch):
    cfg = with_(prepared, "rank.engine=ray", "rank.ray.actors=1", "rank.ray.block_users=100",
                f"rank.run_dir={tmp_path / 'run'}")
    commit, calls = rank_ray._commit, []

    def interrupted(run_dir, parts, row, output):
        """Ctrl-C in the driver after the 4th block's part file is written, before it is committed."""
        calls.append(row["name"])
        if len(calls) == 4:
            (parts / f"part-{row['name']}.jsonl").write_bytes(bytes(row["payload"]))
            raise KeyboardInterrupt
        return commit(run_dir, parts, row, output)

    monkeypatch.setattr(rank_ray, "_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rank.run(cfg, make_scorer=position(), **QUIET)
    monkeypatch.setattr(rank_ray, "_commit", commit)
    assert len(rank_ray.read_log(tmp_path / "run")) == 3 and not (tmp_path / "run" / "ranks.jsonl").exists()
    again = rank.run(cfg, make_scorer=position(), **QUIET)
    assert again.users_resumed == 300 and again.users_ranked == 643  # the uncommitted block is redone
    ids = user_ids(again.run_dir)
    assert ids == [str(u) for u in range(1, 944)]
    fresh = rank.run(with_(cfg, f"rank.run_dir={tmp_path / 'fresh'}"), make_scorer=position(), **QUIET)
    assert read_ranks(again.run_dir) == read_ranks(fresh.run_dir) and again.metrics == fresh.metrics
    # A torn commit line (a driver killed while appending it) does not count that block as finished.
    log = (tmp_path / "run" / rank_ray.BLOCKS_LOG).read_text().splitlines()
    (tmp_path / "run" / rank_ray.BLOCKS_LOG).write_text("\n".join(log[:-1]) + "\n" + log[-1][:20])
    last = rank.run(cfg, make_scorer=position(), **QUIET)
    assert last.users_ranked == 43 and user_ids(last.run_dir) == ids
    assert rank.run(cfg, make_scorer=position(), **QUIET).users_ranked == 0
    with pytest.raises(ConfigError, match="other settings .*top_k"):
        rank.run(with_(cfg, "rank.top_k=5"), make_scorer=position(), **QUIET)


def test_bad_input_stops_the_ray_job_with_the_readers_message(prepared, ray_cluster, tmp_path):
    lines = (Path(prepared.out_dir) / "candidates" / "sampled-20.test.jsonl").read_text().splitlines()[1:]
    recs = [{"user_id": r["user_id"], "history": ["1", "2"], "candidates": r["candidates"]} for r in map(json.loads, lines)]
    recs[250]["candidates"] = ["50", "no-such-item"]
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = with_(prepared, "rank.engine=ray", "rank.ray.block_users=100", f"rank.input={tmp_path / 'users.jsonl'}",
                f"rank.run_dir={tmp_path / 'run'}")
    with pytest.raises(DataError, match=r"users.jsonl:251: user '251': unknown item id 'no-such-item'"):
        rank.run(cfg, make_scorer=position(), **QUIET)
    assert "0000000200-0000000300" not in rank_ray.read_log(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"model.adapter: .* is not a peft adapter folder"):
        rank.run(with_(cfg, f"model.adapter={tmp_path}"), **QUIET)


def test_a_dead_actor_is_restarted_and_its_block_redone(prepared, ray_cluster, tmp_path):
    marker = tmp_path / "crashed"
    cfg = with_(prepared, "rank.engine=ray", "rank.ray.actors=2", "rank.ray.block_users=50", "rank.users=300",
                f"rank.run_dir={tmp_path / 'run'}")
    res = rank.run(cfg, make_scorer=position(crash_user="120", marker=str(marker)), **QUIET)
    assert marker.is_file()  # the actor did die, on user 120's block
    ids = user_ids(res.run_dir)
    assert ids == [str(u) for u in range(1, 301)]
    clean = rank.run(with_(cfg, f"rank.run_dir={tmp_path / 'clean'}"), make_scorer=position(), **QUIET)
    assert read_ranks(res.run_dir) == read_ranks(clean.run_dir) and res.metrics == clean.metrics
    assert sorted(rank_ray.read_log(res.run_dir)) == sorted(rank_ray.read_log(clean.run_dir))


def test_parquet_in_and_out(prepared, ray_cluster, tmp_path):
    lines = (Path(prepared.out_dir) / "candidates" / "sampled-20.test.jsonl").read_text().splitlines()[1:41]
    recs = [{"user_id": r["user_id"], "history": [{"item_id": "1", "rating": 4.0}, {"item_id": "7"}],
             "candidates": r["candidates"], "positive": r["positive"]} for r in map(json.loads, lines)]
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "users.parquet", row_group_size=16)
    cfg = with_(prepared, "rank.engine=ray", "rank.ray.block_users=10")
    out = rank.run(with_(cfg, f"rank.input={tmp_path / 'users.parquet'}", "rank.ray.output=parquet",
                         f"rank.run_dir={tmp_path / 'pq'}"), make_scorer=position(), **QUIET)
    ref = rank.run(with_(cfg, f"rank.input={tmp_path / 'users.jsonl'}", f"rank.run_dir={tmp_path / 'js'}"),
                   make_scorer=position(), **QUIET)
    parts = sorted(p.name for p in (out.run_dir / "ranks.parquet").iterdir())
    assert parts == ["part-0000000000-0000000010.parquet", "part-0000000010-0000000016.parquet",
                     "part-0000000016-0000000026.parquet", "part-0000000026-0000000032.parquet",
                     "part-0000000032-0000000040.parquet"]  # blocks end at row groups of 16
    assert not (out.run_dir / "ranks.jsonl").exists()
    assert read_ranks(out.run_dir) == read_ranks(ref.run_dir)
    assert out.metrics == pytest.approx(ref.metrics, abs=1e-12)  # other blocks, so sums in another order
    table = pq.read_table(out.run_dir / "ranks.parquet")  # the folder reads as one table
    assert table.num_rows == 40 and table.column("rank").to_pylist() == [r["rank"] for r in read_ranks(ref.run_dir)]
    assert out.metrics["users"] == 40 and 0 < out.metrics["NDCG@10"] < 1
    assert runs.evaluate(out.run_dir) == pytest.approx(out.metrics, abs=1e-12)  # evaluate, compare, blend read it
    assert len(runs.ranks_sha256(out.run_dir)) == 64 and runs.ranks_sha256(out.run_dir) != runs.ranks_sha256(ref.run_dir)


def test_config_of_the_ray_engine():
    base = load_config(None)
    with pytest.raises(ConfigError, match="rank.shards' moved: data-parallel ranking runs on Ray"):
        load_config(None, ["rank.shards=2"])
    with pytest.raises(ConfigError, match="rank.ray.output=parquet is written by the Ray engine"):
        with_(base, "rank.ray.output=parquet")
    with pytest.raises(ConfigError, match="rank.engine: expected one of local, ray; got 'spark'"):
        with_(base, "rank.engine=spark")
    with pytest.raises(ConfigError, match="rank.ray.gpus_per_actor: must be >= 0"):
        with_(base, "rank.ray.gpus_per_actor=-2")


def test_sizing_follows_the_cluster(ray_cluster):
    base = with_(load_config(None), "rank.engine=ray")
    assert rank_ray.sizing(base) == {"actors": 1, "gpus_per_actor": 0.0, "cpus_per_actor": 2.0}
    assert rank_ray.sizing(with_(base, "rank.ray.actors=2")) == {"actors": 2, "gpus_per_actor": 0.0, "cpus_per_actor": 1.0}
    with pytest.raises(ConfigError, match="rank.ray.gpus_per_actor=1, but the Ray cluster has 0 GPUs"):
        rank_ray.sizing(with_(base, "rank.ray.gpus_per_actor=1"))
    with pytest.raises(ConfigError, match="3 actors .* do not fit the Ray cluster"):
        rank_ray.sizing(with_(base, "rank.ray.actors=3"))


@pytest.mark.slow
def test_ctrl_c_stops_the_ray_job_and_a_rerun_finishes_it(prepared, ray_cluster, tmp_path):
    """The real command on its own local cluster: Ctrl-C exits 130 leaving no process behind and
    the committed blocks; the rerun ranks the rest, each user once."""
    import psutil

    run_dir = tmp_path / "run"
    overrides = ["rank.template=letters/candidates_v1", "rank.users=12", "rank.engine=ray", "rank.ray.block_users=3",
                 f"rank.run_dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", "rank", "--config",
                             str(Path(prepared.out_dir) / "config.toml"), *overrides, "rank.ray.address=local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not rank_ray.read_log(run_dir):
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    time.sleep(3)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finished = len(rank_ray.read_log(run_dir))
    assert 1 <= finished < 4, "the job should have been interrupted half-way"
    res = rank.run(with_(prepared, *overrides), **QUIET)
    assert res.users_resumed == 3 * finished and res.users_ranked == 12 - 3 * finished
    assert user_ids(run_dir) == [str(u) for u in range(1, 13)]
