"""The HTTP API for real: SmolLM2 behind uvicorn on 127.0.0.1, called with httpx.

Served scores must be the batch job's: the same `LLMRanker` on the same query, and the same row
as `llmrec rank` writes for a user of the prepared candidate file.
"""

import asyncio

import httpx
import numpy as np
import pytest

from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.candidates import CandidateSet, candidate_path
from llmrec.data.dataset import Interaction
from llmrec.data.queries import UserQuery
from llmrec.eval.runs import read_ranks
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lists(serve_cfg):
    """The prepared sampled-20 test candidate lists, first users."""
    return CandidateSet.load(candidate_path(serve_cfg.out_dir, "sampled-20.test")).lists[:8]


@pytest.fixture(scope="module")
def reference(serve_cfg, service, hf_backend, tokenizer):
    """An `LLMRanker` built by hand, scoring one query per call."""
    ranker = LLMRanker(load_template(serve_cfg.rank.template), hf_backend, tokenizer, service.dataset,
                       serve_cfg.rank.scoring, serve_cfg.rank.max_prompt_tokens, serve_cfg.rank.seed)

    def score(user_id, history_ids, candidates):
        events = [Interaction(service.dataset.items[i], float("nan"), float("nan")) for i in history_ids]
        (s,) = ranker.score([UserQuery(user_id, events[-serve_cfg.split.history_len:], list(candidates))])
        return s.scores

    return score


def history_ids(service, user_id, n=12):
    """The user's last `n` items before the test item (the prompt shows the last split.history_len = 5)."""
    return list(service.split[user_id].history("test", n))


def test_health_names_what_is_served(client, service, serve_cfg):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "smollm2-135m-instruct" and h["adapter"] == ""
    assert h["template"] == serve_cfg.rank.template and h["template_sha256"] == service.template.sha256
    assert (h["backend"], h["scoring"], h["retriever"], h["max_batch"]) == ("hf", "sum", "pop", 4)
    assert h["dataset"] == service.split.dataset_hash and h["items"] == 1682
    assert h["queue_depth"] == 0 and h["in_flight"] == 0


def test_rank_scores_equal_llmranker(client, service, lists, reference):
    c = lists[0]
    hist = history_ids(service, c.user_id)
    r = client.post("/v1/rank", json={"user_id": c.user_id, "history": hist, "candidates": list(c.candidates)})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = reference(c.user_id, hist, c.candidates)
    assert np.array_equal(np.array(body["scores"]), expected)  # one query alone: the very same call
    assert body["ranking"] == [c.candidates[k] for k in np.argsort(-expected, kind="stable")]
    assert body["history_used"] == 5 and body["dropped_history"] == 0 and body["prompt_tokens"] > 0
    # ids as integers and history entries as objects are the same request
    as_objects = {"user_id": int(c.user_id), "candidates": [int(x) for x in c.candidates],
                  "history": [{"item_id": i} for i in hist]}
    assert client.post("/v1/rank", json=as_objects).json()["scores"] == body["scores"]


def test_rank_by_user_id_equals_the_batch_job_row(client, serve_cfg, lists, tmp_path):
    """`llmrec rank` on the prepared candidates and /v1/rank with only user_id and candidates agree: to the
    6 decimals ranks.jsonl keeps when both score one user per call (rank.batch_users=1, a request alone)."""
    from llmrec.recipes import rank

    cfg = from_dict(type(serve_cfg), apply_overrides(to_dict(serve_cfg), ["rank.users=2", "rank.batch_users=1",
                                                                  f"rank.run_dir={tmp_path}"]))
    rank.run(cfg, log=lambda *_: None)
    rows = {r["user_id"]: r for r in read_ranks(tmp_path)}
    for c in lists[:2]:
        body = client.post("/v1/rank", json={"user_id": c.user_id, "candidates": list(c.candidates)}).json()
        row = rows[c.user_id]
        served = dict(zip(c.candidates, body["scores"]))
        assert body["history_used"] == 5
        np.testing.assert_allclose([served[i] for i in row["candidates"]], row["scores"], rtol=0, atol=5e-7)
        assert body["ranking"] == row["candidates"]


def test_concurrent_requests_are_batched_each_with_its_own_scores(server, service, lists, reference):
    before = dict(service.queue.batch_sizes)
    payloads = [{"user_id": c.user_id, "history": history_ids(service, c.user_id), "candidates": list(c.candidates)}
                for c in lists[:6]]

    async def fire():
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as ac:
            return await asyncio.gather(*(ac.post("/v1/rank", json=p) for p in payloads))

    responses = asyncio.run(fire())
    after = service.queue.batch_sizes
    new = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    assert sum(size * n for size, n in new.items()) == 6  # every query scored once
    assert max(new) > 1 and max(new) <= 4  # concurrent queries shared a ranker call, within serve.max_batch
    for p, r in zip(payloads, responses):
        assert r.status_code == 200, r.text
        # batched with other users (padded rows): the solo scores within fp32 noise (README: 5e-5)
        np.testing.assert_allclose(r.json()["scores"], reference(p["user_id"], p["history"], p["candidates"]),
                                   rtol=0, atol=1e-4)


def test_recommend_reranks_the_retrievers_list_without_history_items(client, service):
    user = "1"
    seen = set(service.split[user].history("test"))
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert body["retriever"] == "pop" and len(items) == 5
    pop_top = [i for i, _ in service.retriever.retrieve(user, sorted(seen), 8)]
    assert {x["item_id"] for x in items} <= set(pop_top) and not seen & {x["item_id"] for x in items}
    scores = [x["score"] for x in items]
    assert scores == sorted(scores, reverse=True)
    assert items[0]["title"] == service.dataset.items[items[0]["item_id"]].title
    # the LLM's scores are /v1/rank's scores of the retrieved list
    ranked = client.post("/v1/rank", json={"user_id": user, "candidates": pop_top}).json()
    assert [x["item_id"] for x in items] == ranked["ranking"][:5]
    # an explicit history: its items are excluded, the retriever list is computed from it
    hist = pop_top[:3]
    body = client.post("/v1/recommend", json={"history": hist, "k": 8}).json()
    assert len(body["items"]) == 8 and not set(hist) & {x["item_id"] for x in body["items"]}


@pytest.mark.parametrize("payload, status, field, words", [
    ({"history": ["1"], "candidates": ["1", "99999"]}, 422, "candidates[1]", "unknown item id '99999'"),
    ({"history": ["2", "nope"], "candidates": ["1"]}, 422, "history[1]", "unknown item id 'nope'"),
    ({"history": ["1"], "candidates": []}, 422, "candidates", "is empty"),
    ({"history": ["1"], "candidates": ["1", "2", "1"]}, 422, "candidates[2]", "listed twice"),
    ({"history": ["1"], "candidates": [str(i) for i in range(1, 32)]}, 413, "candidates",
     "31 items; at most serve.max_candidates = 30"),
    ({"history": [str(i) for i in range(1, 42)], "candidates": ["1"]}, 413, "history",
     "41 items; at most serve.max_history = 40"),
    ({"history": [], "candidates": ["1"]}, 422, "history", "is empty"),
    ({"candidates": ["1"]}, 422, "history", "send a history, or a user_id"),
    ({"user_id": "no-such-user", "candidates": ["1"]}, 404, "user_id", "unknown user 'no-such-user'"),
    ({"history": ["1"], "candidates": "1,2"}, 422, "candidates", "valid list"),
    ({"history": ["1"], "candidates": [1.5]}, 422, "candidates[0]", "valid string"),
    ({"history": [{"item_id": "1", "stars": 5}], "candidates": ["1"]}, 422, "history[0].stars", "Extra inputs"),
    ({"history": ["1"], "candidates": ["1"], "candidate": ["2"]}, 422, "candidate", "Extra inputs"),
    ({"history": ["1"]}, 422, "candidates", "Field required"),
    ([1, 2], 422, "body", "valid dictionary"),
    # a finite timestamp must still name a date (1e12 is in milliseconds): refused, not a 500
    ({"history": ["1", {"item_id": "2", "timestamp": 1e12}], "candidates": ["1"]}, 422, "history[1].timestamp",
     "1e+12 is outside the dates a timestamp can name"),
    ({"history": [{"item_id": "2", "timestamp": -1e15}], "candidates": ["1"]}, 422, "history[0].timestamp",
     "-1e+15 is outside the dates"),
    # strict types: never converted
    ({"history": [{"item_id": "2", "rating": "5"}], "candidates": ["1"]}, 422, "history[0].rating",
     "valid number, got '5'"),
    ({"history": [{"item_id": "2", "timestamp": "881250949"}], "candidates": ["1"]}, 422, "history[0].timestamp",
     "valid number"),
    ({"history": [True], "candidates": ["1"]}, 422, "history[0]", "valid string, got True"),
    ({"history": ["1"], "candidates": [False]}, 422, "candidates[0]", "valid string"),
])
def test_rank_errors_name_the_field(client, payload, status, field, words):
    r = client.post("/v1/rank", json=payload)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and body["error"].startswith(f"{field}: ") and words in body["error"], body


def test_a_timestamp_in_seconds_and_an_integer_rating_are_fine(client):
    history = [{"item_id": "2", "rating": 5, "timestamp": 881250949}, {"item_id": "7", "rating": 3.5}]
    r = client.post("/v1/rank", json={"history": history, "candidates": ["1", "50"]})
    assert r.status_code == 200 and sorted(r.json()["ranking"]) == ["1", "50"], r.text


@pytest.mark.parametrize("k, words", [(True, "valid integer, got True"), ("3", "valid integer, got '3'"),
                                      (3.0, "valid integer, got 3.0"), (0, "greater than or equal to 1")])
def test_recommend_k_is_strictly_an_integer(client, k, words):
    r = client.post("/v1/recommend", json={"user_id": "1", "k": k})
    body = r.json()
    assert (r.status_code, body["field"]) == (422, "k") and words in body["error"], body


def test_default_error_bodies_are_one_line(client):
    """Starlette's refusals, which FastAPI answers with {"detail": ...}, in the one-line form."""
    for r, status, field in [(client.get("/v1/nope"), 404, "path"), (client.get("/v1/rank"), 405, "method"),
                             (client.post("/v1/rank", content=b'{"candidates": ["\xff"]}',
                                          headers={"content-type": "application/json"}), 400, "body")]:
        assert r.status_code == status and set(r.json()) == {"error", "field"} and r.json()["field"] == field, r.text


def test_a_foreign_host_header_is_refused(client):
    """DNS rebinding: a page whose name resolves to 127.0.0.1 sends that name as Host."""
    for path in ("/health", "/v1/nope"):
        r = client.get(path, headers={"host": "evil.example"})
        assert r.status_code == 400 and r.json()["field"] == "Host", r.text
        assert r.json()["error"].startswith("Host: 'evil.example' is not this server's address")
    r = client.post("/v1/rank", json={"history": ["1"], "candidates": ["1"]}, headers={"host": "evil.example:80"})
    assert r.status_code == 400 and r.json()["field"] == "Host"
    assert client.get("/health", headers={"host": "localhost"}).json()["status"] == "ok"
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_recommend_errors_name_the_field(client):
    r = client.post("/v1/recommend", json={"user_id": "1", "k": 9})
    assert (r.status_code, r.json()["field"]) == (422, "k") and "at most serve.retrieve = 8" in r.json()["error"]
    r = client.post("/v1/recommend", json={"user_id": "1", "k": 0})
    assert (r.status_code, r.json()["field"]) == (422, "k")
    r = client.post("/v1/recommend", json={"history": ["1", "zzz"]})
    assert (r.status_code, r.json()["field"]) == (422, "history[1]")


def test_malformed_and_oversized_bodies(client):
    r = client.post("/v1/rank", content=b'{"history": ["1"], "candidates": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body" and "invalid JSON" in r.json()["error"]
    big = b'{"history": ["1"], "candidates": ["1"], "user_id": "' + b"x" * 5000 + b'"}'
    r = client.post("/v1/rank", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "serve.max_body_bytes = 4000" in r.json()["error"]

    def chunks():  # no Content-Length: counted while read
        yield b'{"history": ["1"], "candidates": ["1"], "user_id": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = client.post("/v1/rank", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"
