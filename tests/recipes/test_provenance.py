"""A prepared folder records its data; commands use it, and prepare will not silently replace it."""

import json

import pytest

from llmrec.cli import main
from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.recipes import prepare


def books(tmp_path):
    """A small CSV dataset: 12 readers, 30 books, 8 ratings each, in time order."""
    inter = ["reader,isbn,stars,ts"] + [f"r{u},b{(u * 7 + k * 3) % 30},{1 + (u + k) % 5},{1000 + k}"
                                        for u in range(12) for k in range(8)]
    (tmp_path / "ratings.csv").write_text("\n".join(inter) + "\n")
    (tmp_path / "books.csv").write_text("isbn,title\n" + "".join(f"b{i},Book {i}\n" for i in range(30)))
    return [f"out_dir={tmp_path / 'prep'}", "data.dataset=books", "data.format=csv",
            f"data.path={tmp_path / 'ratings.csv'}", f"data.items_path={tmp_path / 'books.csv'}",
            "data.user_field=reader", "data.item_field=isbn", "data.rating_field=stars", "data.timestamp_field=ts",
            "data.item_noun=book", "candidates.n=5", "candidates.kinds=['sampled']"]


def test_commands_use_the_folder_data(tmp_path, capsys):
    out = tmp_path / "prep"
    prepare.run(load_config(None, books(tmp_path)), log=lambda *_: None)
    recorded = json.loads((out / "prepared.json").read_text())
    assert recorded["data"]["dataset"] == "books" and recorded["split"]["tie_break"] == "hash"

    # No --config: the baseline scores and records the folder's dataset, not the embedded default.
    assert main(["baseline", "--name", "pop", f"out_dir={out}", "baseline.candidates=['sampled-5.test']"]) == 0
    run = out / "baselines" / "pop--sampled-5.test"
    assert 'dataset = "books"' in (run / "config.toml").read_text()
    assert json.loads((run / "metrics.json").read_text())["users"] == 12

    # A config that names other data is refused, with the differences listed.
    from llmrec.data.prepared import open_prepared
    with pytest.raises(ConfigError, match=r"was prepared from other data \(data.dataset: 'books' -> 'ml-100k'.*"
                                          r"data.min_rating: None -> 4.0"):
        open_prepared(load_config(None, [f"out_dir={out}", "data.min_rating=4", "data.item_noun=film"]))

    # Only prompt wording may differ from the record: the folder's data, with this run's noun.
    worded = open_prepared(load_config(None, [f"out_dir={out}", "data.item_noun=volume"]), log=lambda *_: None)
    assert (worded.cfg.data.dataset, worded.cfg.data.item_noun) == ("books", "volume")
    assert open_prepared(load_config(None, [f"out_dir={out}"]), log=lambda *_: None).cfg.data.item_noun == "book"

    # `prepare` with the defaults into that folder refuses and names the exact command that would replace it.
    capsys.readouterr()
    assert main(["prepare", f"out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "was prepared from other data" in err and f'llmrec prepare out_dir="{out}" --force' in err
    assert json.loads((out / "prepared.json").read_text())["data"]["dataset"] == "books"  # untouched
    # The same data again is fine (e.g. to add candidate kinds), and --force replaces.
    prepare.run(load_config(None, books(tmp_path) + ["candidates.kinds=['sampled', 'pop']"]), log=lambda *_: None)
    assert (out / "candidates" / "pop-5.test.jsonl").is_file()
    assert main(["prepare", f"out_dir={out}", "--force", "candidates.kinds=['sampled']",
                 "candidates.stages=['test']"]) == 0
    assert json.loads((out / "prepared.json").read_text())["data"]["dataset"] == "ml-100k"


def test_unprepared_folder_names_the_exact_command(tmp_path, capsys):
    assert main(["baseline", "--name", "pop", f"out_dir={tmp_path / 'none'}", "data.kcore=5"]) == 2
    err = capsys.readouterr().err
    assert f'is not a prepared folder (no prepared.json); build it with `llmrec prepare out_dir="{tmp_path / "none"}" ' \
           'data.kcore=5`' in err
