"""The chat API for real: SmolLM2 behind uvicorn on 127.0.0.1, called with httpx; sessions in SQLite."""

import asyncio
import sqlite3
import uuid

import httpx
import pytest

from tests.chat.conftest import chat_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(chat_service, tmp_path_factory):
    db = tmp_path_factory.mktemp("chat") / "chat.sqlite"
    srv, engine = chat_server(chat_service, db)
    with srv:
        yield srv, engine, db


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server[0].url, timeout=300) as c:
        yield c


def test_known_user_turns_feedback_and_session(client, server, chat_service):
    _, _, db = server
    r = client.post("/v1/chat/sessions", json={"user_id": "1"})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    t1 = client.post(f"/v1/chat/sessions/{sid}/turns", json={"text": "a comedy from the 90s, no horror"}).json()
    assert t1["turn"] == 1 and len(t1["items"]) == 4 and t1["understood_by"] in ("lm", "rules")
    items = chat_service.dataset.items
    history = set(chat_service.split.users["1"].history("test"))
    for it in t1["items"]:
        assert it["item_id"] not in history and it["reason"] and it["reason_by"] in ("lm", "facts")
        assert it["title"] in t1["reply"]
        if t1["constraints"]["genres"] == ["Comedy"]:  # what the rules read; an LM answer may read more
            assert "Comedy" in items[it["item_id"]].genres and 1990 <= items[it["item_id"]].year <= 1999
    # feedback by number in the text, and a new request in the same line
    t2 = client.post(f"/v1/chat/sessions/{sid}/turns", json={"text": "like 2 and something romantic"}).json()
    assert t2["turn"] == 2 and t2["feedback"] == {t1["items"][1]["item_id"]: "like"}
    assert not {i["item_id"] for i in t2["items"]} & {i["item_id"] for i in t1["items"]}
    # structured feedback (the page's buttons): no text needed
    t3 = client.post(f"/v1/chat/sessions/{sid}/turns",
                     json={"feedback": [{"item_id": t2["items"][0]["item_id"], "value": "dislike"}]}).json()
    assert t3["turn"] == 3 and t3["understood_by"] == "none"
    s = client.get(f"/v1/chat/sessions/{sid}").json()
    assert [t["turn"] for t in s["turns"]] == [1, 2, 3] and s["user_id"] == "1"
    assert s["liked"] == [t1["items"][1]["item_id"]] and s["disliked"] == [t2["items"][0]["item_id"]]
    assert s["turns"][0]["items"] == t1["items"] and s["turns"][1]["reply"] == t2["reply"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM turns WHERE session_id = ?", (sid,)).fetchone()[0] == 3
        assert con.execute("SELECT COUNT(*) FROM feedback WHERE session_id = ?", (sid,)).fetchone()[0] == 2


def test_anonymous_like_title(client):
    sid = client.post("/v1/chat/sessions", json={}).json()["session_id"]
    t = client.post(f"/v1/chat/sessions/{sid}/turns", json={"text": "something like Star Wars"}).json()
    assert len(t["items"]) == 4 and "50" not in [i["item_id"] for i in t["items"]]
    t2 = client.post(f"/v1/chat/sessions/{sid}/turns", json={"text": "more like 1"}).json()
    assert t2["feedback"] == {t["items"][0]["item_id"]: "like"}
    assert t["items"][0]["item_id"] in t2["constraints"]["like"]


def test_errors_name_the_field(client):
    sid = client.post("/v1/chat/sessions", json={}).json()["session_id"]
    cases = [
        ("post", "/v1/chat/sessions", {"user_id": "no-such-user"}, 404, "user_id"),
        ("post", "/v1/chat/sessions", {"user": "1"}, 422, "user"),
        ("post", "/v1/chat/sessions/nope/turns", {"text": "a comedy"}, 404, "session_id"),
        ("get", "/v1/chat/sessions/nope", None, 404, "session_id"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"text": "  "}, 422, "text"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"text": "like 3"}, 422, "text"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"text": "x" * 1001}, 413, "text"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"feedback": [{"item_id": "1", "value": "love"}]}, 422,
         "feedback[0].value"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"feedback": [{"item_id": "99999", "value": "like"}]}, 422,
         "feedback[0].item_id"),
        # strict types: never converted
        ("post", f"/v1/chat/sessions/{sid}/turns", {"text": 5}, 422, "text"),
        ("post", "/v1/chat/sessions", {"user_id": True}, 422, "user_id"),
        ("post", f"/v1/chat/sessions/{sid}/turns", {"feedback": [{"item_id": False, "value": "like"}]}, 422,
         "feedback[0].item_id"),
        ("put", f"/v1/chat/sessions/{sid}/turns", {"text": "a comedy"}, 405, "method"),
    ]
    for method, path, body, status, field in cases:
        r = client.request(method.upper(), path, json=body)
        assert (r.status_code, r.json()["field"]) == (status, field), (path, body, r.text)
        assert r.json()["error"].startswith(field + ":")


def test_unknown_session_ids_keep_no_lock(client, server):
    """Turns to random session ids are refused without leaving a lock behind; the turns of one real
    session still run one after another (numbered 1, 2, both stored) and then leave none either."""
    _, engine, db = server
    for _ in range(60):
        r = client.post(f"/v1/chat/sessions/{uuid.uuid4().hex}/turns", json={"text": "a comedy"})
        assert (r.status_code, r.json()["field"]) == (404, "session_id")
    assert engine.locks == {} and not engine._lock_users
    sid = client.post("/v1/chat/sessions", json={}).json()["session_id"]

    async def two_at_once():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=300) as ac:
            url = f"/v1/chat/sessions/{sid}/turns"
            return await asyncio.gather(ac.post(url, json={"text": "a comedy"}), ac.post(url, json={"text": "a drama"}))

    responses = asyncio.run(two_at_once())
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert sorted(r.json()["turn"] for r in responses) == [1, 2]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT turn FROM turns WHERE session_id = ? ORDER BY turn", (sid,)).fetchall() == [(1,), (2,)]
    assert engine.locks == {} and not engine._lock_users


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/chat/sessions" in r.text and 'id="cards"' in r.text
