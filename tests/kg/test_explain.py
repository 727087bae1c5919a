import numpy as np
import pytest

from llmrec.baselines import make
from llmrec.cli import main
from llmrec.errors import DataError
from llmrec.kg.explain import explain, paths
from tests.conftest import write_recbole
from tests.kg.helpers import graph, train_data

ITEMS = ["a", "b", "c", "d"]
TITLES = {"a": "Star Wars", "b": "Alien", "c": "Return of the Jedi", "d": "Heat"}


def fitted():
    # u0 watched a then b (validation d); u1 watched b, d (validation c). a and c share director Lucas,
    # b and c share the genre SciFi.
    data = train_data(["u0", "u1"], ITEMS, {"u0": ["a", "b"], "u1": ["b", "d"]}, {"u0": "d", "u1": "c"})
    kg = graph(ITEMS, [("a", "director", "George Lucas"), ("c", "director", "George Lucas"),
                       ("b", "genre", "SciFi"), ("c", "genre", "SciFi")])
    m = make("kg-path", graph=kg, negatives=2).fit(data)
    m.weights = np.array([2.0, 1.0, 0.5])  # director, genre, co-watched: fixed so the order is known
    return m


def test_paths_share_the_score_and_name_entity_and_history_item():
    m = fitted()
    score, found = paths(m, 0, ITEMS.index("c"), "valid")
    # u0 -> a -director- c (share 2 log 2), u0 -> b -genre- c (share 1 log 2); nobody else watched c.
    assert [(ITEMS[p.history_item], p.path_type, p.share) for p in found] == [
        ("a", "director", pytest.approx(2 * np.log(2))), ("b", "genre", pytest.approx(np.log(2)))]
    assert score == pytest.approx(sum(p.share for p in found))
    lines = explain(m, TITLES, "u0", "c", stage="valid")
    assert lines[1] == ('  1. you watched "Star Wars"; "Star Wars" and "Return of the Jedi" share director '
                        'George Lucas  [+1.386]')
    assert lines[2].startswith('  2. you watched "Alien"; "Alien" and "Return of the Jedi" share genre SciFi')
    assert not any("shown by id" in line for line in lines)  # a plain triple file names its entities


def test_cowatched_paths_in_words():
    m = fitted()
    # u0 (history a, b) and d: no shared entity; u1 watched both b and d: one co-watched path,
    # share 0.5 log 2 = 0.347.
    lines = explain(m, TITLES, "u0", "d", stage="valid")
    assert lines[1] == '  1. you watched "Alien"; 1 user watched both "Alien" and "Heat"  [+0.347]'
    assert len(lines) == 3  # the score, one path, the weights


def test_unknown_user_or_item_is_named():
    m = fitted()
    with pytest.raises(DataError, match="unknown user 'u9'"):
        explain(m, TITLES, "u9", "c")
    with pytest.raises(DataError, match="unknown item 'zz'"):
        explain(m, TITLES, "u0", "zz")


ITEM_ROWS = ["1\tStar Wars\t1977\tSci-Fi", "2\tThe Empire Strikes Back\t1980\tSci-Fi",
             "3\tReturn of the Jedi\t1983\tSci-Fi", "4\tFargo\t1996\tCrime", "5\tHeat\t1995\tCrime",
             "6\tCasino\t1995\tCrime", "7\tAlien\t1979\tSci-Fi", "8\tBrazil\t1985\tComedy"]
SEQUENCES = {"1": [1, 4, 5, 2, 3], "2": [4, 5, 6, 1], "3": [2, 7, 8, 1, 6], "4": [5, 6, 4, 8], "5": [1, 2, 7, 3]}
KG = ["m.01\tfilm.film.produced_by\tm.lucas", "m.lucas\tfilm.producer.film\tm.03", "m.02\tfilm.film.genre\tm.scifi",
      "m.07\tfilm.film.genre\tm.scifi", "m.04\tfilm.film.directed_by\tm.coen", "m.05\tfilm.film.genre\tm.crime",
      "m.crime\tfilm.film_genre.films_in_this_genre\tm.06"]


@pytest.fixture
def tiny_prepared(tmp_path):
    rows = [f"{u}\t{i}\t4\t{t}" for u, seq in SEQUENCES.items() for t, i in enumerate(seq)]
    folder = write_recbole(tmp_path / "data", "tiny", rows, ITEM_ROWS)
    (folder / "tiny.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n" + "\n".join(KG) + "\n")
    (folder / "tiny.link").write_text("item_id:token\tentity_id:token\n"
                                      + "".join(f"{i}\tm.0{i}\n" for i in range(1, 8)))  # 8 has no link
    out = tmp_path / "prepared"
    assert main(["prepare", f"data.path={folder}", 'data.dataset="tiny"', f"out_dir={out}", "candidates.n=3",
                 "candidates.kinds=['sampled']"]) == 0
    return out


def test_cli_explain_on_a_tiny_prepared_dataset(tiny_prepared, capsys):
    capsys.readouterr()
    assert main(["explain", "--user", "1", "--item", "3", f"out_dir={tiny_prepared}",
                 "baseline.kg-path.negatives=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('user 1, item 3 "Return of the Jedi": kg-path score')
    # User 1's history for the test item: Star Wars, Fargo, Heat, The Empire Strikes Back.
    assert any('you watched "Star Wars"; "Star Wars" and "Return of the Jedi" share producer m.lucas' in line
               for line in out)
    assert out[-1] == "entities are shown by id: this knowledge graph has no entity names"
    assert main(["explain", "--user", "42", "--item", "3", f"out_dir={tiny_prepared}"]) == 2
    assert "llmrec: error: unknown user '42'" in capsys.readouterr().err
    assert main(["explain", "--user", "1", "--item", "99", f"out_dir={tiny_prepared}"]) == 2
    assert "llmrec: error: unknown item '99'" in capsys.readouterr().err


def test_cli_baseline_runs_the_kg_scorers(tiny_prepared, capsys):
    for name in ("kg-ppr", "kg-path"):
        assert main(["baseline", "--name", name, f"out_dir={tiny_prepared}", "baseline.candidates=['sampled-3.test']",
                     "baseline.kg-path.negatives=2" if name == "kg-path" else "baseline.kg-ppr.alpha=0.5"]) == 0
        assert (tiny_prepared / "baselines" / f"{name}--sampled-3.test" / "metrics.json").is_file()
    assert main(["baseline", "--name", "kg-ppr", f"out_dir={tiny_prepared}", "baseline.kg-ppr.negatives=2"]) == 2
    assert "unknown config key 'baseline.kg-ppr.negatives'" in capsys.readouterr().err
    assert main(["baseline", "--name", "kg-ppr", f"out_dir={tiny_prepared}", "baseline.negatives=2"]) == 2
    assert "config key 'baseline.negatives' moved: baseline.kg-ppr.negatives" in capsys.readouterr().err


def test_explain_help_says_what_it_prints(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    assert "share director" in text and "--kg" in text and "llmrec explain --user 1 --item 50" in text


def test_cli_baseline_reads_a_triple_file_from_baseline_kg(tiny_prepared, tmp_path, capsys):
    """`baseline.<kg model>.kg` replaces the dataset's KG (e.g. with `llmrec kg-extract`'s output)."""
    import json

    facts = tmp_path / "facts.csv"
    facts.write_text("head,relation,tail\n1,director,George Lucas\n3,director,George Lucas\n")
    assert main(["baseline", "--name", "kg-path", f"out_dir={tiny_prepared}", "baseline.candidates=['sampled-3.test']",
                 "baseline.kg-path.negatives=2", f"baseline.kg-path.kg={facts}"]) == 0
    run = json.loads((tiny_prepared / "baselines" / "kg-path--sampled-3.test" / "run.json").read_text())
    assert str(facts) in json.dumps(run)
    facts.write_text("head,relation,tail\n1,,George Lucas\n")
    capsys.readouterr()
    assert main(["baseline", "--name", "kg-ppr", f"out_dir={tiny_prepared}", f"baseline.kg-ppr.kg={facts}"]) == 2
    assert f"{facts}:2: field 'relation' is empty" in capsys.readouterr().err
    assert main(["baseline", "--name", "content-st", f"out_dir={tiny_prepared}", f"baseline.content-st.kg={facts}"]) == 2
    assert "unknown config key 'baseline.content-st.kg'" in capsys.readouterr().err
