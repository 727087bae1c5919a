import numpy as np
import pytest

from llmrec.baselines import TrainData
from llmrec.config import DataConfig
from llmrec.errors import DataError
from llmrec.kg import triples
from llmrec.kg.graph import KnowledgeGraph, adjacency
from tests.kg.helpers import graph, train_data


@pytest.mark.parametrize("raw, name", [
    ("film.film.directed_by", "director"), ("film.director.film", "director"),
    ("film.film.genre", "genre"), ("film.film_genre.films_in_this_genre", "genre"),
    ("film.film.rating", "content rating"), ("film.content_rating.film", "content rating"),
    ("film.film.production_companies", "production company"), ("film.production_company.films", "production company"),
    ("film.film.sequel", "sequel or prequel"), ("film.film.prequel", "sequel or prequel"),
    ("film.film.award_won", "award won"), ("starring", "starring"), ("has_author", "has author"),
])
def test_relation_names_read_as_words(raw, name):
    assert triples.relation_name(raw) == name


def test_table_with_header_names_items_by_id(tmp_path):
    path = tmp_path / "kg.csv"
    path.write_text("head,relation,tail\n1,director,George Lucas\nGeorge Lucas,director,2\n3,genre,Drama\n"
                    "Drama,subgenre_of,Art\n")
    t = triples.read(path)
    assert (len(t), t.ids_only, t.link) == (4, False, {})
    kg = KnowledgeGraph.build(t, ["1", "2", "3", "4"])
    assert kg.relations == ["director", "genre", "subgenre of"]
    assert kg.entities == ["Drama", "George Lucas"]
    assert kg.triples_dropped == 1  # Drama -> Art touches no item
    d = kg.item_entity[kg.relations.index("director")].toarray()
    assert d[:, kg.entities.index("George Lucas")].tolist() == [1, 1, 0, 0]  # both directions read item-first
    assert kg.linked_items().tolist() == [True, True, True, False]


def test_tsv_without_header(tmp_path):
    path = tmp_path / "kg.tsv"
    path.write_text("1\tdirector\tLucas\n2\tdirector\tLucas\n")
    assert triples.read(path).heads == ["1", "2"]


@pytest.mark.parametrize("body, message", [
    ("head,relation,tail\n1,director,Lucas\n2,director\n", "bad.csv:3: expected 3 comma-separated fields"),
    ("1,director,Lucas\n2,,Lucas\n", "bad.csv:2: field 'relation' is empty"),
    ("1,director,Lucas\n2,director, \n", "bad.csv:2: field 'tail' is empty"),
    ("1,director,Lucas,extra\n", "bad.csv:1: expected 3 comma-separated fields (head, relation, tail), got 4"),
])
def test_malformed_table_names_file_line_and_field(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        triples.read(path)


def test_malformed_recbole_kg_names_file_line_and_field(tmp_path):
    kg = tmp_path / "t.kg"
    kg.write_text("head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.film.actor\tm.2\nm.1\t\tm.3\n")
    with pytest.raises(DataError, match=r"t\.kg:3: field 'relation_id' is empty"):
        triples.read(kg)
    kg.write_text("head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.film.actor\n")
    with pytest.raises(DataError, match=r"t\.kg:2: expected 3 tab-separated columns"):
        triples.read(kg)
    kg.write_text("head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.film.actor\tm.2\n")
    (tmp_path / "t.link").write_text("item_id:token\tentity_id:token\n1\tm.1\n1\tm.9\n")
    with pytest.raises(DataError, match=r"t\.link:3: field 'entity_id': item '1' is linked twice"):
        triples.read(kg)


def test_missing_kg_is_named(tmp_path):
    cfg = DataConfig(dataset="t", path=str(tmp_path))
    with pytest.raises(DataError, match=f"no knowledge graph for dataset 't': {tmp_path}/t.kg not found"):
        triples.locate(cfg)


def test_adjacency_blocks():
    data = train_data(["u0"], ["a", "b"], {"u0": ["a"]}, {"u0": "b"})
    kg = graph(["a", "b"], [("a", "genre", "g"), ("a", "sequel", "b")])
    a = adjacency(data.binary, kg, kg_weight=0.5).toarray()  # nodes: u0, a, b, g
    assert a.tolist() == [[0, 1, 0, 0], [1, 0, 0.5, 0.5], [0, 0.5, 0, 0], [0, 0.5, 0, 0]]


def test_real_ml100k_kg(ml100k_split):
    data = TrainData.from_split(ml100k_split)
    t = triples.read(triples.locate(DataConfig()))
    # RecBole's ML-100K KG (KB4Rec's Freebase extract): 91,631 facts, 1,598 of the 1,682 movies linked.
    assert (len(t), len(t.link), t.ids_only) == (91631, 1598, True)
    kg = KnowledgeGraph.build(t, data.items)
    assert kg.triples_dropped == 0  # every fact touches a linked movie
    assert int(kg.linked_items().sum()) == 1598 and len(kg.items) == 1682
    # 24 Freebase relation ids: 9 stated both ways (film.film.directed_by / film.director.film, ...,
    # film.film.sequel / film.film.prequel), film.film.actor with 6 inverse film.actor.film facts, and
    # 4 one-way ones (award nomination, award won, language, country): 14 readable names.
    assert kg.relations == ["actor", "award nomination", "award won", "cinematographer", "content rating",
                            "country", "director", "genre", "language", "producer", "production company",
                            "sequel or prequel", "subject", "writer"]
    nnz = {r: b.nnz for r, b in zip(kg.relations, kg.item_entity)}
    # Facts stated both ways count once: 1,727 + 1,727 director rows are 1,727 (movie, director) pairs.
    assert (nnz["director"], nnz["genre"], nnz["actor"]) == (1727, 7184, 40153)
    assert len(kg.entities) == 33030  # non-movie entities: people, genres, awards, countries, ...
    # 114 facts join two movies (57 sequel + 57 prequel, the same pairs): 57 pairs, stored symmetrically.
    links = kg.item_links()
    assert links.nnz == 114 and (links != links.T).nnz == 0 and sum(d.nnz for d in kg.item_item) == 114
    assert np.all(kg.incidence().sum(1)[~kg.linked_items()] == 0)
