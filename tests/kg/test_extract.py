import json
import os
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.data.dataset import Item
from llmrec.errors import DataError, TemplateError
from llmrec.kg import triples
from llmrec.kg.extract import DROP_REASONS, RELATIONS, extract, parse, write_triples
from llmrec.kg.extract_eval import by_metadata, pairwise
from llmrec.kg.graph import KnowledgeGraph
from llmrec.models.generate import Generator
from llmrec.prompts.render import load_template as load_kg_template
from tests.kg.helpers import graph
from tests.kg.test_explain import tiny_prepared  # noqa: F401 - the prepared tiny dataset with a KG

GOLDEN = Path(__file__).parents[1] / "golden"

PROMPT = """Facts about movies, one per line, each as "relation: value".

Movie: Amelie (2001)
director: Jean-Pierre Jeunet
genre: Comedy

Movie: Heat (1995)
Genres: Action, Crime"""

ANSWER = f"""director: Michael Mann
Director:   michael mann
- actor: Al Pacino
budget: 60 million
actor Robert De Niro
writer:
year: 95
decade: '90s
genre: Comedy
Movie: Heat (1995)
Genres: Action, Crime
country: {"United States " * 10}
language: English

Movie: Casino (1995)
director: Martin Scorsese
"""


def test_parser_keeps_well_formed_facts_and_counts_each_drop():
    p = parse(ANSWER, PROMPT)
    assert p.facts == [("director", "Michael Mann"), ("actor", "Al Pacino"), ("decade", "1990s"),
                       ("genre", "Comedy"), ("language", "English")]
    # 13 lines up to the first blank line (Casino comes after it and is never read)
    assert p.lines == 13 and p.lines == len(p.facts) + sum(p.dropped.values())
    assert dict(p.dropped) == {"duplicate": 1, "unknown_relation": 1, "missing_colon": 1, "empty_entity": 1,
                               "bad_value": 1, "prompt_echo": 2, "overlong": 1}
    assert set(p.dropped) <= set(DROP_REASONS)
    assert p.example_copies == 1  # "genre: Comedy" is a line of the worked example: kept, counted


def test_parser_values_and_truncation():
    p = parse("year: 1995\nyear: 1066\ndecade: 1990\ndecade: 70s\nactor: 42\ncountry: USA\nactor: Al Pa", "",
              finished=False)
    assert p.facts == [("year", "1995"), ("decade", "1970s"), ("country", "USA")]
    assert dict(p.dropped) == {"bad_value": 3, "truncated": 1}  # 1066, 1990, 42; the cut last line
    assert parse("actor: Al Pa", "", finished=True).facts == [("actor", "Al Pa")]
    assert parse("actor: Al Pacino\n\nactor: Rob", "", finished=False).facts == [("actor", "Al Pacino")]
    assert parse("", "").lines == 0 and parse("\n\n\n", "").facts == []


def test_precision_and_recall_by_hand():
    items = {"1": Item("1", "Heat", 1995, ("Action", "Crime")),
             "2": Item("2", "Babe", 1995, ("Children's", "Comedy", "Drama")),
             "3": Item("3", "Nothing", None, ("unknown",))}
    facts = {"1": [("genre", "action"), ("genre", "Drama"), ("year", "1995"), ("decade", "1990s"),
                   ("director", "Michael Mann")],
             "2": [("genre", "children"), ("genre", "Comedy"), ("year", "1994")],
             "3": []}
    rows = {r["relation"]: r for r in by_metadata(facts, items)}
    # genre: extracted {1 action, 1 drama, 2 children's, 2 comedy}; true {1 action, 1 crime, 2 children's,
    # 2 comedy, 2 drama} ("unknown" is no truth): 3 correct
    assert (rows["genre"]["facts"], rows["genre"]["correct"]) == (4, 3)
    assert rows["genre"]["precision"] == pytest.approx(3 / 4) and rows["genre"]["recall"] == pytest.approx(3 / 5)
    assert (rows["year"]["precision"], rows["year"]["recall"], rows["year"]["items"]) == (0.5, 0.5, 2)
    assert (rows["decade"]["precision"], rows["decade"]["recall"]) == (1.0, 0.5)
    assert rows["director"]["facts"] == 1 and rows["director"]["precision"] is None


def test_pairwise_agreement_by_hand():
    kg = graph(["a", "b", "c", "d"], [("a", "director", "m.x"), ("b", "director", "m.x"), ("c", "director", "m.y"),
                                      ("d", "director", "m.y")])
    facts = {"a": [("director", "George Lucas")], "b": [("director", "george  lucas")],
             "c": [("director", "George Lucas")], "d": []}  # d: no LM fact, left out
    (row,) = pairwise(facts, kg)
    # pairs among a, b, c: LM joins ab, ac, bc; the KG joins ab only
    assert (row["items"], row["pairs"], row["lm_pairs"], row["kg_pairs"], row["agree"]) == (3, 3, 3, 1, 1)
    assert row["precision"] == pytest.approx(1 / 3) and row["recall"] == 1.0
    assert row["base_rate"] == pytest.approx(1 / 3)


def test_triple_file_round_trip(tmp_path):
    path = write_triples(tmp_path / "x.csv", [("1", "director", "Lucas, George"), ("2", "director", "Lucas, George")])
    t = triples.read(path)
    assert (t.heads, t.relations, t.tails) == (["1", "2"], ["director"] * 2, ["Lucas, George"] * 2)
    kg = KnowledgeGraph.build(t, ["1", "2", "3"])
    assert kg.relations == ["director"] and kg.item_entity[0].sum() == 2
    with pytest.raises(DataError, match="no triples"):
        triples.read(write_triples(tmp_path / "empty.csv", []))


ITEM = Item("1", "Toy Story", 1995, ("Animation", "Children's", "Comedy"))
PATHS = [{"watched": "Star Wars", "kind": "entity", "relation": "producer", "entity": "", "users": 0},
         {"watched": "Heat", "kind": "entity", "relation": "director", "entity": "Michael Mann", "users": 0},
         {"watched": "Fargo", "kind": "co-watched", "relation": "co-watched", "entity": "", "users": 61},
         {"watched": "Return of the Jedi", "kind": "link", "relation": "sequel or prequel", "entity": "", "users": 0}]


@pytest.mark.parametrize("name", ["kg/extract_v1", "kg/extract_title_v1", "kg/explain_v1"])
def test_golden_render(name):
    """Regenerate with UPDATE_GOLDEN=1 after an intended template change, and review the diff."""
    style = "kg-explain" if "explain" in name else "kg-extract"
    t = load_kg_template(name, style)
    text = t.render(item=ITEM.to_dict(), item_noun="movie", relations=list(RELATIONS), paths=PATHS)
    golden = GOLDEN / (name.replace("/", "__") + ".txt")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_templates_are_sandboxed_and_checked(tmp_path):
    t = load_kg_template("kg/extract_v1", "kg-extract")
    payload = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    hostile = Item("9", payload, 1995, (payload,)).to_dict()
    text = t.render(item=hostile, item_noun="movie", relations=list(RELATIONS))
    assert f"Movie: {payload} (1995)\nGenres: {payload}" in text  # data is text, never evaluated
    p = tmp_path / "evil_v1.j2"
    p.write_text("{#\nstyle: kg-extract\n#}\n" + payload + "\n")
    with pytest.raises(TemplateError, match=r"evil_v1.j2:4: unsafe access refused"):
        load_kg_template(str(p), "kg-extract").render(item={}, item_noun="movie", relations=[])
    with pytest.raises(TemplateError, match=r"header 'style' must be 'kg-explain' here; got 'kg-extract'"):
        load_kg_template("kg/extract_v1", "kg-explain")
    with pytest.raises(TemplateError, match=r"kg-extract template 'kg/nope_v1' not found.*kg/extract_title_v1"):
        load_kg_template("kg/nope_v1", "kg-extract")


@pytest.mark.slow
def test_real_generation_left_padded_batches_match_one_by_one(hf_backend, tokenizer):
    items = [ITEM, Item("50", "Star Wars", 1977, ("Action", "Sci-Fi")), Item("100", "Fargo", 1996, ("Crime",))]
    t = load_kg_template("kg/extract_v1", "kg-extract")
    batched = extract(Generator(hf_backend, tokenizer, batch_size=3), t, items, max_new_tokens=20, progress="")
    single = extract(Generator(hf_backend, tokenizer, batch_size=1), t, items, max_new_tokens=20, progress="")
    assert [r["text"] for r in batched.raw] == [r["text"] for r in single.raw]
    assert batched.lines == batched.kept + sum(batched.dropped.values())
    assert all(r["new_tokens"] <= 20 for r in batched.raw)


@pytest.mark.slow
def test_cli_kg_extract_writes_a_loadable_triple_file(tiny_prepared, tmp_path, capsys):  # noqa: F811
    folder = tiny_prepared.parent / "data"
    out = tmp_path / "kg" / "facts.csv"
    assert main(["kg-extract", "--items", "2", "--seed", "1", "--max-new-tokens", "24", "--out", str(out),
                 f"data.path={folder}", 'data.dataset="tiny"', f"out_dir={tiny_prepared}", "model.device=cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_name("facts.csv.eval.json").read_text())
    raw = [json.loads(x) for x in out.with_name("facts.csv.raw.jsonl").read_text().splitlines()]
    assert report["items"] == len(raw) == 2 and report["max_new_tokens"] == 24
    assert report["lines"] == sum(r["lines"] for r in raw) == report["kept"] + sum(report["dropped"].values())
    assert f"wrote {out} ({report['kept']} triples)" in printed and "| genre |" in printed
    assert [r["relation"] for r in report["relations"]] == ["genre", "year", "decade", "director", "writer",
                                                            "producer", "actor", "country", "language"]
    assert {r["relation"] for r in report["pairwise"]} <= {"genre", "director", "producer"}  # the tiny KG's
    if report["kept"]:
        t = triples.read(out)
        assert len(t) == report["kept"] and set(t.heads) <= {r["item_id"] for r in raw}
        assert set(t.relations) <= set(RELATIONS)
    else:
        with pytest.raises(DataError, match="no triples"):
            triples.read(out)


def test_kg_extract_help_and_bad_flags(capsys):
    with pytest.raises(SystemExit):
        main(["kg-extract", "--help"])
    text = capsys.readouterr().out
    assert "--items" in text and "--adapter" in text and "prompt_echo" in text and "OUT.eval.json" in text
    assert main(["kg-extract", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens: must be >= 1; got 0" in capsys.readouterr().err
    assert main(["kg-extract", "-t", "kg/explain_v1"]) == 2
    assert "header 'style' must be 'kg-extract' here" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_explain_verbalize(tiny_prepared, capsys):  # noqa: F811
    capsys.readouterr()
    assert main(["explain", "--user", "1", "--item", "3", f"out_dir={tiny_prepared}", "baseline.kg-path.negatives=2",
                 "--verbalize", "--max-new-tokens", "16", "model.device=cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "entities are shown by id: this knowledge graph has no entity names"
    assert out[-1].startswith("in words (smollm2-135m-instruct): ") and len(out[-1]) > len("in words (x): ") + 10
