"""Semantic IDs: residual quantisation with faiss, unique codes of one length, files, and items that
carry their codes."""

import json

import numpy as np
import pytest

from llmrec.data.dataset import Item
from llmrec.errors import DataError
from llmrec.sid.codes import SemanticIDs, assign, normalised, quantise, token, with_codes


def clustered(seed=0, groups=4, per=30, d=8):
    """Items in `groups` tight clusters: the first level must put each cluster on one code."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, d)) * 10
    return np.concatenate([c + rng.normal(scale=0.1, size=(per, d)) for c in centres]), groups, per


def test_first_level_follows_the_clusters_and_later_levels_the_residual():
    x, groups, per = clustered()
    q = quantise(x, levels=2, codebook=groups)
    first = q[:, 0].reshape(groups, per)
    assert all(len(set(row)) == 1 for row in first) and len(set(first[:, 0])) == groups
    assert len(set(q[:, 1])) > 1  # within a cluster the residual still tells items apart
    np.testing.assert_array_equal(q, quantise(x, levels=2, codebook=groups))  # seeded


def test_codes_are_unique_of_one_length_and_round_trip(tmp_path):
    x, _, _ = clustered()
    items = [str(k) for k in range(len(x))]
    sid = assign(items, normalised(x), levels=2, codebook=4, meta={"vectors": "test"})
    assert sid.codes.shape == (len(items), 3)
    assert len({tuple(c) for c in sid.codes.tolist()}) == len(items)  # the last level makes them unique
    stats = sid.stats()
    assert stats["sizes"][-1] == stats["largest_group"] and stats["level_1"]["used"] == 4
    # items sharing the quantised levels are numbered in id order on the last level
    group = [i for i in items if tuple(sid.codes[sid.row[i]][:2]) == tuple(sid.codes[0][:2])]
    assert [int(sid.codes[sid.row[i]][-1]) for i in group] == list(range(len(group)))
    assert sid.text("0") == "".join(token(k, int(c)) for k, c in enumerate(sid.codes[0]))
    assert len(sid.tokens()) == sum(stats["sizes"]) and sid.tokens()[0] == "<a_0>"
    back = SemanticIDs.load(sid.save(tmp_path / "sid"))
    assert back.sha256 == sid.sha256 and back.text("17") == sid.text("17")
    assert json.loads((tmp_path / "sid" / "sid.json").read_text())["vectors"] == "test"
    codes = json.loads((tmp_path / "sid" / "codes.json").read_text())
    codes["0"] = [9, 9, 9]
    (tmp_path / "sid" / "codes.json").write_text(json.dumps(codes))
    with pytest.raises(DataError, match="changed after it was built"):
        SemanticIDs.load(tmp_path / "sid")
    with pytest.raises(DataError, match="no semantic IDs"):
        SemanticIDs.load(tmp_path)
    with pytest.raises(DataError, match="codebook=500 is more than the 120 items"):
        quantise(x, 1, 500)


def test_items_carry_their_codes(ml100k):
    items = sorted(ml100k.items)
    sid = SemanticIDs(items, np.array([[k % 7, k % 5, 0] for k in range(len(items))]))
    coded = with_codes(ml100k, sid)
    assert coded.items["50"].to_dict()["sid"] == sid.text("50") and coded.items["50"].title == ml100k.items["50"].title
    assert "sid" not in ml100k.items["50"].fields  # the original is left as it was
    partial = SemanticIDs(items[:10], sid.codes[:10])
    with pytest.raises(DataError, match="have no semantic ID"):
        with_codes(ml100k, partial)
    assert Item("x", "t").to_dict()["id"] == "x"
