"""`serve.retriever=generate`: /v1/recommend answers with the LLM's own beam search over the catalogue."""

from dataclasses import replace

import httpx
import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.queries import UserQuery
from llmrec.errors import ConfigError
from llmrec.service.retrieval import GenerativeRetriever
from tests.serve.conftest import ThreadServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generating(service):
    """The session's service (same model, template and catalogue) with the generate retriever."""
    from llmrec.serve.app import create_app

    gen = replace(service, retriever=GenerativeRetriever(), queue=None,
                  cfg=from_dict(type(service.cfg), apply_overrides(to_dict(service.cfg), ["serve.beams=12"])))
    with ThreadServer(create_app(gen)) as s, httpx.Client(base_url=s.url, timeout=300) as c:
        yield gen, c


def test_generate_retriever_returns_the_rankers_beam_search(generating):
    gen, client = generating
    user = "1"
    seen = set(gen.split[user].history("test"))
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["retriever"] == "generate"
    got = [x["item_id"] for x in body["items"]]
    assert len(got) == len(set(got)) == 5 and not seen & set(got) and set(got) <= set(gen.dataset.items)
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)  # log-probabilities
    # the same search, run by hand on the ranker: same items, same scores
    events = gen.split.users[user].events(gen.dataset, "test", gen.cfg.split.history_len)
    query = UserQuery(user, events, [i for i in gen.dataset.items if i not in seen])
    (ref,) = gen.ranker.generate([query], 5, 12)
    assert got == ref.candidates
    assert scores == pytest.approx(ref.scores.tolist(), abs=1e-4)
    # an explicit history is excluded from what is generated
    hist = got[:2]
    body = client.post("/v1/recommend", json={"history": hist, "k": 4}).json()
    assert len(body["items"]) == 4 and not set(hist) & {x["item_id"] for x in body["items"]}


def test_generate_retriever_needs_a_style_that_generates(serve_cfg, hf_backend):
    from llmrec.service.ranking import Service

    cfg = from_dict(type(serve_cfg), apply_overrides(to_dict(serve_cfg), [
        "serve.retriever=generate", "rank.template=letters/candidates_v1"]))
    with pytest.raises(ConfigError, match="serve.retriever=generate: letters/candidates_v1 is letters style"):
        Service.from_config(cfg, log=lambda *_: None, backend=hf_backend)
