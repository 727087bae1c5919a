"""Data-parallel training on this CPU: two processes (torchrun, gloo) against one, same global batch.

The same command in one process and in two gives the same validation curve and adapter within
float tolerance, scores each validation user exactly once, writes one checkpoint and one `best/`,
and a two-process run that is interrupted resumes to the same adapter.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from llmrec.config import dump_toml, load_config

pytestmark = pytest.mark.slow

SETTINGS = ["candidates.kinds=['sampled']", "split.history_len=3", "train.template=title/next_item_v1",
            "train.max_users=24", "train.history_len=3", "train.prefixes_per_user=2", "train.valid_users=8",
            "train.batch_size=4", "train.max_steps=4", "train.eval_every=2", "train.learning_rate=1e-3",
            "train.lora.dropout=0.0", "train.warmup_ratio=0", "train.patience=5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(config, out, processes: int) -> list[str]:
    tail = ["-m", "llmrec", "train", "--config", str(config), f"train.out={out}"]
    if processes == 1:
        return [sys.executable, *tail]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_port", str(free_port()), *tail]


def env() -> dict[str, str]:
    # ACCELERATE_USE_CPU: accelerate's multi-CPU mode (gloo); one thread each, as two processes share 2 cores
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(config, out, processes: int) -> str:
    proc = subprocess.run(command(config, out, processes), capture_output=True, text=True, env=env(), timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def evaluations(out):
    return [c for c in json.loads((out / "train_state.json").read_text())["curve"] if "valid_ndcg10" in c]


@pytest.fixture(scope="module")
def config(tmp_path_factory, ml100k):
    from llmrec.recipes import prepare

    folder = tmp_path_factory.mktemp("dp")
    cfg = load_config("scripts/configs/ml100k.toml", [f"out_dir={folder / 'prepared'}", *SETTINGS])
    prepare.run(cfg, log=lambda *_: None)
    path = folder / "train.toml"
    path.write_text(dump_toml(cfg))
    return path


def test_two_processes_train_like_one_and_resume(config, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(config, one, 1)

    # Two processes, stopped once the step-2 checkpoint is written, then started again.
    proc = subprocess.Popen(command(config, two, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env(), start_new_session=True)
    state = two / "checkpoint" / "state.json"
    deadline = time.time() + 900
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 2):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.1)
    workers = psutil.Process(proc.pid).children(recursive=True)  # torchrun starts them in their own sessions
    os.killpg(proc.pid, signal.SIGKILL)
    for w in workers:
        w.kill()
    proc.wait()
    psutil.wait_procs(workers, timeout=30)
    assert json.loads(state.read_text())["step"] == 2, "stopped too late to test the resume"
    assert not (two / "train_state.json").exists()
    logs = run(config, two, 2)
    assert "resuming from step 2" in logs

    a, b = evaluations(one), evaluations(two)
    assert [c["step"] for c in a] == [c["step"] for c in b] == [0, 2, 4]
    for x, y in zip(a, b):
        assert x["valid_users"] == y["valid_users"] == 8  # each validation user scored once, not once per process
        assert abs(x["valid_ndcg10"] - y["valid_ndcg10"]) <= 1e-3, (x, y)
        assert abs(x["valid_loss"] - y["valid_loss"]) <= 1e-3, (x, y)
    assert json.loads((two / "train_state.json").read_text())["curve"][-1]["processes"] == 2
    wa, wb = weights(one / "checkpoint" / "adapter"), weights(two / "checkpoint" / "adapter")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-4
    assert any(float(wa[k].abs().max()) > 0 for k in wa if "lora_B" in k)  # trained: B left zero
    # one checkpoint and one best adapter, no leftovers from concurrent writers
    assert sorted(p.name for p in two.iterdir() if p.is_dir()) == ["best", "checkpoint"]
    assert (two / "best" / "adapter_model.safetensors").is_file()


def test_a_global_batch_that_does_not_split_is_refused(config, tmp_path):
    proc = subprocess.run(command(config, tmp_path / "odd", 2) + ["train.batch_size=3"], capture_output=True, check=False,
                          text=True, env=env(), timeout=900)
    assert proc.returncode != 0
    assert "train.batch_size=3 is the global batch, split across 2 processes: make it a multiple of 2" in proc.stderr
