"""Kept exchanges and /v1/feedback against a real server: completions through the official openai client,
feedback through plain HTTP; every bad body is a 4xx with OpenAI's error object. Also the arena routes."""

from types import SimpleNamespace

import httpx
import openai
import pytest

KEY = "sk-feedback"
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def server(tiny_model, tiny_gpt2, tmp_path_factory):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.models.resolve import resolve
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.feedback import Keeper
    from chatforge.serve.server import background
    from chatforge.store import Store

    store = Store(tmp_path_factory.mktemp("store") / "chatforge.db")
    main, other = Engine(load_model(str(tiny_model))), Engine(load_model(str(tiny_gpt2)))
    ids = {str(tiny_model): store.register_model(str(tiny_model), resolve(str(tiny_model)).path),
           "base": store.register_model("base", resolve(str(tiny_gpt2)).path)}
    app = create_app(main, ServeConfig(api_key=KEY, max_tokens=8, compare="base"), keeper=Keeper(store, ids),
                     compare=other)
    with background(app) as url:
        yield SimpleNamespace(url=url, store=store, model=app.state.model_id)
    store.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_every_completion_is_kept_with_its_settings_and_usage(client, server):
    full = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=6, temperature=0)
    kept = server.store.completion(full.id)
    assert kept["answer"] == full.choices[0].message.content and kept["messages"] == HELLO
    assert kept["model"] == server.model and len(kept["fingerprint"]) == 64
    assert kept["sampling"]["max_tokens"] == 6 and kept["sampling"]["temperature"] == 0
    assert (kept["prompt_tokens"], kept["completion_tokens"]) == (full.usage.prompt_tokens,
                                                                  full.usage.completion_tokens)
    assert kept["latency_ms"] > 0 and kept["finish_reason"] == full.choices[0].finish_reason

    chunks = list(client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=6, stream=True))
    streamed = server.store.completion(chunks[0].id)  # kept before the last chunk was sent
    assert streamed["answer"] == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    follow = client.chat.completions.create(model=server.model, max_tokens=4, messages=HELLO + [
        {"role": "assistant", "content": kept["answer"]}, {"role": "user", "content": "And then?"}])
    assert server.store.completion(follow.id)["conversation_id"] == kept["conversation_id"]

    off = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=2, store=False)
    assert server.store.completion(off.id) is None  # OpenAI's `store: false` keeps nothing


def test_every_text_completion_is_kept_too(client, server, http):
    full = client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=5, temperature=0)
    kept = server.store.completion(full.id)
    assert full.id.startswith("cmpl-") and kept["source"] == "serve"
    assert kept["prompt"] == "Once upon a time" and kept["messages"] == []  # raw text: no chat template
    assert kept["answer"] == full.choices[0].text and kept["finish_reason"] == full.choices[0].finish_reason
    assert kept["model"] == server.model and len(kept["fingerprint"]) == 64
    assert kept["sampling"]["max_tokens"] == 5 and kept["sampling"]["temperature"] == 0
    assert (kept["prompt_tokens"], kept["completion_tokens"]) == (full.usage.prompt_tokens,
                                                                  full.usage.completion_tokens)
    assert kept["latency_ms"] > 0

    chunks = list(client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=4,
                                            stream=True, seed=3))
    streamed = server.store.completion(chunks[0].id)  # kept before the last chunk was sent
    assert streamed["answer"] == "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed["sampling"]["seed"] == 3

    off = client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=2,
                                    extra_body={"store": False})
    assert server.store.completion(off.id) is None

    # feedback takes text completions like chat ones; a pair must answer the same text, never a chat
    up = http.post("/v1/feedback", json={"completion_id": full.id, "rating": "up"})
    assert up.status_code == 200 and up.json()["completion_id"] == full.id
    assert http.post("/v1/feedback", json={"chosen_id": full.id, "rejected_id": streamed["id"]}).status_code == 200
    chat = client.chat.completions.create(model=server.model, max_tokens=2,
                                          messages=[{"role": "user", "content": "Once upon a time"}])
    _error(http.post("/v1/feedback", json={"chosen_id": full.id, "rejected_id": chat.id}), 400)


def test_ratings_corrections_and_pairs_are_stored_and_listed(client, server, http):
    a = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=5, temperature=1, seed=1)
    b = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=5, temperature=1, seed=2)
    up = http.post("/v1/feedback", json={"completion_id": a.id, "rating": "up", "comment": "good"})
    assert up.status_code == 200 and up.json()["kind"] == "rating" and up.json()["rating"] == "up"
    fix = http.post("/v1/feedback", json={"completion_id": b.id, "correction": "I am the Lumora assistant."})
    assert fix.status_code == 200 and fix.json()["correction"] == "I am the Lumora assistant."
    pair = http.post("/v1/feedback", json={"chosen_id": a.id, "rejected_id": b.id})
    assert pair.status_code == 200 and pair.json()["chosen_id"] == a.id
    ids = [up.json()["id"], fix.json()["id"], pair.json()["id"]]
    assert ids == sorted(ids) and len(set(ids)) == 3

    page = http.get("/v1/feedback", params={"limit": 2, "after": ids[0] - 1}).json()
    assert [r["id"] for r in page["data"]] == ids[:2] and page["has_more"] is True
    rest = http.get("/v1/feedback", params={"limit": 100, "after": page["last_id"]}).json()
    assert rest["data"][0]["id"] == ids[2] and rest["has_more"] is False
    assert server.store.feedback_record(ids[2])["rejected_id"] == b.id


def test_bad_feedback_is_a_4xx_with_an_openai_error(client, server, http):
    a = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=3)
    other = client.chat.completions.create(model=server.model, max_tokens=3,
                                           messages=[{"role": "user", "content": "Something else"}])
    before = server.store.counts()["feedback"]
    cases = [
        ({"completion_id": "chatcmpl-unknown", "rating": "up"}, 404, "completion_id"),
        ({"chosen_id": a.id, "rejected_id": other.id}, 400, "rejected_id"),  # two different prompts
        ({"chosen_id": a.id, "rejected_id": "chatcmpl-nope"}, 404, "rejected_id"),
        ({"chosen_id": a.id, "rejected_id": a.id}, 400, "rejected_id"),
        ({"completion_id": a.id, "rating": "meh"}, 422, "rating"),
        ({"completion_id": a.id, "rating": 1}, 422, "rating"),
        ({"completion_id": a.id, "correction": ""}, 400, "correction"),
        ({"completion_id": a.id, "rating": "up", "correction": "x"}, 400, "correction"),  # two kinds at once
        ({"completion_id": a.id}, 400, "rating"),  # the missing field (or correction)
        ({"completion_id": a.id, "ratting": "up"}, 422, "ratting"),  # a misspelt field is never ignored
        ({"battle_id": "battle-nope", "vote": "left"}, 404, "battle_id"),
        ({}, 400, None),
    ]
    for body, status, param in cases:
        err = _error(http.post("/v1/feedback", json=body), status)
        assert err["param"] == param, (body, err)
    _error(http.post("/v1/feedback", content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    _error(http.post("/v1/feedback", json=["a list"]), 400)
    _error(httpx.post(server.url + "/v1/feedback", json={"completion_id": a.id, "rating": "up"}), 401)
    _error(http.get("/v1/feedback", params={"limit": 0}), 422)
    assert _error(http.get("/v1/feedback", params={"after": 10**30}), 422)["param"] == "after"  # not SQLite's 500
    assert http.get("/v1/feedback", params={"after": 2**63 - 1}).json()["data"] == []
    assert server.store.counts()["feedback"] == before  # nothing was stored by the refused bodies
    assert http.get("/health").status_code == 200  # and the server keeps serving


def test_a_feedback_body_of_no_kind_says_what_is_missing_or_which_combinations_are_allowed(http):
    allowed = ('send one of {"completion_id", "rating": "up"|"down"}, {"completion_id", "correction"}, '
               '{"chosen_id", "rejected_id"} or {"battle_id", "vote"}')
    cases = [  # (body, the message's start, param: the field that is missing or that conflicts)
        ({}, "no feedback in the request: ", None),  # not "unexpected fields none"
        ({"comment": "nice"}, "no feedback in the request: ", None),
        ({"completion_id": "chatcmpl-x"}, "completion_id needs rating or correction: ", "rating"),
        ({"rating": "up"}, "rating needs completion_id: ", "completion_id"),
        ({"battle_id": "battle-x"}, "battle_id needs vote: ", "vote"),
        ({"chosen_id": "chatcmpl-x"}, "chosen_id needs rejected_id: ", "rejected_id"),
        ({"rejected_id": "chatcmpl-x"}, "rejected_id needs chosen_id: ", "chosen_id"),
        # each field valid, not together; completion_id belongs to both kinds, so it is not what conflicts
        ({"completion_id": "chatcmpl-x", "rating": "up", "correction": "Hi"},
         "rating and correction cannot be sent together (one request is one kind of feedback): ", "correction"),
        ({"chosen_id": "chatcmpl-x", "vote": "left"}, "chosen_id and vote cannot be sent together", "vote"),
        ({"chosen_id": "a", "rejected_id": "b", "battle_id": "c", "vote": "tie"},
         "chosen_id and rejected_id cannot be sent with battle_id and vote", "battle_id"),
    ]
    for body, start, param in cases:
        err = _error(http.post("/v1/feedback", json=body), 400)
        message = err["message"]
        assert message.startswith(start) and allowed in message and "unexpected" not in message, (body, message)
        assert err["param"] == param, (body, err)


def test_bad_arena_requests_are_4xx_like_the_chat_route(server, http):
    err = _error(http.post("/v1/arena", json={"messages": [{"role": "user", "content": None}]}), 422)  # was a 500
    assert err["param"] == "messages[0].content" and "must be a string" in err["message"]
    err = _error(http.post("/v1/arena", json={"messages": HELLO + [{"role": "tool", "tool_call_id": "zz",
                                                                     "content": "x"}]}), 400)
    assert err["param"] == "messages[1].tool_call_id"
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert _error(http.post("/v1/arena", json={"messages": HELLO, "tools": tools}), 400)["param"] == "tools"
    assert _error(http.post("/v1/arena", json={"messages": HELLO, "modalities": ["audio"]}), 400)["param"] == \
        "modalities"
    # the votes refer to the kept answers: "store": false cannot be honoured, so it is refused, not ignored
    before = server.store.counts()
    err = _error(http.post("/v1/arena", json={"messages": HELLO, "max_tokens": 2, "store": False}), 400)
    assert err["param"] == "store" and "the arena keeps both answers to be voted on" in err["message"]
    assert server.store.counts() == before  # nothing generated, nothing kept
    assert http.post("/v1/arena", json={"messages": HELLO, "max_tokens": 2, "store": True}).status_code == 200
    assert http.post("/v1/arena", json={"messages": HELLO, "max_tokens": 2}).status_code == 200


def test_the_arena_hides_the_models_then_reveals_them_with_the_vote(server, http):
    seen_left = set()
    for _ in range(8):
        battle = http.post("/v1/arena", json={"messages": HELLO, "max_tokens": 4, "temperature": 0})
        assert battle.status_code == 200, battle.text
        body = battle.json()
        assert body["id"].startswith("battle-") and len(body["answers"]) == 2
        assert "model" not in str(body["answers"])  # nothing names the models before the vote
        left = server.store.completion(body["answers"][0]["completion_id"])
        seen_left.add(left["model"])
    assert seen_left == {server.model, "base"}  # placed at random (8 coin tosses, 1/128 to fail by chance)
    vote = http.post("/v1/feedback", json={"battle_id": body["id"], "vote": "left"})
    assert vote.status_code == 200, vote.text
    rec = vote.json()
    assert rec["left"]["model"] == left["model"] and rec["right"]["model"] != left["model"]
    assert rec["chosen_id"] == body["answers"][0]["completion_id"]
    _error(http.post("/v1/feedback", json={"battle_id": body["id"], "vote": "right"}), 400)  # one vote per battle
    _error(http.post("/v1/feedback", json={"battle_id": body["id"], "vote": "maybe"}), 422)
    _error(http.post("/v1/arena", json={"messages": HELLO, "stream": True}), 400)
    _error(http.post("/v1/arena", json={"messages": []}), 422)
    page = http.get("/arena")
    assert page.status_code == 200 and "vote" in page.text


def test_the_page_says_whether_the_conversation_is_kept(http):
    html = http.get("/").text
    assert '<meta name="chatforge-kept" content="1">' in html and '<meta name="chatforge-arena" content="1">' in html


def test_without_a_store_nothing_is_kept_and_feedback_says_why(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.server import background

    app = create_app(Engine(load_model(str(tiny_model))))
    with background(app) as url:
        r = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2}, timeout=30)
        assert r.status_code == 200
        err = _error(httpx.post(url + "/v1/feedback", json={"completion_id": r.json()["id"], "rating": "up"},
                                timeout=30), 400)
        assert "--no-log" in err["message"] and err["code"] == "logging_disabled"
        text = httpx.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=30)
        assert text.status_code == 200 and text.json()["choices"][0]["finish_reason"] in ("stop", "length")
        assert '<meta name="chatforge-kept" content="0">' in httpx.get(url + "/", timeout=30).text
