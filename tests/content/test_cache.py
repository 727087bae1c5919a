"""Item vectors are encoded once per (model, adapter, template, texts) and read back afterwards."""

import numpy as np
import pytest

from llmrec.content import cache
from llmrec.content.encoders import LMEncoder
from llmrec.content.text import item_texts, load_item_template
from llmrec.errors import TemplateError
from tests.content.helpers import WordsEncoder


@pytest.fixture(scope="module")
def items(ml100k):
    return [ml100k.items[i] for i in ("1", "2", "50", "181", "267", "1001")]


def test_item_template_renders_title_year_genres(items, tmp_path):
    texts = item_texts(load_item_template(), items, "movie")
    assert texts[0] == "Movie: Toy Story (1995).\nGenres: Animation, Children's, Comedy."
    assert texts[4] == "Movie: unkonwn.\nGenres: unknown."  # ML-100K's item 267 has no year
    bad = tmp_path / "bad_v1.j2"
    bad.write_text("{#\nstyle: item\n#}\n{{ item.plot }}")
    with pytest.raises(TemplateError, match=r"bad_v1.j2:4: .*plot"):
        item_texts(load_item_template(str(bad)), items, "movie")
    with pytest.raises(TemplateError, match="style' must be 'item'"):
        load_item_template("templates/title/next_item_v1.j2")


def test_second_run_encodes_nothing(items, tmp_path):
    template = load_item_template()
    ids, texts = [it.id for it in items], item_texts(template, items, "movie")
    enc = WordsEncoder()
    first = cache.load_or_encode(enc, template, ids, texts, tmp_path, log=lambda *_: None)
    assert enc.calls == 1 and len(list(tmp_path.glob("words-*.npz"))) == 1
    again = WordsEncoder()
    second = cache.load_or_encode(again, template, ids, texts, tmp_path, log=lambda *_: None)
    assert again.calls == 0  # read from disk
    np.testing.assert_array_equal(second["mean"], first["mean"])
    # another model, another template or other texts: encoded again, in a file of their own
    other_model = WordsEncoder(tag="-b")
    cache.load_or_encode(other_model, template, ids, texts, tmp_path, log=lambda *_: None)
    other_template = tmp_path / "short_v1.j2"
    other_template.write_text("{#\nstyle: item\n#}\n{{ item.title }}")
    t2 = load_item_template(str(other_template))
    enc2 = WordsEncoder()
    cache.load_or_encode(enc2, t2, ids, item_texts(t2, items, "movie"), tmp_path, log=lambda *_: None)
    assert other_model.calls == 1 and enc2.calls == 1 and len(list(tmp_path.glob("words-*.npz"))) == 3
    assert cache.cache_key(WordsEncoder(), template, texts)["key"] != cache.cache_key(WordsEncoder(), t2, texts)["key"]


@pytest.mark.slow
def test_lm_vectors_cached_and_independent_of_batching(items, tmp_path):
    """The real LM: mean and last-token vectors, equal whatever the batch (padding is masked), and
    a second run loads no model at all."""
    template = load_item_template()
    ids, texts = [it.id for it in items], item_texts(template, items, "movie")
    one = LMEncoder(batch_size=1)
    got = cache.load_or_encode(one, template, ids, texts, tmp_path, log=lambda *_: None)
    assert set(got) == {"mean", "last"} and got["mean"].shape == (6, 576)
    assert np.isfinite(got["mean"]).all() and not np.allclose(got["mean"], got["last"])
    batched = LMEncoder(batch_size=4).encode(texts)  # texts of several lengths share a padded batch
    for p in ("mean", "last"):
        np.testing.assert_allclose(batched[p], got[p], rtol=1e-3, atol=1e-3)
    again = LMEncoder()
    again._load = None  # a cache hit must not load the model
    np.testing.assert_array_equal(cache.load_or_encode(again, template, ids, texts, tmp_path)["last"], got["last"])
    assert again.calls == 0
    assert LMEncoder(adapter=str(tmp_path)).identity()["adapter"] != ""  # an adapter is part of the key
