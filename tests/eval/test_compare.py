import json

import numpy as np
import pytest

from llmrec.errors import DataError
from llmrec.eval.compare import compare, holm, randomization_p, write_report


def make_run(path, ranks, source_sha="abc", settings=None):
    path.mkdir(parents=True)
    s = {"template": path.name, "scoring": "sum", "source": "c.jsonl", "source_sha256": source_sha, **(settings or {})}
    (path / "run.json").write_text(json.dumps({"settings": s}))
    with open(path / "ranks.jsonl", "w") as f:
        f.writelines(json.dumps({"user_id": str(u), "rank": r}) + "\n" for u, r in enumerate(ranks))
    return path


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.6]) == pytest.approx([0.4, 0.6])


def test_randomization_test():
    rng = np.random.default_rng(0)
    assert randomization_p(np.zeros(50), 1000, rng) == 1.0
    assert randomization_p(np.full(50, 0.1), 2000, rng) < 0.001  # all 50 users better
    p = randomization_p(rng.normal(0, 1, 200), 2000, rng)
    assert 0.01 < p <= 1.0


def test_compare_table_and_files(tmp_path):
    rng = np.random.default_rng(1)
    good = make_run(tmp_path / "good", list(rng.integers(1, 4, 300).astype(float)))
    rand = make_run(tmp_path / "random", list(rng.integers(1, 21, 300).astype(float)))
    same = make_run(tmp_path / "same", list(rng.integers(1, 21, 300).astype(float)))
    res = compare([rand, good, same], reference="random", n_boot=500, n_perm=2000)
    rows = {r["run"]: r for r in res["rows"]}
    assert res["users"] == 300 and res["reference"] == "random"
    for r in rows.values():
        lo, hi = r["NDCG@10_ci"]
        assert lo <= r["NDCG@10"] <= hi
    assert rows["good"]["p_holm_NDCG@10"] < 0.01 and rows["good"]["diff_NDCG@10"] > 0.3
    assert rows["same"]["p_holm_NDCG@10"] > 0.01
    assert rows["good"]["p_holm_NDCG@10"] >= rows["good"]["p_NDCG@10"]
    files = write_report(res, tmp_path / "report")
    assert [f.name for f in files] == ["compare.md", "compare.csv", "compare.json", "compare.png"]
    md = (tmp_path / "report" / "compare.md").read_text()
    assert md.splitlines()[2].startswith("| good |") and "300 users" in md
    assert (tmp_path / "report" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_refuses_different_candidates(tmp_path):
    a = make_run(tmp_path / "a", [1.0, 2.0], source_sha="x")
    b = make_run(tmp_path / "b", [1.0, 2.0], source_sha="y")
    with pytest.raises(DataError, match="different candidate files, refusing"):
        compare([a, b])
    with pytest.raises(DataError, match="is not a run directory"):
        compare([a, tmp_path])


def test_compare_uses_shared_users_and_misses(tmp_path):
    a = make_run(tmp_path / "a", [1.0, 1.0, 1.0, 1.0])
    b = make_run(tmp_path / "b", [2.0, 2.0])
    with open(b / "ranks.jsonl", "a") as f:
        f.write(json.dumps({"user_id": "2", "rank": None, "missed": True}) + "\n")
    res = compare([a, b], n_boot=100, n_perm=100)
    rows = {r["run"]: r for r in res["rows"]}
    assert res["users"] == 3  # users 0, 1 and the missed user 2; user 3 is not in b
    assert rows["b"]["HR@5"] == pytest.approx(2 / 3)  # the retriever's miss counts as a miss


def test_adapter_runs_are_labelled_by_their_training_folder():
    from pathlib import Path

    from llmrec.eval.compare import run_label

    meta = {"settings": {"template": "letters/candidates_v1", "scoring": "sum",
                         "adapter": "runs/ml-100k/adapters/lora--letters-candidates_v1/best"}}
    assert run_label(meta, Path("x")) == "letters/candidates_v1 + lora--letters-candidates_v1"
    meta["settings"].update(adapter="/tmp/my-adapter", scoring="mean")
    assert run_label(meta, Path("x")) == "letters/candidates_v1 (mean) + my-adapter"


def test_compare_refuses_the_same_run_twice(tmp_path, monkeypatch):
    a = make_run(tmp_path / "a", [1.0, 2.0, 3.0])
    b = make_run(tmp_path / "b", [2.0, 1.0, 3.0])
    with pytest.raises(DataError, match=rf"run directory {a} is given twice \(as {a} and {a}, both {a}\)"):
        compare([a, b, a])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"run directory b/../a is given twice \(as a and b/../a, both {a}\)"):
        compare(["a", "b/../a"])
    (tmp_path / "link").symlink_to(a)
    with pytest.raises(DataError, match=rf"run directory link is given twice \(as a and link, both {a}\)"):
        compare(["a", "link"])
    assert compare(["a", "b"], n_boot=10, n_perm=10)["users"] == 3


def test_write_report_into_an_unwritable_place_names_it(tmp_path):
    a = make_run(tmp_path / "a", [1.0, 2.0])
    b = make_run(tmp_path / "b", [2.0, 1.0])
    res = compare([a, b], n_boot=10, n_perm=10)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError) as e:
        write_report(res, blocker / "report")
    assert str(e.value) == f"{blocker / 'report'}: cannot write the comparison report (Not a directory)"
    with pytest.raises(DataError) as e:
        write_report(res, blocker)
    assert str(e.value) == f"{blocker}: cannot write the comparison report (it exists and is not a folder)"
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "compare.csv").mkdir()  # a folder where a report file goes
    with pytest.raises(DataError) as e:
        write_report(res, tmp_path / "rep")
    assert str(e.value) == (f"{tmp_path / 'rep'}: cannot write the comparison report "
                            f"(Is a directory: {tmp_path / 'rep' / 'compare.csv'})")


@pytest.mark.parametrize("flag", ["--bootstrap", "--permutations"])
@pytest.mark.parametrize("n", ["0", "-5", "9"])
def test_cli_compare_too_few_resamples_is_one_line_error(tmp_path, capsys, flag, n):
    # Before: 0 gave an IndexError traceback from the percentile of no resamples (or a p-value of 1/1).
    from llmrec.cli import main

    a = make_run(tmp_path / "a", [1.0, 2.0, 3.0])
    b = make_run(tmp_path / "b", [2.0, 2.0, 1.0])
    with pytest.raises(DataError, match=rf"^{flag} {n}: must be at least 10"):
        compare([a, b], **{"n_boot" if flag == "--bootstrap" else "n_perm": int(n)})
    rc = main(["compare", str(a), str(b), "--out", str(tmp_path / "rep"), flag, n])
    out, err = capsys.readouterr()
    assert rc == 2 and err == f"llmrec: error: {flag} {n}: must be at least 10 resamples\n"
    assert "Traceback" not in out + err and not (tmp_path / "rep").exists()
    assert compare([a, b], n_boot=10, n_perm=10)["n_boot"] == 10
