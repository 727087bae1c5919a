"""The understanding answer's grammar: every text it allows is an answer `parse_answer` accepts,
off-format text is refused, and the real model decoded under it reads every simulated request."""

import asyncio

import numpy as np
import pytest
import xgrammar

from llmrec.chat import evaluate
from llmrec.chat.constraints import Vocabulary, parse_answer
from llmrec.chat.grammar import understanding_grammar
from llmrec.models.generate import _compiled

pytestmark = pytest.mark.slow  # the real tokenizer and ML-100K

REQUEST = "Something like Toy Story or Heat, from 1994 on, but no horror"


@pytest.fixture(scope="module")
def vocab(ml100k):
    return Vocabulary.build(ml100k.items.values())


@pytest.fixture(scope="module")
def years(ml100k):
    return sorted({it.year for it in ml100k.items.values() if it.year})


def matcher(request, vocab, years, tokenizer):
    return xgrammar.GrammarMatcher(_compiled(understanding_grammar(request, vocab, years), tokenizer, len(tokenizer)))


def accepts(m, text) -> bool:
    return m.accept_string(text) and m.is_completed()


def test_the_grammar_holds_the_requests_titles_and_years(vocab, years):
    g = understanding_grammar(REQUEST, vocab, years)
    assert '"toy story"' in g and '"heat"' in g and '"like: " titles' in g
    assert '"1994-1998"' in g and '"1922-1994"' in g and '"1990-1999"' in g and '"1920-1929"' in g
    plain = understanding_grammar("a funny movie please", vocab, years)
    assert "title" not in plain and "like: " not in plain and '"1994-1998"' not in plain


def test_off_format_answers_are_refused(vocab, years, tokenizer):
    ok = ("genres: Comedy, Sci-Fi\nyears: 1990-1999", "like: toy story\nnot genres: Horror", "none",
          "years: 1994-1998")
    for text in ok:
        assert accepts(matcher(REQUEST, vocab, years, tokenizer), text), text
        assert parse_answer(text, vocab, REQUEST)[0] is not None
    bad = ("genres: Comedy, Space Opera", "like: jumanji", "years: 1994-1990", "genre: Comedy", "Genres: Comedy",
           "genres: Comedy\n\nnone", "none\ngenres: Comedy", "years: 1995-1996")
    for text in bad:
        assert not accepts(matcher(REQUEST, vocab, years, tokenizer), text), text


def test_every_answer_the_grammar_allows_parses(vocab, years, tokenizer):
    """Random walks through the grammar, one allowed token at a time, end in answers that parse."""
    rng = np.random.default_rng(0)
    stops = set(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer)).stop_token_ids)
    kinds = set()
    for _ in range(40):
        m = matcher(REQUEST, vocab, years, tokenizer)
        mask = xgrammar.allocate_token_bitmask(1, len(tokenizer))
        ids = []
        for _ in range(80):
            m.fill_next_token_bitmask(mask)
            bits = np.unpackbits(mask.numpy().view(np.uint8), bitorder="little")[:len(tokenizer)]
            allowed = np.flatnonzero(bits)
            ends = [t for t in allowed if t in stops]
            token = ends[0] if ends and rng.random() < 0.3 else int(rng.choice([t for t in allowed if t not in stops]
                                                                              or ends))
            if token in stops:
                break
            assert m.accept_token(token)
            ids.append(token)
        else:
            continue  # a long walk: its complete lines are kept by the engine, checked elsewhere
        text = tokenizer.decode(ids)
        parsed, why = parse_answer(text, vocab, REQUEST)
        assert parsed is not None, (text, why)
        kinds |= {line.split(":")[0] for line in text.splitlines()}
    assert {"genres", "not genres", "years", "like", "not"} <= kinds


def test_the_model_under_the_grammar_reads_every_request(chat_service):
    """Without the grammar SmolLM2 parses none of these requests (`chat/understand_v1`: chatter, or
    the worked example copied); under it, with `chat/understand_v2`, every answer parses."""
    from dataclasses import replace

    from llmrec.chat.engine import ChatEngine
    from llmrec.config import ChatConfig

    engine = ChatEngine.from_service(chat_service, log=lambda *_: None, db=":memory:")
    s = engine.settings
    assert (s.understand, s.understand_grammar, s.understand_template) == ("lm", True, "chat/understand_v2")
    assert ChatConfig().understand == "rules"  # the default: SmolLM2's parsed readings are poor (docs/chat.md)
    sims, _ = evaluate.sim_users(engine, 4)
    texts = evaluate.utterances(sims, "movie", 2)
    understood = asyncio.run(evaluate.understand_all(engine, texts))
    pr = evaluate.parse_rate(understood, engine)
    assert pr["failures"] == {} and pr["parsed"] == len(texts) == pr["requests"]
    assert all(u.by == "lm" and u.lm_answer.strip() for u in understood.values())
    free = replace(chat_service, cfg=replace(chat_service.cfg, chat=replace(
        chat_service.cfg.chat, understand_grammar=False, understand_template="chat/understand_v1")))
    plain = ChatEngine.from_service(free, log=lambda *_: None, db=":memory:")
    loose = evaluate.parse_rate(asyncio.run(evaluate.understand_all(plain, texts)), plain)
    assert loose["parsed"] < len(texts)
