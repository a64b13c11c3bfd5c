"""`chatforge serve --engine vllm` keeps every exchange: chatforge's front forwards each request to vLLM's server
and keeps what it answered. vLLM is not needed here: a fake OpenAI-compatible server stands in for it (the model
boundary), the official openai client talks to the front."""

import json
from types import SimpleNamespace

import httpx
import openai
import pytest

KEY = "sk-front"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]
WORDS = ["I am ", "Lumora's ", "assistant."]


def fake_vllm(seen: list):
    """An OpenAI-compatible server answering WORDS (streamed word by word), like vLLM's, recording each body."""
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    app = FastAPI()
    count = {"n": 0}

    async def answer(request: Request):
        body = await request.json()
        seen.append(body)
        count["n"] += 1
        chat = request.url.path == "/v1/chat/completions"
        cid = f"{'chatcmpl' if chat else 'cmpl'}-fake{count['n']}"
        usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        obj = "chat.completion" if chat else "text_completion"

        def choice(text, finish=None, delta=True):
            if not chat:
                return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            key = "delta" if delta else "message"
            return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": finish}

        if not body.get("stream"):
            return {"id": cid, "object": obj, "created": 1, "model": body["model"], "usage": usage,
                    "choices": [choice("".join(WORDS), "stop", delta=False)]}

        def events():
            kind = obj + (".chunk" if chat else "")
            for i, w in enumerate(WORDS):
                yield "data: " + json.dumps({"id": cid, "object": kind, "created": 1, "model": body["model"],
                                             "choices": [choice(w, "stop" if i == len(WORDS) - 1 else None)]}) + "\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({"id": cid, "object": kind, "created": 1, "model": body["model"],
                                             "choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app.add_api_route("/v1/chat/completions", answer, methods=["POST"])
    app.add_api_route("/v1/completions", answer, methods=["POST"])
    app.add_api_route("/v1/models", lambda: {"object": "list", "data": [{"id": "lumora", "object": "model"}]})
    app.add_api_route("/health", lambda: {})
    return app


@pytest.fixture(scope="module")
def front(tiny_model, tmp_path_factory):
    from chatforge.serve.feedback import Keeper
    from chatforge.serve.server import background
    from chatforge.serve.vllm import proxy_app
    from chatforge.store import Store

    seen: list = []
    store = Store(tmp_path_factory.mktemp("store") / "chatforge.db")
    keeper = Keeper(store, {"lumora": store.register_model("lumora", tiny_model)})
    with background(fake_vllm(seen)) as upstream:
        with background(proxy_app(upstream, keeper, api_key=KEY, upstream_key="sk-vllm")) as url:
            yield SimpleNamespace(url=url, store=store, seen=seen)
    store.close()


@pytest.fixture
def client(front):
    return openai.OpenAI(base_url=front.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def test_chat_answers_from_vllm_are_kept_with_settings_tokens_and_fingerprint(client, front):
    full = client.chat.completions.create(model="lumora", messages=HELLO, max_tokens=6, temperature=0.5, seed=7,
                                          metadata={"conversation_id": "conv-mine"})
    assert full.choices[0].message.content == "".join(WORDS)
    kept = front.store.completion(full.id)
    assert kept["messages"] == HELLO and kept["answer"] == "".join(WORDS) and kept["prompt"] is None
    assert kept["model"] == "lumora" and len(kept["fingerprint"]) == 64 and kept["conversation_id"] == "conv-mine"
    assert kept["sampling"] == {"max_tokens": 6, "temperature": 0.5, "seed": 7}
    assert (kept["prompt_tokens"], kept["completion_tokens"], kept["finish_reason"]) == (11, 3, "stop")
    assert kept["latency_ms"] > 0
    assert "store" not in front.seen[-1] and "metadata" not in front.seen[-1]  # the store's fields stay here

    chunks = list(client.chat.completions.create(model="lumora", messages=HELLO, stream=True))
    assert all(c.choices for c in chunks)  # the usage chunk the front asked vLLM for is not passed on
    assert front.seen[-1]["stream_options"] == {"include_usage": True}
    streamed = front.store.completion(chunks[0].id)
    assert streamed["answer"] == "".join(WORDS) and streamed["completion_tokens"] == 3

    asked = list(client.chat.completions.create(model="lumora", messages=HELLO, stream=True,
                                                stream_options={"include_usage": True}))
    assert asked[-1].usage.completion_tokens == 3  # ... unless the client asked for it


def test_text_completions_are_kept_and_store_false_or_another_model_keeps_nothing(client, front):
    text = client.completions.create(model="lumora", prompt="Once upon a time", max_tokens=3, stop=["\n"])
    kept = front.store.completion(text.id)
    assert kept["prompt"] == "Once upon a time" and kept["messages"] == [] and kept["answer"] == "".join(WORDS)
    assert kept["sampling"] == {"max_tokens": 3, "stop": ["\n"]}
    streamed = list(client.completions.create(model="lumora", prompt="Once", stream=True))
    assert front.store.completion(streamed[0].id)["answer"] == "".join(WORDS)

    before = front.store.counts()["completions"]
    client.chat.completions.create(model="lumora", messages=HELLO, store=False)
    client.completions.create(model="lumora", prompt="x", extra_body={"store": False})
    client.chat.completions.create(model="lumora-base", messages=HELLO)  # a model the store does not know
    assert front.store.counts()["completions"] == before


def test_feedback_the_key_and_a_vllm_that_is_not_up(client, front, tiny_model):
    from chatforge.serve.feedback import Keeper
    from chatforge.serve.server import background
    from chatforge.serve.vllm import proxy_app

    a = client.chat.completions.create(model="lumora", messages=HELLO)
    r = httpx.post(front.url + "/v1/feedback", json={"completion_id": a.id, "rating": "up"},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and front.store.feedback_record(r.json()["id"])["completion_id"] == a.id
    assert httpx.post(front.url + "/v1/chat/completions", json={"model": "lumora", "messages": HELLO}).status_code \
        == 401
    bad = httpx.post(front.url + "/v1/chat/completions", content=b"{no", headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    assert [m.id for m in client.models.list().data] == ["lumora"]

    with background(proxy_app("http://127.0.0.1:9", Keeper())) as url:  # nothing listens on port 9
        down = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO})
        assert down.status_code == 503 and down.json()["error"]["code"] == "upstream_unavailable"
        assert httpx.get(url + "/health").status_code == 503



FAKE_VLLM = r"""
import sys, uvicorn
from fastapi import FastAPI
if sys.argv[2] != "serve":
    sys.exit(int(sys.argv[2]))  # a vLLM that fails to start
app = FastAPI()
app.add_api_route("/health", lambda: {})
app.add_api_route("/v1/chat/completions", lambda: {
    "id": "chatcmpl-sub", "object": "chat.completion", "created": 1, "model": "lumora",
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}, "finish_reason": "stop"}]},
    methods=["POST"])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""

FRONT = r"""
import sys
from pathlib import Path
from chatforge.serve.config import ServeConfig
from chatforge.serve.server import bind
from chatforge.serve.vllm import _free_port, _serve_logged
from chatforge.store.config import LogConfig
model, db, fake, mode, portfile = sys.argv[1:6]
cfg = ServeConfig(port=0, model_id="lumora")
sock = bind("127.0.0.1", 0)
Path(portfile).write_text(str(sock.getsockname()[1]))
port = _free_port()
argv = [sys.executable, fake, str(port), mode]
sys.exit(_serve_logged(model, cfg, LogConfig(store=db), sock, argv, {}, f"http://127.0.0.1:{port}"))
"""


@pytest.mark.parametrize("mode", ["serve", "3"])
def test_the_front_runs_vllm_keeps_its_answers_and_stops_with_it(tiny_model, tmp_path, mode):
    import signal
    import subprocess
    import sys
    import time

    from chatforge.store import Store

    (tmp_path / "fake.py").write_text(FAKE_VLLM)
    (tmp_path / "front.py").write_text(FRONT)
    db, portfile = tmp_path / "chatforge.db", tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "front.py"), str(tiny_model), str(db),
                             str(tmp_path / "fake.py"), mode, str(portfile)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        if mode != "serve":  # vLLM failed: the front stops too, with vLLM's exit code
            assert proc.wait(120) == 3
            assert "vLLM exited with code 3" in proc.stderr.read()
            return
        deadline = time.monotonic() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{portfile.read_text()}"
                r = httpx.post(url + "/v1/chat/completions", json={"model": "lumora", "messages": HELLO}, timeout=10)
                if r.status_code == 200:
                    break
                assert r.status_code == 503  # until vLLM is up
            except (OSError, ValueError, httpx.TransportError):
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.3)
        assert r.json()["id"] == "chatcmpl-sub"
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the front stops, and vLLM with it
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store(db) as s:
        kept = s.completion("chatcmpl-sub")
    assert kept["answer"] == "Hi there." and kept["messages"] == HELLO and kept["completion_tokens"] == 2
