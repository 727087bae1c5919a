import json

import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.candidates import CandidateSet
from llmrec.errors import DataError
from llmrec.eval.compare import compare
from llmrec.recipes import baseline


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


def test_baselines_score_the_same_candidates_and_compare(prepared, tmp_path):
    pop = baseline.run(with_(prepared, "baseline.name=pop"), log=lambda *_: None)
    bpr = baseline.run(with_(prepared, "baseline.name=bpr", "baseline.retrieve=20", "baseline.epochs=20"),
                       log=lambda *_: None)
    (pop_dir,), (bpr_dir,) = pop.run_dirs, bpr.run_dirs
    rows = [json.loads(x) for x in (bpr_dir / "ranks.jsonl").read_text().splitlines()]
    assert len(rows) == 943 and all(1 <= r["rank"] <= 20 for r in rows)
    assert bpr.metrics["sampled-20.test"]["NDCG@10"] > pop.metrics["sampled-20.test"]["NDCG@10"]
    res = compare([pop_dir, bpr_dir], reference="pop", n_boot=200, n_perm=500)
    assert res["users"] == 943 and {r["run"] for r in res["rows"]} == {"pop", "bpr"}

    # retrieved-20: top-20 unseen items; the held-out item only when found, misses recorded.
    cs = CandidateSet.load(bpr.retrieved)
    assert cs.kind == "retrieved" and len(cs.lists) == 943
    found = [c for c in cs.lists if c.positive is not None]
    assert 0 < len(found) < 943 and bpr.retriever_recall == pytest.approx(len(found) / 943)
    assert all(c.missed is not None and c.missed not in c.candidates for c in cs.lists if c.positive is None)
    # A retrieved-file run of another model is refused next to a sampled-20 run.
    pop_r = baseline.run(with_(prepared, "baseline.name=pop", f"baseline.candidates=['{bpr.retrieved}']"),
                         log=lambda *_: None)
    m = pop_r.metrics["retrieved-20.test"]
    assert m["retriever_missed"] == 943 - len(found)
    assert m["HR@10"] <= bpr.retriever_recall  # misses count as misses for the reranker
    with pytest.raises(DataError, match="different candidate files"):
        compare([pop_dir, pop_r.run_dirs[0]])
