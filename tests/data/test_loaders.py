import json

import pytest

from llmrec.config import DataConfig
from llmrec.data.loaders import load_dataset, load_recbole
from llmrec.errors import DataError
from tests.conftest import write_recbole

ITEMS = ["1\tToy Story\t1995\tAnimation Children's Comedy", "2\tGoldenEye\t1995\tAction Thriller",
         "3\tMisérables, Les\t1995\tDrama Musical"]


def test_ml100k_counts_and_fields(ml100k):
    assert (ml100k.n_users, ml100k.n_items, ml100k.n_interactions) == (943, 1682, 100000)
    toy = ml100k.items["1"]
    assert toy.title == "Toy Story" and toy.year == 1995
    assert toy.genres == ("Animation", "Children's", "Comedy")
    assert ml100k.users["1"] == {"age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"}
    first = ml100k.interactions.iloc[0]
    assert (first.user_id, first.item_id, first.rating, first.timestamp) == ("196", "242", 3.0, 881250949.0)
    assert ml100k.stats()["history_len_min"] == 20


def test_filters_on_ml100k(ml100k):
    pos = ml100k.filter(min_rating=4)
    assert pos.n_interactions == 34174 + 21201
    core = ml100k.filter(min_rating=4, kcore=10)
    per_user = core.interactions.groupby("user_id").size()
    per_item = core.interactions.groupby("item_id").size()
    assert per_user.min() >= 10 and per_item.min() >= 10
    assert core.n_interactions < pos.n_interactions


def test_kcore_is_iterative(tmp_path):
    # Item 3 has one user (u3) and goes; u3 is then left with one item and must go too.
    rows = ["u1\t1\t5\t1", "u1\t2\t5\t2", "u2\t1\t5\t1", "u2\t2\t5\t2", "u3\t3\t5\t1", "u3\t1\t5\t2"]
    ds = load_recbole(write_recbole(tmp_path, "t", rows, ITEMS), "t", DataConfig())
    core = ds.filter(kcore=2)
    assert sorted(core.interactions["user_id"].unique()) == ["u1", "u2"]
    assert sorted(core.interactions["item_id"].unique()) == ["1", "2"]


@pytest.mark.parametrize("rows, message", [
    (["u1\t1\t5"], r"t.inter:2: expected 4 tab-separated columns"),
    (["u1\t1\t5\t1", "u1\t2\tfive\t2"], r"t.inter:3: column 'rating': expected a number, got 'five'"),
    (["u1\t9\t5\t1"], r"1 interactions name items missing from the items file, e.g. item_id '9'"),
])
def test_malformed_inter_names_line_and_column(tmp_path, rows, message):
    folder = write_recbole(tmp_path, "t", rows, ITEMS)
    with pytest.raises(DataError, match=message):
        load_recbole(folder, "t", DataConfig())


def test_malformed_items_and_headers(tmp_path):
    folder = write_recbole(tmp_path / "a", "t", ["u1\t1\t5\t1"], ["1\t\t1995\tDrama"])
    with pytest.raises(DataError, match=r"t.item:2: item '1' has an empty title"):
        load_recbole(folder, "t", DataConfig())
    folder = write_recbole(tmp_path / "b", "t", ["u1\t1\t5\t1"], ITEMS, inter_header="user_id\titem_id\tr\tt")
    with pytest.raises(DataError, match=r"t.inter:1: column 1 header 'user_id' is not of the form name:type"):
        load_recbole(folder, "t", DataConfig())
    folder = write_recbole(tmp_path / "c", "t", ["u1\t1\t5\t1"], ["1\tA\t1995\tx", "1\tB\t1995\ty"])
    with pytest.raises(DataError, match=r"t.item:3: duplicate item id '1'"):
        load_recbole(folder, "t", DataConfig())
    with pytest.raises(DataError, match="file not found"):
        load_recbole(tmp_path / "missing", "t", DataConfig())


def test_csv_loader(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,stars,ts\nA,b1,4,10\nA,b2,5,11\nB,b1,3,12\n")
    (tmp_path / "i.csv").write_text('item,title,year,genres\nb1,"Dune, Part One",1965,Sci-Fi|Classic\nb2,Emma,1815,\n')
    cfg = DataConfig(dataset="books", format="csv", path=str(tmp_path / "r.csv"), items_path=str(tmp_path / "i.csv"),
                     user_field="user", item_field="item", rating_field="stars", timestamp_field="ts",
                     item_noun="book")
    ds = load_dataset(cfg)
    assert ds.n_interactions == 3 and ds.n_users == 2 and ds.item_noun == "book"
    assert ds.items["b1"].title == "Dune, Part One" and ds.items["b1"].genres == ("Sci-Fi", "Classic")
    assert ds.items["b2"].genres == () and ds.items["b2"].year == 1815
    assert ds.interactions["rating"].tolist() == [4.0, 5.0, 3.0]
    (tmp_path / "i.csv").write_text('item,title,year,genres\nb1,Dune,,Sci-Fi\nb2,Emma,,\n')
    logs: list[str] = []
    load_dataset(cfg, log=logs.append)  # a year column with no year in it is worth a warning
    assert logs == ["warning: " + str(tmp_path / "i.csv") + ": column 'year' gives no item a year; year filters, "
                    "genre filters and templates that show it have nothing to work with"]
    (tmp_path / "r.csv").write_text("user,item,stars,ts\nA,b1,4,10\nA,b2,5\n")
    with pytest.raises(DataError, match=r"r.csv:3: expected 4 columns"):
        load_dataset(cfg)


def test_jsonl_loader_and_errors(tmp_path):
    inter = tmp_path / "r.jsonl"
    items = tmp_path / "i.jsonl"
    inter.write_text("\n".join(json.dumps(r) for r in [{"user_id": 1, "item_id": "x"}, {"user_id": 1, "item_id": "y"}]))
    items.write_text("\n".join(json.dumps(r) for r in [{"item_id": "x", "title": "X", "genres": ["a", "b"]},
                                                        {"item_id": "y", "title": "Y", "plot": "long text"}]))
    cfg = DataConfig(dataset="d", format="jsonl", path=str(inter), items_path=str(items))
    ds = load_dataset(cfg)
    # No rating / timestamp columns: implicit feedback 1.0 and file order as time (documented policy).
    assert ds.interactions["rating"].tolist() == [1.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [0.0, 1.0]
    assert ds.items["x"].genres == ("a", "b") and ds.items["y"].fields == {"plot": "long text"}
    inter.write_text('{"user_id": 1, "item_id": "x"}\n{"user_id": 1, "item_id": \n')
    with pytest.raises(DataError, match=r"r.jsonl:2: invalid JSON at column"):
        load_dataset(cfg)
    inter.write_text('{"user_id": 1, "item_id": "x", "timestamp": "noon"}\n')
    with pytest.raises(DataError, match=r"r.jsonl:1: column 'timestamp': expected a number, got 'noon'"):
        load_dataset(cfg)


def test_filter_to_nothing_is_an_error(tmp_path):
    folder = write_recbole(tmp_path, "t", ["u1\t1\t2\t1"], ITEMS)
    with pytest.raises(DataError, match="no interactions left after filtering"):
        load_dataset(DataConfig(dataset="t", path=str(folder), min_rating=4))


def _csv_cfg(tmp_path, **kw):
    return DataConfig(dataset="d", format="csv", path=str(tmp_path / "r.csv"), items_path=str(tmp_path / "i.csv"), **kw)


def _write_csv(tmp_path, rows, header="user_id,item_id,rating,timestamp", bom=""):
    (tmp_path / "r.csv").write_text(bom + "\n".join([header, *rows]) + "\n", encoding="utf-8")
    (tmp_path / "i.csv").write_text("item_id,title\n1,A\n2,B\n3,C\n", encoding="utf-8")


def test_default_fields_are_auto_detected(tmp_path):
    assert (DataConfig().rating_field, DataConfig().timestamp_field) == ("", "")
    _write_csv(tmp_path, ["u,1,4,30", "u,2,2,10"])
    ds = load_dataset(_csv_cfg(tmp_path))
    assert ds.interactions["rating"].tolist() == [4.0, 2.0]
    assert ds.interactions["timestamp"].tolist() == [30.0, 10.0]
    _write_csv(tmp_path, ["u,1,30", "u,2,10"], header="user_id,item_id,time")
    ds = load_dataset(_csv_cfg(tmp_path))  # no `rating` / `timestamp`: implicit feedback, file order
    assert ds.interactions["rating"].tolist() == [1.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("setting", ["rating_field", "timestamp_field"])
def test_configured_field_missing_is_an_error(tmp_path, setting):
    _write_csv(tmp_path, ["u,1,4,30"])
    with pytest.raises(DataError, match=rf"r.csv: data.{setting} = 'time' is not a column; "
                                        r"columns are \['user_id', 'item_id', 'rating', 'timestamp'\]"):
        load_dataset(_csv_cfg(tmp_path, **{setting: "time"}))
    folder = write_recbole(tmp_path / "rb", "t", ["u1\t1\t5\t1"], ITEMS)
    with pytest.raises(DataError, match=rf"t.inter: data.{setting} = 'time' is not a column"):
        load_recbole(folder, "t", DataConfig(**{setting: "time"}))


@pytest.mark.parametrize("row, message", [
    ("u1\t2\tnan\t2", r"t.inter:3: column 'rating': expected a finite number, got 'nan'"),
    ("u1\t2\t5\tinf", r"t.inter:3: column 'timestamp': expected a finite number, got 'inf'"),
    ("u1\t2\t-Infinity\t2", r"t.inter:3: column 'rating': expected a finite number, got '-Infinity'"),
])
def test_non_finite_values_are_errors(tmp_path, row, message):
    folder = write_recbole(tmp_path, "t", ["u1\t1\t5\t1", row], ITEMS)
    with pytest.raises(DataError, match=message):
        load_recbole(folder, "t", DataConfig())


def test_jsonl_non_finite_timestamp(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"user_id": "u", "item_id": "x", "timestamp": Infinity}\n')
    (tmp_path / "i.jsonl").write_text('{"item_id": "x", "title": "X"}\n')
    cfg = DataConfig(dataset="d", format="jsonl", path=str(tmp_path / "r.jsonl"), items_path=str(tmp_path / "i.jsonl"))
    with pytest.raises(DataError, match=r"r.jsonl:1: column 'timestamp': expected a finite number, got inf"):
        load_dataset(cfg)


def test_utf8_bom_is_accepted(tmp_path):
    _write_csv(tmp_path, ["u,1,4,30", "u,2,2,10"], bom="\ufeff")
    ds = load_dataset(_csv_cfg(tmp_path))
    assert ds.interactions["user_id"].tolist() == ["u", "u"]
    assert ds.interactions["rating"].tolist() == [4.0, 2.0]
    (tmp_path / "r.jsonl").write_text('\ufeff{"user_id": "u", "item_id": "1", "rating": 3}\n', encoding="utf-8")
    (tmp_path / "i.jsonl").write_text('\ufeff{"item_id": "1", "title": "A"}\n', encoding="utf-8")
    ds = load_dataset(DataConfig(dataset="d", format="jsonl", path=str(tmp_path / "r.jsonl"),
                                 items_path=str(tmp_path / "i.jsonl")))
    assert ds.interactions["rating"].tolist() == [3.0]
    folder = write_recbole(tmp_path / "rb", "t", ["u1\t1\t5\t1"], ITEMS)
    inter = folder / "t.inter"
    inter.write_text("\ufeff" + inter.read_text(), encoding="utf-8")
    assert load_recbole(folder, "t", DataConfig()).interactions["rating"].tolist() == [5.0]


@pytest.mark.parametrize("lines, message", [
    (['{"user_id": 1, "item_id": "x", "rating": 4}', '{"user_id": 1, "rating": 4}'], r"r.jsonl:2: missing 'item_id'"),
    (['{"user_id": 1, "item_id": "x", "rating": 4}', '{"item_id": "y", "rating": 4}'], r"r.jsonl:2: missing 'user_id'"),
    (['{"user_id": 1, "item_id": "x", "rating": 4}', '{"user_id": 1, "item_id": "y"}'], r"r.jsonl:2: missing 'rating'"),
    (['{"user_id": 1, "item_id": "x", "rating": "five"}'], r"r.jsonl:1: column 'rating': expected a number, got 'five'"),
    (['{"user_id": 1, "item_id": "x", "rating": true}'], r"r.jsonl:1: column 'rating': expected a number, got True"),
])
def test_jsonl_bad_lines_name_file_and_line(tmp_path, lines, message):
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "i.jsonl").write_text('{"item_id": "x", "title": "X"}\n{"item_id": "y", "title": "Y"}\n')
    cfg = DataConfig(dataset="d", format="jsonl", path=str(tmp_path / "r.jsonl"), items_path=str(tmp_path / "i.jsonl"))
    with pytest.raises(DataError, match=message):
        load_dataset(cfg)


def test_exact_duplicate_rows_are_dropped_and_counted(tmp_path):
    # Three exact copies of earlier rows; the same (user, item) at another time is not an exact copy.
    _write_csv(tmp_path, ["u,1,4,10", "u,1,4,10", "u,2,3,11", "v,1,5,12", "u,1,4,10", "u,2,3,11",
                          "u,1,4,13"])
    messages: list[str] = []
    ds = load_dataset(_csv_cfg(tmp_path), log=messages.append)
    assert messages == [f"warning: dropped 3 exact duplicate interaction rows ({tmp_path / 'r.csv'})"]
    assert ds.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["u", "1", 10.0], ["u", "2", 11.0], ["v", "1", 12.0], ["u", "1", 13.0]]
    assert ds.interactions["row"].tolist() == [0, 2, 3, 6]  # original file positions
    assert ds.stats()["duplicate_rows_dropped"] == 3
    assert ds.filter(min_rating=1).stats()["duplicate_rows_dropped"] == 3
    _write_csv(tmp_path, ["u,1,4,10", "u,2,3,11"])
    messages.clear()
    assert load_dataset(_csv_cfg(tmp_path), log=messages.append).stats()["duplicate_rows_dropped"] == 0
    assert messages == []


def test_hf_dataset_folders_with_field_mapping(tmp_path):
    """data.format = "hf": datasets saved with `save_to_disk` (or data-file folders), mapped like CSV."""
    import datasets

    datasets.Dataset.from_dict({"reader": ["a", "a", "a", "b", "b", "b"], "book": ["1", "2", "3", "3", "1", "2"],
                                "stars": [5, 3, 4, 2, 5, 4], "when": [1, 2, 3, 4, 5, 6]}).save_to_disk(tmp_path / "inter")
    datasets.Dataset.from_dict({"book": ["1", "2", "3"], "title": ["Dune", "Emma", "Ulysses"],
                                "genres": [["sf"], ["novel", "romance"], []],
                                "year": [1965, 1815, 1922]}).save_to_disk(tmp_path / "items")
    cfg = DataConfig(dataset="books", format="hf", path=str(tmp_path / "inter"), items_path=str(tmp_path / "items"),
                     user_field="reader", item_field="book", rating_field="stars", timestamp_field="when",
                     item_noun="book")
    ds = load_dataset(cfg, log=lambda *_: None)
    assert (ds.n_users, len(ds.items), ds.n_interactions) == (2, 3, 6)
    assert ds.items["2"].genres == ("novel", "romance") and ds.items["3"].year == 1922
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 4.0, 2.0, 5.0, 4.0]
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "part.jsonl").write_text('{"reader": "c", "book": "1", "stars": 1, "when": 9}\n')
    files = load_dataset(DataConfig(**{**cfg.__dict__, "path": str(tmp_path / "files")}), log=lambda *_: None)
    assert files.n_interactions == 1  # a folder of data files, read by datasets.load_dataset
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: not a readable Hugging Face dataset"):
        load_dataset(DataConfig(**{**cfg.__dict__, "path": str(tmp_path / "empty")}), log=lambda *_: None)
