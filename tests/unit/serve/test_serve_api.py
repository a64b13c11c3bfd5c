"""Conformance of `chatforge serve` with the official openai client, against a real HTTP server on a tiny model.

One server (uvicorn in a thread, real sockets) serves the whole module, with an API key.
"""

import json
import time
from types import SimpleNamespace

import httpx
import openai
import pytest

KEY = "sk-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def server(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(tiny_model)))
    app = create_app(engine, ServeConfig(api_key=KEY, max_tokens=16, max_body_bytes=64 * 1024))
    with background(app) as url:
        yield SimpleNamespace(url=url, engine=engine, scheduler=app.state.scheduler, model=app.state.model_id)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c


def _stream_text(stream) -> tuple[str, list]:
    chunks = list(stream)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 7}])
def test_stream_and_non_stream_give_the_same_answer(client, server, sampling):
    full = client.chat.completions.create(model=server.model, messages=HELLO, max_tokens=8, **sampling)
    text, chunks = _stream_text(client.chat.completions.create(
        model=server.model, messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True},
        **sampling))
    assert text == full.choices[0].message.content
    assert full.object == "chat.completion" and full.id.startswith("chatcmpl-") and full.model == server.model
    assert full.choices[0].message.role == "assistant" and full.choices[0].finish_reason in ("stop", "length")
    assert abs(full.created - time.time()) < 60
    # the stream: role first, one id throughout, finish_reason on the last choice chunk, then usage alone
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage
    usage = full.usage
    assert usage.prompt_tokens == len(server.engine.encode_chat(HELLO))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 8


def test_concurrent_requests_get_the_answers_they_get_alone(client, server):
    import concurrent.futures

    asks = [(f"Question number {i}: " + "why? " * i, 3 + i) for i in range(5)]

    def ask(question_and_max):
        question, max_tokens = question_and_max
        r = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": question}],
                                           temperature=0, max_tokens=max_tokens)
        return r.choices[0].message.content, r.usage.completion_tokens

    alone = [ask(a) for a in asks]
    with concurrent.futures.ThreadPoolExecutor(len(asks)) as pool:  # they share (and join) one running batch
        together = list(pool.map(ask, asks))
    assert together == alone


def test_stream_without_include_usage_has_no_usage_and_ends_with_done(http, server):
    body = {"messages": HELLO, "max_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


def test_max_tokens_and_stop(client, server):
    short = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0,
                                           max_completion_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    default = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0)
    assert default.usage.completion_tokens <= 16  # --max-tokens applies when the request sets none
    text = short.choices[0].message.content
    stopped = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0, max_tokens=3,
                                             stop=[text[:1]])
    assert stopped.choices[0].finish_reason == "stop" and stopped.choices[0].message.content == ""


def test_a_vanishing_temperature_is_greedy_rather_than_an_overflow(client, server):
    greedy = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0, max_tokens=4)
    tiny = client.chat.completions.create(model=server.model, messages=HELLO, temperature=1e-30, max_tokens=4)
    assert tiny.choices[0].message.content == greedy.choices[0].message.content


def test_penalties_and_vllm_sampling_extensions_reach_the_sampler(client, server):
    plain = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0, max_tokens=8)
    ids = server.engine.tokenizer(plain.choices[0].message.content, add_special_tokens=False)["input_ids"]
    penalized = client.chat.completions.create(model=server.model, messages=HELLO, temperature=0, max_tokens=8,
                                               frequency_penalty=2.0, presence_penalty=2.0,
                                               extra_body={"repetition_penalty": 5.0})
    if len(set(ids)) < len(ids):  # the plain answer repeats a token: the penalized one must differ
        assert penalized.choices[0].message.content != plain.choices[0].message.content
    sampled = [client.chat.completions.create(model=server.model, messages=HELLO, temperature=1.0, max_tokens=8,
                                              seed=s, extra_body={"top_k": 1, "min_p": 0.5}) for s in (1, 2)]
    # top_k=1 is greedy whatever the seed
    assert [c.choices[0].message.content for c in sampled] == [plain.choices[0].message.content] * 2


def test_message_forms_roles_and_content_parts(client, server):
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"}]
    parts = [{"role": "developer", "content": "Be brief."},
             {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"}]
    a = client.chat.completions.create(model=server.model, messages=plain, temperature=0, max_tokens=5)
    b = client.chat.completions.create(model=server.model, messages=parts, temperature=0, max_tokens=5)
    assert a.usage.prompt_tokens == b.usage.prompt_tokens == len(server.engine.encode_chat(plain))
    assert a.choices[0].message.content == b.choices[0].message.content


def test_text_completions(client, server):
    full = client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert full.object == "text_completion" and full.id.startswith("cmpl-")
    assert full.usage.prompt_tokens == len(server.engine.encode_text("Once upon a time"))
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    chunks = list(client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=6,
                                            temperature=0, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].usage == full.usage


def test_models_health_and_page(client, server, http):
    listed = client.models.list().data
    assert [m.id for m in listed] == [server.model] and listed[0].object == "model"
    assert client.models.retrieve(server.model).id == server.model
    health = httpx.get(server.url + "/health").json()  # no key needed
    assert health["status"] == "ok" and health["model"] == server.model
    cache = server.engine.prefix_cache  # how full the bounded prefix cache is (the soak benchmark reads it)
    assert health["prefix_cache"] == {"tokens": cache.stored, "capacity": cache.max_tokens}
    page = httpx.get(server.url + "/")  # the page itself holds no data; it asks for the key
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'content="{server.model}"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing fetched elsewhere


@pytest.mark.parametrize("method,path", [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                                         ("GET", "/v1/models"), ("GET", "/v1/models/x")])
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {KEY}", "Bearer", f"Bearer {KEY}x"])
def test_every_api_route_needs_the_key(server, method, path, header):
    headers = {"Authorization": header} if header else {}
    r = httpx.request(method, server.url + path, headers=headers, json={"messages": HELLO, "prompt": "x"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"


def test_openai_exception_classes(server, client):
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=server.model, messages=HELLO)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert e.value.body["param"] == "model" and e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=HELLO, n=2)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model=server.model, messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "hi " * 3000}])
    assert e.value.body["code"] == "context_length_exceeded"


LONG = "word " * 3000
BAD_REQUESTS = [  # (body: dict, or bytes sent as is), status, param
    (b"this is not json", 400, None),
    (b'{"messages": [', 400, None),
    (b"\xff\xfe\x00garbage", 400, None),
    (b"[" * 50000, 400, None),  # nesting deep enough to break the JSON parser
    (b"[1, 2]", 400, None),
    ({}, 422, "messages"),
    ({"messages": []}, 422, "messages"),
    ({"messages": "hello"}, 422, "messages"),
    ({"messages": [{"role": "user"}]}, 422, "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 422, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, 422, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 422,
     "messages[0].content[0].type"),
    ({"messages": HELLO, "max_tokens": 0}, 422, "max_tokens"),
    ({"messages": HELLO, "max_tokens": "5"}, 422, "max_tokens"),
    ({"messages": HELLO, "max_tokens": 10**9}, 400, "max_tokens"),
    ({"messages": HELLO, "max_completion_tokens": -1}, 422, "max_completion_tokens"),
    ({"messages": HELLO, "temperature": 3}, 422, "temperature"),
    ({"messages": HELLO, "temperature": "hot"}, 422, "temperature"),
    ({"messages": HELLO, "top_p": 0}, 422, "top_p"),
    ({"messages": HELLO, "stream": "yes"}, 422, "stream"),
    ({"messages": HELLO, "seed": 2**70}, 422, "seed"),  # beyond what a torch.Generator takes
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 422, "stop"),
    ({"messages": HELLO, "frequency_penalty": 2.5}, 422, "frequency_penalty"),
    ({"messages": HELLO, "presence_penalty": -3}, 422, "presence_penalty"),
    ({"messages": HELLO, "top_k": -2}, 422, "top_k"),
    ({"messages": HELLO, "min_p": 1.5}, 422, "min_p"),
    ({"messages": HELLO, "repetition_penalty": 0}, 422, "repetition_penalty"),
    ({"messages": HELLO, "n": 3}, 400, "n"),
    ({"messages": HELLO, "model": "gpt-4"}, 404, "model"),
    ({"messages": HELLO, "chat_template": "{{ messages }}"}, 400, "chat_template"),
    ({"messages": HELLO, "chat_template_kwargs": {"x": 1}}, 400, "chat_template_kwargs"),
    ({"messages": [{"role": "user", "content": LONG}]}, 400, "messages"),  # longer than the context
    ({"messages": [{"role": "user", "content": "x" * 70000}]}, 413, None),  # over the 64 KiB body limit
]


@pytest.mark.parametrize("body,status,param", BAD_REQUESTS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_REQUESTS)])
def test_bad_chat_requests_get_openai_errors_and_the_server_keeps_serving(http, body, status, param):
    if isinstance(body, bytes):
        r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["param"] == param
    assert "Traceback" not in r.text
    ok = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
    assert ok.status_code == 200


@pytest.mark.parametrize("body,status,param", [
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": ["a", "b"]}, 400, "prompt"),
    ({"prompt": 5}, 422, "prompt"),
    ({"prompt": LONG}, 400, "prompt"),
    ({}, 422, "prompt"),
])
def test_bad_completion_requests(http, body, status, param):
    r = http.post("/v1/completions", json=body)
    assert r.status_code == status and r.json()["error"]["param"] == param


def test_oversized_body_without_content_length_gets_413(http):
    def chunks():  # chunked transfer encoding: no Content-Length to check, the server must count
        for _ in range(100):
            yield b"x" * 1024

    r = http.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_a_streaming_client_that_disconnects_stops_its_generation(server, wait_for):
    sched = server.scheduler
    before = dict(sched.stats)
    body = {"messages": HELLO, "max_tokens": 2000, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            assert wait_for(lambda: sched.running == 1)
    # the connection is closed: the sequence is dropped long before its 2000 tokens
    assert wait_for(lambda: sched.running == 0, timeout=5)
    assert sched.stats["cancelled"] == before.get("cancelled", 0) + 1
    assert sched.stats["completed"] == before.get("completed", 0)


def test_a_non_streaming_client_that_gives_up_stops_its_generation(server, wait_for):
    sched = server.scheduler
    before = sched.stats["cancelled"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", headers=AUTH, timeout=0.5,
                   json={"messages": HELLO, "max_tokens": 2000, "temperature": 0})
    assert wait_for(lambda: sched.stats["cancelled"] == before + 1, timeout=5)
    assert wait_for(lambda: sched.running == 0, timeout=5)
