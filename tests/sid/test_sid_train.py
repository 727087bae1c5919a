"""Semantic IDs end to end on the real model: `sid build` from item vectors, `train` with the codes
as new trainable tokens, then `rank` with the adapter, by exact code likelihood of a candidate file
and by beam search over the whole catalogue's code trie."""

import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.queries import UserQuery

pytestmark = pytest.mark.slow


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ml100k, ml100k_vectors):
    from tests.conftest import sid_adapter

    return sid_adapter(tmp_path_factory.mktemp("sid"), ml100k_vectors)


def test_codes_are_built_beside_the_prepared_folder(trained):
    cfg, built, _ = trained
    codes = built["sid"]
    assert built["folder"] == Path(cfg.out_dir) / "sid" / "bpr-2x16"
    assert len(codes.row) == 1682 and codes.codes.shape == (1682, 3)
    assert len({tuple(c) for c in codes.codes.tolist()}) == 1682  # unique
    assert built["stats"]["level_1"]["used"] == 16 and built["stats"]["sizes"][:2] == [16, 16]


def test_training_learns_the_new_code_tokens(trained, tokenizer):
    from llmrec.models.load import load_tokenizer

    _, built, res = trained
    curve = [c for c in res.curve if "valid_loss" in c]
    # the code tokens start as untrained rows: a few steps already lower the loss a lot
    assert curve[-1]["valid_loss"] < curve[0]["valid_loss"] - 1.0
    best = res.adapter_dir
    for name in ("codes.json", "sid.json", "tokenizer.json", "adapter_model.safetensors"):
        assert (best / name).is_file(), name
    tok = load_tokenizer("smollm2-135m-instruct", str(best))
    added = built["sid"].tokens()
    assert len(tok) == len(tokenizer) + len(added)
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in added[:5] + added[-5:])
    assert json.loads((best / "template.json").read_text())["template"] == "sid/next_item_v1"


def test_rank_by_code_likelihood_and_by_beam_search(trained):
    from llmrec.recipes import rank

    cfg, _, res = trained
    cfg = with_(cfg, f"model.adapter={res.adapter_dir}", "rank.template=sid/next_item_v1", "rank.users=3")
    exact = rank.run(cfg, log=lambda *_: None)  # sampled-20 lists: each candidate's code likelihood
    rows = [json.loads(line) for line in (exact.run_dir / "ranks.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["candidates"]) == 20 and np.all(np.isfinite(r["scores"])) for r in rows)

    beam = rank.run(with_(cfg, "rank.candidates=full.test", "rank.beam=8", "rank.top_k=5"), log=lambda *_: None)
    run = json.loads((beam.run_dir / "run.json").read_text())
    gen = run["generation"]
    assert (gen["invalid"], gen["duplicates"], gen["history_repeats"]) == (0, 0, 0) and gen["items"] == 15
    rows = [json.loads(line) for line in (beam.run_dir / "ranks.jsonl").read_text().splitlines()]
    assert beam.run_dir.name.endswith("--beam8")

    # a generated item's score is its exact code likelihood: score the found items as a candidate list
    from llmrec.data.prepared import open_prepared
    from llmrec.prompts.render import load_template
    from llmrec.scoring.build import build_ranker

    prepared = open_prepared(cfg, lambda *_: None)
    ds = prepared.dataset(lambda *_: None)
    ranker = build_ranker(prepared.cfg, load_template("sid/next_item_v1"), ds, "test")
    split = prepared.split()
    for r in rows:
        assert len(r["candidates"]) == 5 and len(set(r["candidates"])) == 5
        history = split.users[r["user_id"]].events(ds, "test", cfg.split.history_len)
        (s,) = ranker.score([UserQuery(r["user_id"], history, r["candidates"])])
        np.testing.assert_allclose(s.scores, r["scores"], atol=1e-4)
        assert np.all(np.diff(s.scores) <= 1e-4)  # best first (up to ties within fp32 noise)
