import json

import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.candidates import CandidateSet
from llmrec.errors import ConfigError, DataError
from llmrec.eval.compare import compare
from llmrec.recipes import baseline


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


def test_baselines_score_the_same_candidates_and_compare(prepared, tmp_path):
    pop = baseline.run(with_(prepared, "baseline.name=pop"), log=lambda *_: None)
    bpr = baseline.run(with_(prepared, "baseline.name=bpr", "baseline.retrieve=20", "baseline.bpr.epochs=20"),
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
    # another retriever's top 20 goes into its own file, next to the first one
    again = baseline.run(with_(prepared, "baseline.name=pop", "baseline.retrieve=20",
                               "baseline.retrieve_label=retrieved-20-pop", "baseline.candidates=[]"), log=lambda *_: None)
    assert again.retrieved.name == "retrieved-20-pop.test.jsonl" and CandidateSet.load(bpr.retrieved).lists == cs.lists
    with pytest.raises(ConfigError, match="retrieve_label: letters, digits"):
        with_(prepared, "baseline.retrieve_label=../x")


def test_new_baselines_score_exactly_the_candidate_file(prepared, tmp_path):
    from llmrec.baselines.vectors import Vectors

    path = prepared.out_dir + "/candidates/sampled-20.test.jsonl"
    lists = {c.user_id: c for c in CandidateSet.load(__import__("pathlib").Path(path)).lists}
    for name, extra in (("ease", []), ("sasrec", ["baseline.sasrec.epochs=2", "baseline.sasrec.max_len=10"])):
        res = baseline.run(with_(prepared, f"baseline.name={name}", "baseline.top_k=0", *extra), log=lambda *_: None)
        (run_dir,) = res.run_dirs
        rows = [json.loads(x) for x in (run_dir / "ranks.jsonl").read_text().splitlines()]
        assert len(rows) == len(lists) == 943
        for r in rows:
            assert sorted(r["candidates"]) == sorted(lists[r["user_id"]].candidates)  # these items, all of them
        meta = json.loads((run_dir / "run.json").read_text())
        if name == "sasrec":
            assert meta["settings"]["epochs"] == 2 and meta["settings"]["max_len"] == 10
            assert meta["settings"]["heads"] == 1  # the model's own default, recorded
            assert Vectors.load(run_dir).user_vectors.shape == (943, 64)
        else:
            assert meta["settings"] == {"kind": "baseline", "model": "ease", "weight_decay": 100.0,
                                        "source": path, "source_sha256": meta["settings"]["source_sha256"],
                                        "dataset_hash": meta["settings"]["dataset_hash"]}
            assert not (run_dir / "vectors.npz").exists()


def test_baseline_threads_are_set_for_the_fit_and_restored(prepared, monkeypatch):
    import torch

    from llmrec.baselines.mf import BiasedMF

    seen = []
    fit = BiasedMF.fit
    monkeypatch.setattr(BiasedMF, "fit", lambda self, data: (seen.append(torch.get_num_threads()), fit(self, data))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    try:
        for threads, load in ((1, 0.0), (0, 0.2), (0, 2.6), (0, 9.0), (2, 9.0)):
            monkeypatch.setattr("os.getloadavg", lambda load=load: (load, load, load))
            baseline.run(with_(prepared, "baseline.name=mf", "baseline.mf.epochs=1", f"baseline.threads={threads}"),
                         log=lambda *_: None)
        # 0: the idle cores of 4, at least one; a number: that many
        assert seen == [1, 4, 1, 1, 2] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="baseline.threads"):
        with_(prepared, "baseline.threads=-1")
