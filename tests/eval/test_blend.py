import json
import math

import numpy as np
import pytest

from llmrec.assets import sha256_file
from llmrec.cli import main
from llmrec.errors import DataError
from llmrec.eval import runs
from llmrec.eval.blend import blend, simplex, zscore
from llmrec.eval.compare import compare

CANDS = ["p", "a", "b", "c", "d"]  # "p" is every user's held-out item


def make_run(root, name, scores_of, users=range(40), stage="test", model=None, top_k=0, config=True):
    """A baseline-like run under root/baselines/<name> on root/candidates/sampled-5.<stage>.jsonl;
    `scores_of(user)` gives the scores of CANDS."""
    path = root / "baselines" / name
    path.mkdir(parents=True)
    settings = {"kind": "baseline", "model": model or name.split("--")[0], "seed": 0,
                "source": str(root / "candidates" / f"sampled-5.{stage}.jsonl"), "source_sha256": stage * 4,
                "dataset_hash": "h1"}
    config_path = f"{path}/config.toml"  # what the baseline recipe records in run.json
    rerun = runs.rerun_record(["llmrec", "baseline", "--config", config_path],
                              ["llmrec", "baseline", "--config", config_path, 'baseline.candidates=["{label}"]',
                               "baseline.retrieve=0", "baseline.top_k=0"],
                              f"{root}/baselines/{settings['model']}--{{label}}")
    runs.write_json(path / runs.RUN, {"settings": settings, **({"rerun": rerun} if config else {})})
    runs.append_ranks(path, [runs.rank_row(str(u), CANDS, np.array(scores_of(u), dtype=float), "p", top_k)
                             for u in users])
    if config:
        (path / "config.toml").write_text(f'out_dir = "{root}"\n\n[baseline]\nname = "{settings["model"]}"\n')
    return path


def even_sure(u):
    """Right and confident on even users; on odd users unsure (the held-out item in the middle)."""
    return [10, 1, 2, 3, 4] if u % 2 == 0 else [2.5, 1, 2, 3, 4]


def odd_sure(u):
    return even_sure(u + 1)


def test_zscore_by_hand():
    s = np.array([1.0, 2.0, 6.0])  # mean 3, variance (4 + 1 + 9) / 3
    assert zscore(s) == pytest.approx([-2 / math.sqrt(14 / 3), -1 / math.sqrt(14 / 3), 3 / math.sqrt(14 / 3)])
    assert zscore(np.array([5.0, 5.0, 5.0])).tolist() == [0.0, 0.0, 0.0]
    assert zscore(np.array([-np.inf, 0.0, 1.0])).tolist() == zscore(np.array([0.0, 0.0, 1.0])).tolist()


def test_simplex_grid():
    g = simplex(3, 0.5)
    assert sorted(map(tuple, g.tolist())) == sorted([(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0),
                                                     (0.5, 0, 0.5), (0, 0.5, 0.5)])
    assert len(simplex(2, 0.05)) == 21 and np.allclose(simplex(4, 0.1).sum(1), 1)
    with pytest.raises(DataError, match=r"^--step 0.3: must be a number in \(0, 1\] that divides 1 evenly"):
        simplex(2, 0.3)


def test_three_candidate_blend_scores_by_hand(tmp_path):
    root = tmp_path
    a = make_run(root, "a--sampled-5.test", lambda u: [1, 2, 6, 0, 0], users=[0])
    b = make_run(root, "b--sampled-5.test", lambda u: [3, 2, 1, 0, 0], users=[0])
    for run in (a, b):  # keep the first three candidates only: a 3-candidate list
        row = json.loads((run / runs.RANKS).read_text())
        keep = {c: s for c, s in zip(row["candidates"], row["scores"]) if c in ("p", "a", "b")}
        (run / runs.RANKS).unlink()
        runs.append_ranks(run, [runs.rank_row("0", ["p", "a", "b"], np.array([keep[c] for c in "pab"]), "p")])
    res = blend([a, b], out=root / "ab", weights=[3, 7])  # normalised to 0.3, 0.7
    za = np.array([-2, -1, 3]) / math.sqrt(14 / 3)  # [1, 2, 6]
    zb = np.array([1, 0, -1]) / math.sqrt(2 / 3)  # [3, 2, 1]
    want = dict(zip("pab", 0.3 * za + 0.7 * zb))  # p 0.5796, a -0.1389, b -0.4407
    row = runs.read_ranks(root / "ab")[0]
    assert row["candidates"] == ["p", "a", "b"] and row["rank"] == 1.0
    assert row["scores"] == pytest.approx([want[c] for c in row["candidates"]], abs=1e-12)
    assert row["scores"][0] != round(row["scores"][0], 6)  # full precision, not rank_row's 6 digits
    assert res.weights == pytest.approx([0.3, 0.7]) and res.valid is None


def test_weights_chosen_on_validation(tmp_path):
    root = tmp_path
    a = make_run(root, "a--sampled-5.test", even_sure)
    b = make_run(root, "b--sampled-5.test", odd_sure)
    make_run(root, "a--sampled-5.valid", even_sure, stage="valid", model="a")
    make_run(root, "b--sampled-5.valid", odd_sure, stage="valid", model="b")
    make_run(root, "c--sampled-5.valid", odd_sure, stage="valid", model="c")  # other settings: not a match
    res = blend([a, b], step=0.05, log=lambda m: None)
    # alone each run is right on half the users (rank 1) and ranks the held-out item 3rd on the rest
    assert res.valid["ndcg10"] == pytest.approx([0.5 + 0.5 / math.log2(4)] * 2)
    # summed, the sure run outvotes the unsure one on every user for 0.45 <= w <= 0.55: the most even wins
    assert res.weights == pytest.approx([0.5, 0.5])
    assert res.valid["blend_ndcg10"] == 1.0 and res.valid["users"] == 40
    assert res.metrics["NDCG@10"] == 1.0 and res.metrics["HR@1"] == 1.0 and res.users == 40
    out = root / "baselines" / "blend--a+b--sampled-5.test"
    assert res.run_dir == out
    meta = runs.load_run(out)
    s = meta["settings"]
    assert s["kind"] == "blend" and s["weights"] == pytest.approx([0.5, 0.5]) and s["step"] == 0.05
    assert [r["path"] for r in s["runs"]] == [str(a), str(b)]
    assert [r["path"] for r in s["valid_runs"]] == [str(root / "baselines" / f"{n}--sampled-5.valid") for n in "ab"]
    assert s["runs"][0]["ranks_sha256"] == sha256_file(a / runs.RANKS)
    assert s["source"].endswith("sampled-5.test.jsonl") and s["source_sha256"] == "test" * 4
    assert s["dataset_hash"] == "h1" and meta["valid"]["blend_ndcg10"] == 1.0
    # an ordinary run: evaluate and compare read it, and it can be blended again
    assert runs.evaluate(out) == json.loads((out / "metrics.json").read_text()) == res.metrics
    table = {r["path"]: r for r in compare([out, a], n_boot=50, n_perm=50)["rows"]}
    assert table[str(out)]["NDCG@10"] == 1.0
    again = blend([out, a], out=root / "again", weights=[1, 0])
    assert again.metrics == res.metrics


def test_weights_tie_goes_to_the_most_even(tmp_path):
    """A is right and sure everywhere, B wrong everywhere: every w_A >= 0.6 is perfect; 0.6 is the
    most even of them (w_A = 0.6: held-out 0.572 vs candidate d 0.566, in z units)."""
    root = tmp_path
    a = make_run(root, "a--sampled-5.test", lambda u: [10, 1, 2, 3, 4])
    b = make_run(root, "b--sampled-5.test", lambda u: [0, 1, 2, 3, 4])
    va = make_run(root / "v", "a--sampled-5.valid", lambda u: [10, 1, 2, 3, 4], stage="valid", model="a")
    vb = make_run(root / "v", "b--sampled-5.valid", lambda u: [0, 1, 2, 3, 4], stage="valid", model="b")
    res = blend([a, b], valid=[va, vb], out=root / "out", step=0.05)
    assert res.weights == pytest.approx([0.6, 0.4])
    assert res.valid["ndcg10"] == pytest.approx([1.0, 1 / math.log2(6)]) and res.valid["blend_ndcg10"] == 1.0


def test_users_not_in_every_run_are_dropped(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure, users=range(10))
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure, users=range(5, 20))
    said = []
    res = blend([a, b], out=tmp_path / "o", weights=[1, 1], log=said.append)
    assert res.users == 5 and res.users_dropped == 15 and "15 users not in every run dropped" in said[0]
    assert [r["user_id"] for r in runs.read_ranks(tmp_path / "o")] == ["5", "6", "7", "8", "9"]


def test_refuses_different_candidate_files(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.valid", odd_sure, stage="valid")
    with pytest.raises(DataError, match="different candidate files") as e:
        blend([a, b], weights=[1, 1])
    assert "sampled-5.test.jsonl" in str(e.value) and "sampled-5.valid.jsonl" in str(e.value)


def test_refuses_missing_validation_run_with_the_command(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    with pytest.raises(DataError, match="no folder next to") as e:
        blend([a, b])
    assert (f"`llmrec baseline --config {a}/config.toml 'baseline.candidates=[\"sampled-5.valid\"]' "
            "baseline.retrieve=0 baseline.top_k=0`") in str(e.value)
    # an LLM run: the command the run recorded, filled with the label and the run directory it names
    llm = tmp_path / "rank" / "t--m--sum--sampled-5.test"
    llm.mkdir(parents=True)
    (a / runs.RUN).rename(llm / runs.RUN)
    (a / runs.RANKS).rename(llm / runs.RANKS)
    rerun = runs.rerun_record(["llmrec", "rank", "--config", f"{llm}/config.toml"],
                              ["llmrec", "rank", "--config", f"{llm}/config.toml", "rank.candidates={label}",
                               "rank.top_k=0", "rank.run_dir={run_dir}"], f"{tmp_path}/rank/t--m--sum--{{label}}")
    runs.write_json(llm / runs.RUN, {"settings": {**runs.load_run(llm)["settings"], "kind": "llm"}, "rerun": rerun})
    with pytest.raises(DataError) as e:
        blend([llm, b])
    assert (f"`llmrec rank --config {llm}/config.toml 'rank.candidates=sampled-5.valid' rank.top_k=0 "
            f"'rank.run_dir={tmp_path}/rank/t--m--sum--sampled-5.valid'`") in str(e.value)
    assert "--valid" not in str(e.value).split("`")[-1]  # it lands next to the run: found by the next blend
    with pytest.raises(DataError, match="scored on the test candidates"):
        blend([llm, b], valid=[llm, b])


def test_refuses_top_k_cut_rows(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure, top_k=3)
    with pytest.raises(DataError, match=r"b--sampled-5.test lacks scores for some candidates of user '0' "
                                        r"\(written with a top_k cut\)") as e:
        blend([a, b], weights=[1, 1])
    assert "'baseline.candidates=[\"sampled-5.test\"]' baseline.retrieve=0 baseline.top_k=0" in str(e.value)
    # cut alike in both runs, the held-out item always listed: only the candidate file tells
    c = make_run(tmp_path / "x", "c--sampled-5.test", even_sure, users=[0], top_k=3)
    d = make_run(tmp_path / "x", "d--sampled-5.test", even_sure, users=[0], top_k=3)
    blend([c, d], out=tmp_path / "cd", weights=[1, 1])  # no file at hand: three candidates it is
    (tmp_path / "x" / "candidates").mkdir()
    src = tmp_path / "x" / "candidates" / "sampled-5.test.jsonl"
    src.write_text(json.dumps({"meta": {"kind": "sampled", "n": 5, "seed": 0, "stage": "test", "dataset_hash": "h1"}})
                   + "\n" + json.dumps({"user_id": "0", "positive": "p", "candidates": CANDS}) + "\n")
    for run in (c, d):
        meta = runs.load_run(run)
        meta["settings"]["source_sha256"] = sha256_file(src)
        runs.write_json(run / runs.RUN, meta)
    with pytest.raises(DataError, match="c--sampled-5.test lacks scores"):
        blend([c, d], out=tmp_path / "cd", weights=[1, 1])


def test_refuses_no_common_users(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure, users=range(5))
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure, users=range(5, 10))
    with pytest.raises(DataError, match="the test runs share no users"):
        blend([a, b], weights=[1, 1])


def test_refuses_foreign_out_dir(tmp_path):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    c = make_run(tmp_path, "c--sampled-5.test", odd_sure)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(DataError, match="is not an llmrec run directory"):
        blend([a, b], out=tmp_path / "notes", weights=[1, 1])
    with pytest.raises(DataError, match="holds another run .kind 'baseline'"):
        blend([a, b], out=c, weights=[1, 1])
    blend([a, b], out=tmp_path / "ab", weights=[1, 1])
    blend([a, b], out=tmp_path / "ab", weights=[1, 3])  # the same inputs: rewritten
    assert runs.load_run(tmp_path / "ab")["settings"]["weights"] == [0.25, 0.75]
    with pytest.raises(DataError, match="holds a blend of other runs"):
        blend([a, c], out=tmp_path / "ab", weights=[1, 1])
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_cli_blend(tmp_path, capsys):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    va = make_run(tmp_path / "v", "a--sampled-5.valid", even_sure, stage="valid", model="a")
    vb = make_run(tmp_path / "v", "b--sampled-5.valid", odd_sure, stage="valid", model="b")
    out = tmp_path / "blend"
    assert main(["blend", str(a), str(b), "--valid", str(va), str(vb), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights (chosen on validation, step 0.05): a--sampled-5.test 0.50, b--sampled-5.test 0.50" in printed
    assert "validation NDCG@10 (40 users): a--sampled-5.test 0.7500, b--sampled-5.test 0.7500, blend 1.0000" in printed
    assert f"run directory: {out}" in printed and (out / "metrics.json").is_file()
    assert main(["blend", str(a), str(b), "--weights", "1,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrec: error: --weights '1,x'") and err.count("\n") == 1


@pytest.mark.parametrize("step", [0.0, -0.1, math.nan, math.inf, -math.inf, 2.0, 5e-324])
def test_a_step_that_is_not_a_grid_step_is_refused(step):
    # Before: 0 raised ZeroDivisionError, NaN ValueError, a subnormal step OverflowError.
    with pytest.raises(DataError, match=rf"^--step {step}: must be a number in \(0, 1\] that divides 1 evenly"):
        simplex(2, step)
    assert simplex(2, 1.0).tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("step", ["0", "nan", "-0.5", "inf"])
def test_cli_blend_bad_step_is_one_line_error(tmp_path, capsys, step):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    va = make_run(tmp_path / "v", "a--sampled-5.valid", even_sure, stage="valid", model="a")
    vb = make_run(tmp_path / "v", "b--sampled-5.valid", odd_sure, stage="valid", model="b")
    with pytest.raises(DataError, match=r"--step 0.0: must be a number in \(0, 1\]"):
        blend([a, b], out=tmp_path / "x", valid=[va, vb], step=0.0)
    argv = ["blend", str(a), str(b), "--valid", str(va), str(vb), "--step", step, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == f"llmrec: error: --step {float(step)}: must be a number in (0, 1] that divides 1 evenly " \
                  "(e.g. 0.05, 0.1, 0.25)\n"
    assert "Traceback" not in out + err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("weights", ["nan,1", "1,inf", "-inf,1", "-1,2", "0,0"])
def test_cli_blend_weights_must_be_finite(tmp_path, capsys, weights):
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    with pytest.raises(DataError, match="must be finite, non-negative numbers with a positive sum"):
        blend([a, b], out=tmp_path / "x", weights=[float(x) for x in weights.split(",")])
    assert main(["blend", str(a), str(b), f"--weights={weights}", "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("llmrec: error: --weights ") and err.count("\n") == 1 and "Traceback" not in out + err
    assert not (tmp_path / "out").exists()


def test_huge_weights_do_not_overflow_to_zero(tmp_path):
    # Before: 1e308 + 1e308 summed to inf and both weights became 0.
    a = make_run(tmp_path, "a--sampled-5.test", even_sure)
    b = make_run(tmp_path, "b--sampled-5.test", odd_sure)
    assert blend([a, b], out=tmp_path / "ab", weights=[1e308, 1e308]).weights == [0.5, 0.5]
