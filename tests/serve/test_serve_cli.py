"""`llmrec serve`: flags and overrides reach the config, bad settings fail in one line, the real
command serves on loopback and stops on Ctrl-C."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmrec import cli


def test_flags_and_overrides_make_the_config(monkeypatch):
    seen = {}
    monkeypatch.setattr("llmrec.serve.app.serve", lambda cfg: seen.setdefault("cfg", cfg))
    assert cli.main(["serve", "serve.max_batch=2", "--port", "9001", "-t", "letters/candidates_v1",
                     "--retriever", "runs/x/baselines/bpr--sampled-20.test", "serve.max_wait_ms=1"]) == 0
    cfg = seen["cfg"]
    assert (cfg.serve.host, cfg.serve.port, cfg.serve.max_batch, cfg.serve.max_wait_ms) == ("127.0.0.1", 9001, 2, 1.0)
    assert cfg.serve.retriever == "runs/x/baselines/bpr--sampled-20.test"
    assert cfg.rank.template == "letters/candidates_v1" and cfg.rank.backend == "hf"


@pytest.mark.parametrize("override, words", [
    ("serve.max_batch=0", "serve.max_batch: must be >= 1; got 0"),
    ("serve.retrieve=500", "serve.retrieve (500) must be <= serve.max_candidates (100)"),
    ("serve.port=70000", "serve.port: must be in [0, 65535]"),
    ("serve.batch=4", "unknown config key 'serve.batch'"),
])
def test_bad_settings_fail_in_one_line(capsys, override, words):
    assert cli.main(["serve", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrec: error: ") and words in err and "Traceback" not in err


@pytest.mark.slow
def test_llmrec_serve_answers_on_loopback_and_stops_on_ctrl_c(prepared):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "llmrec.cli", "serve", "--config", str(Path(prepared.out_dir) / "config.toml"),
            "--port", str(port), "--show-config"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "llmrec serve did not come up"
                time.sleep(0.5)
        assert health["template"] == "title/next_item_v1" and health["retriever"] == "pop"
        r = httpx.post(f"http://127.0.0.1:{port}/v1/rank", json={"user_id": "3", "candidates": ["1", "50"]}, timeout=120)
        assert r.status_code == 200 and sorted(r.json()["ranking"]) == ["1", "50"]
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert f"at http://127.0.0.1:{port}" in out and "[serve]" in out  # --show-config: the resolved config
