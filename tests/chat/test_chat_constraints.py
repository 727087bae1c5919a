"""The understanding step's readers, merging across turns, and feedback commands (no model)."""

import pytest

from llmrec.chat.constraints import Constraints, Vocabulary, merge, parse_answer, parse_rules
from llmrec.chat.feedback import parse_feedback
from llmrec.data.dataset import Item

ITEMS = [Item("1", "Toy Story", 1995, ("Animation", "Children's", "Comedy")),
         Item("2", "Back to the Future", 1985, ("Comedy", "Sci-Fi")),
         Item("3", "Alien", 1979, ("Action", "Horror", "Sci-Fi", "Thriller")),
         Item("4", "Usual Suspects, The", 1995, ("Crime", "Thriller")),
         Item("5", "Heat", 1995, ("Action", "Crime", "Thriller")),
         Item("6", "Casablanca", 1942, ("Drama", "Romance", "War")),
         Item("7", "When Harry Met Sally...", 1989, ("Comedy", "Romance"))]


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.build(ITEMS)


@pytest.mark.parametrize("text, expected", [
    ("I want a funny sci-fi movie from the eighties, like Back to the Future, but no horror",
     Constraints(("Sci-Fi", "Comedy"), ("Horror",), 1980, 1989, ("2",))),
    ("a 90s thriller", Constraints(("Thriller",), (), 1990, 1999)),
    ("romantic comedies between 1980 and 1990", Constraints(("Comedy", "Romance"), (), 1980, 1990)),
    ("something like The Usual Suspects but not Heat", Constraints(like=("4",), exclude=("5",))),
    ("no romance or horror please, action from the 1970s", Constraints(("Action",), ("Romance", "Horror"), 1970, 1979)),
    ("science fiction after 1990", Constraints(("Sci-Fi",), (), 1991, None)),
    ("I would like a drama from 1942", Constraints(("Drama",), (), 1942, 1942)),
    ("old movies before 1950", Constraints(year_max=1949)),
    ("surprise me", Constraints()),
])
def test_rules(vocab, text, expected):
    got = parse_rules(text, vocab)
    assert (set(got.genres), set(got.not_genres), got.year_min, got.year_max, got.like, got.exclude) == \
        (set(expected.genres), set(expected.not_genres), expected.year_min, expected.year_max, expected.like,
         expected.exclude)


def test_strict_answer(vocab):
    c, why = parse_answer("genres: comedy, Sci-Fi\nnot genres: Horror\nyears: 1980-1989\nlike: Back to the Future",
                          vocab)
    assert why == "" and c == Constraints(("Comedy", "Sci-Fi"), ("Horror",), 1980, 1989, ("2",))
    assert parse_answer("none", vocab) == (Constraints(), "")
    for bad, reason in [("Sure! Here are some movies.", "no colon"), ("genre: Comedy", "unknown key"),
                        ("genres: Cooking", "unknown genre"), ("years: the eighties", "bad years"),
                        ("years: 1990-1980", "out of range"), ("like: Star Wars", "unknown title"), ("", "empty"),
                        ("genres: Comedy\nI think you will like these", "no colon")]:
        got, why = parse_answer(bad, vocab)
        assert got is None and reason in why, (bad, why)
    # a title the request does not name is the worked example's, not the user's
    assert parse_answer("like: Back to the Future", vocab, request="a comedy like Toy Story")[0] is None
    assert parse_answer("like: Toy Story", vocab, request="a comedy like toy story!")[0] == Constraints(like=("1",))


def test_merge_narrows_and_accumulates():
    a = Constraints(("Comedy",), ("Horror",), 1980, 1989, ("2",), ("5",))
    b = Constraints(("Romance",), ("Comedy",), None, None, ("7",), ("3",))
    m = merge(a, b)
    assert m.genres == ("Romance",) and m.not_genres == ("Horror", "Comedy")
    assert (m.year_min, m.year_max) == (1980, 1989) and m.like == ("2", "7") and m.exclude == ("5", "3")
    assert merge(a, Constraints(year_min=1990, year_max=1999)).year_min == 1990
    assert Constraints.from_dict(m.to_dict()) == m


def test_allows(vocab):
    c = Constraints(("Comedy",), ("Romance",), 1980, 1999, exclude=("1",))
    assert [it.id for it in ITEMS if c.allows(it)] == ["2"]


@pytest.mark.parametrize("text, likes, dislikes, more, rest", [
    ("like 2", [2], [], [], ""),
    ("dislike 1 and 3", [], [1, 3], [], ""),
    ("more like 2", [], [], [2], ""),
    ("like 2 but older than 1990", [2], [], [], "older than 1990"),
    ("no 4, like #1", [1], [4], [], ""),
    ("a comedy like Toy Story", [], [], [], "a comedy like Toy Story"),
])
def test_feedback(text, likes, dislikes, more, rest):
    c = parse_feedback(text)
    assert (c.likes, c.dislikes, c.more_like, c.rest) == (likes, dislikes, more, rest)
