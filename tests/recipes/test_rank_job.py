"""The batch ranking job for real: SmolLM2, ML-100K, interrupted and resumed."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.errors import ConfigError, DataError
from llmrec.eval.runs import read_ranks
from llmrec.recipes import rank

pytestmark = pytest.mark.slow


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


def test_rank_writes_run_directory(prepared, tmp_path):
    cfg = with_(prepared, f"rank.run_dir={tmp_path / 'run'}", "rank.users=6", "rank.template=letters/candidates_v1")
    res = rank.run(cfg, log=lambda *_: None)
    files = sorted(p.name for p in res.run_dir.iterdir())
    assert files == [".lock", "config.toml", "metrics.json", "ranks.jsonl", "run.json"]
    rows = read_ranks(res.run_dir)
    assert len(rows) == 6 and len({r["user_id"] for r in rows}) == 6
    for r in rows:
        assert len(r["candidates"]) == 20 and r["scores"] == sorted(r["scores"], reverse=True)
        if len(set(r["scores"])) == 20:  # no ties: the rank is the positive's place in the list
            assert r["rank"] == r["candidates"].index(r["positive"]) + 1
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert meta["finished"] and meta["settings"]["template"] == "letters/candidates_v1"
    assert len(meta["settings"]["template_sha256"]) == 64 and meta["git_commit"]
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["users"] == 6
    assert metrics["MRR"] == pytest.approx(sum(1 / r["rank"] for r in rows) / 6)
    # Same directory, other settings: refused, never mixed.
    with pytest.raises(ConfigError, match="holds 6 users ranked with other settings .*template: 'letters"):
        rank.run(with_(cfg, "rank.template=title/next_item_v1"), log=lambda *_: None)
    # fp32 and bf16 scores never mix in one file: the resolved dtype is a setting.
    with pytest.raises(ConfigError, match="dtype: 'float32' -> 'bfloat16'"):
        rank.run(with_(cfg, "model.dtype=bfloat16"), log=lambda *_: None)
    # A resume with fewer users reports those users, in metrics.json and run.json alike.
    fewer = rank.run(with_(cfg, "rank.users=3"), log=lambda *_: None)
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert fewer.users_ranked == 0 and fewer.metrics["users"] == meta["users"] == 3 and meta["rows_in_file"] == 6
    assert json.loads((res.run_dir / "metrics.json").read_text())["users"] == 3


def test_interrupted_job_resumes_each_user_once(prepared, tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "llmrec.cli", "rank", "--config", str(Path(prepared.out_dir) / "config.toml"),
            "rank.users=10", "rank.batch_users=1", f"rank.run_dir={run_dir}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ranks = run_dir / "ranks.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not ranks.is_file() or ranks.read_text().count("\n") < 3):
        time.sleep(0.2)
    cfg = from_dict(type(prepared), {**to_dict(prepared), "rank": {**to_dict(prepared.rank), "users": 10,
                                                                    "batch_users": 1, "run_dir": str(run_dir)}})
    # A second job on the same directory fails at once, naming the running job.
    with pytest.raises(DataError, match=rf"is in use by another llmrec job \(pid {proc.pid}\)"):
        rank.run(cfg, log=lambda *_: None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ranks.read_text().count("\n")
    assert 3 <= before < 10, "the job should have been killed half-way"
    with open(ranks, "a") as f:
        f.write('{"user_id": "torn')  # as if killed in the middle of a write
    torn = ranks.read_bytes()
    assert len(read_ranks(run_dir)) == before and ranks.read_bytes() == torn  # readers never cut the file
    res = rank.run(cfg, log=lambda *_: None)
    assert res.users_resumed == before and res.users_ranked == 10 - before
    rows = read_ranks(run_dir)
    assert [r["user_id"] for r in rows] == [str(u) for u in range(1, 11)]  # each user exactly once, in order
    # The resumed rows equal an uninterrupted run.
    fresh = rank.run(dataclasses.replace(cfg, rank=dataclasses.replace(cfg.rank, run_dir=str(tmp_path / "fresh"))),
                     log=lambda *_: None)
    for a, b in zip(rows, read_ranks(fresh.run_dir)):
        assert a["candidates"] == b["candidates"] and a["rank"] == b["rank"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_jsonl_input_policies(prepared, tmp_path):
    inp = tmp_path / "users.jsonl"
    lines = [
        {"user_id": "a", "history": ["1", {"item_id": "2", "rating": 5}], "candidates": ["50", "181", "9"], "positive": "50"},
        {"user_id": "b", "history": [], "candidates": ["50", "181"]},  # empty history: skipped, counted
        {"user_id": "c", "history": ["1"], "candidates": ["50", "no-such-item"]},
    ]
    inp.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    cfg = with_(prepared, f"rank.input={inp}", f"rank.run_dir={tmp_path / 'r1'}", "rank.template=yesno/will_like_v1")
    with pytest.raises(DataError, match=r"users.jsonl:3: user 'c': unknown item id 'no-such-item'"):
        rank.run(cfg, log=lambda *_: None)
    res = rank.run(with_(cfg, "rank.on_unknown=skip"), log=lambda *_: None)
    assert res.skipped == {"unknown_candidate_ids": 1, "empty_history": 1}
    rows = {r["user_id"]: r for r in read_ranks(res.run_dir)}
    assert sorted(rows) == ["a", "c"] and rows["c"]["candidates"] == ["50"] and rows["c"]["rank"] is None
    assert sorted(rows["a"]["candidates"]) == ["181", "50", "9"] and res.metrics["users"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "a", "candidates": ["1"]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: expected"):
        rank.run(with_(cfg, f"rank.input={bad}"), log=lambda *_: None)


def test_cli_rank_and_render(prepared, tmp_path, capsys):
    from llmrec.cli import main

    cfg_path = str(Path(prepared.out_dir) / "config.toml")
    assert main(["prompts", "render", "--config", cfg_path, "--template", "title/next_item_v1", "--user", "7"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == (Path(__file__).parents[1] / "golden" / "title__next_item_v1.txt").read_text()
    assert "tokens; 0 oldest history items dropped" in captured.err
    # Overrides after the options, and a wording setting that the prepared folder does not fix.
    assert main(["prompts", "render", "-t", "title/next_item_v1", "--user", "7", "--config", cfg_path,
                 "data.item_noun=film"]) == 0
    assert "Here are the films a user watched" in capsys.readouterr().out
    assert main(["rank", "--config", cfg_path, "--template", "nope/x_v1", "--users", "1"]) == 2
    assert "template 'nope/x_v1' not found" in capsys.readouterr().err


def test_run_directory_rules(prepared, tmp_path, monkeypatch):
    from llmrec.eval import runs

    run_dir = tmp_path / "run"
    cfg = with_(prepared, f"rank.run_dir={run_dir}", "rank.users=2")
    # A model that cannot load leaves no run.json: the corrected command is not refused.
    with pytest.raises(ConfigError, match="model.name '/no/such/model': cannot load"):
        rank.run(with_(cfg, "model.name=/no/such/model"), log=lambda *_: None)
    assert not (run_dir / "run.json").exists()
    res = rank.run(cfg, log=lambda *_: None)
    assert res.users_ranked == 2
    # While no user is finished, a restart with other settings is allowed.
    (run_dir / "ranks.jsonl").write_text("")
    other = rank.run(with_(cfg, "rank.template=title/next_item_genres_v1"), log=lambda *_: None)
    assert other.users_ranked == 2
    assert json.loads((run_dir / "run.json").read_text())["settings"]["template"] == "title/next_item_genres_v1"

    # evaluate only reads ranks.jsonl; an empty or missing file fails and keeps metrics.json.
    metrics = (run_dir / "metrics.json").read_text()
    ranks = (run_dir / "ranks.jsonl").read_bytes()
    (run_dir / "ranks.jsonl").write_bytes(ranks + b'{"user_id": "3", "ra')
    runs.evaluate(run_dir)
    assert (run_dir / "ranks.jsonl").read_bytes() == ranks + b'{"user_id": "3", "ra'
    (run_dir / "ranks.jsonl").write_bytes(b"")
    with pytest.raises(DataError, match="missing or empty"):
        runs.evaluate(run_dir)
    assert (run_dir / "metrics.json").read_text() == metrics
    # A user written twice (two jobs in one file) is refused by every reader.
    (run_dir / "ranks.jsonl").write_bytes(ranks + ranks)
    with pytest.raises(DataError, match="user '1' is written twice"):
        runs.evaluate(run_dir)
    (run_dir / "ranks.jsonl").write_bytes(b"\xff\xfe not text\n")
    with pytest.raises(DataError, match="not UTF-8"):
        runs.read_ranks(run_dir)

    # `--run-dir .` in a project folder: refused, the user's own config.toml untouched.
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.toml").write_text("mine = true\n")
    monkeypatch.chdir(project)
    with pytest.raises(DataError, match="not an llmrec run directory"):
        rank.run(with_(cfg, "rank.run_dir=."), log=lambda *_: None)
    assert (project / "config.toml").read_text() == "mine = true\n"
