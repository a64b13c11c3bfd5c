"""Malformed and abusive HTTP requests against a real server (tiny model): each a 4xx with OpenAI's error
object, the server alive after every one, limits (body, messages, prompt tokens, body time) as options.
(test_serve_api.py has the first set of bad requests: wrong JSON, types, ranges; these are the abusive ones.)"""

import json
import socket
import time
from types import SimpleNamespace

import httpx
import pytest

HELLO = [{"role": "user", "content": "Hello"}]
LIMITS = dict(max_body_bytes=1 << 20, max_messages=16, max_prompt_tokens=200, body_timeout=1.0, max_tokens=4)


@pytest.fixture(scope="module")
def server(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(tiny_model)))
    app = create_app(engine, ServeConfig(**LIMITS))
    with background(app) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield SimpleNamespace(url=url, host=host, port=int(port), engine=engine)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _alive(http):
    assert http.get("/health").status_code == 200
    r = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 1})
    assert r.status_code == 200, r.text


def _is_openai_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in r.text
    return error


MANY = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(17)]
ABUSIVE = [  # (route, body: dict or raw bytes, status, param)
    ("chat", {"messages": HELLO, "n": 10**6}, 400, "n"),
    ("chat", {"messages": HELLO, "n": -1}, 400, "n"),
    ("chat", {"messages": HELLO, "n": "2"}, 422, "n"),
    ("chat", {"messages": HELLO, "max_tokens": -5}, 422, "max_tokens"),
    ("chat", {"messages": HELLO, "max_tokens": 10**30}, 400, "max_tokens"),
    ("chat", {"messages": HELLO, "max_tokens": 1.5}, 422, "max_tokens"),
    ("chat", {"messages": HELLO, "max_completion_tokens": 10**12}, 400, "max_completion_tokens"),  # the one sent
    ("chat", {"messages": HELLO, "top_p": 1e-300}, 200, None),  # 0 in float32: the sampler kept no token (500)
    ("chat", {"messages": HELLO, "repetition_penalty": 1e-300}, 422, "repetition_penalty"),  # logits -> inf (500)
    ("chat", {"messages": HELLO, "n": None, "stream": None, "max_tokens": 1}, 200, None),  # OpenAI's null = default
    ("chat", {"messages": HELLO, "min_tokens": 5}, 400, "min_tokens"),  # vLLM's extensions that are not served
    ("chat", {"messages": HELLO, "ignore_eos": True}, 400, "ignore_eos"),
    ("chat", {"messages": HELLO, "stop_token_ids": [2]}, 400, "stop_token_ids"),
    ("chat", {"messages": HELLO, "guided_json": {"type": "object"}}, 400, "guided_json"),
    ("chat", {"messages": HELLO, "ignore_eos": False, "min_tokens": 0}, 200, None),  # their no-op values
    ("chat", {"messages": HELLO, "temperature": float("inf")}, 422, "temperature"),  # Infinity, as sloppy JSON
    ("chat", {"messages": HELLO, "top_p": -1}, 422, "top_p"),
    ("chat", {"messages": HELLO, "stop": 5}, 422, "stop"),
    ("chat", {"messages": HELLO, "stop": ["x" * 10]}, 200, None),  # fine: a control that the route works
    ("chat", {"messages": HELLO, "logit_bias": {"50256": 100}}, 400, "logit_bias"),
    ("chat", {"messages": HELLO, "logit_bias": "nonsense"}, 400, "logit_bias"),
    ("chat", {"messages": HELLO, "logprobs": True}, 400, "logprobs"),
    ("chat", {"messages": HELLO, "top_logprobs": 5}, 400, "top_logprobs"),
    ("chat", {"messages": HELLO, "response_format": {"type": "json_object"}}, 400, "response_format"),
    ("chat", {"messages": HELLO, "modalities": ["audio"]}, 400, "modalities"),
    ("chat", {"messages": HELLO, "modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, 400, "modalities"),
    ("chat", {"messages": HELLO, "modalities": ["text"]}, 200, None),  # OpenAI's default: a no-op
    ("chat", {"messages": HELLO, "audio": {"voice": "alloy", "format": "wav"}}, 400, "audio"),
    ("chat", {"messages": HELLO, "web_search_options": {}}, 400, "web_search_options"),  # {} = search on
    ("chat", {"messages": HELLO, "reasoning_effort": "high"}, 400, "reasoning_effort"),
    ("chat", {"messages": HELLO, "verbosity": "low"}, 400, "verbosity"),
    ("chat", {"messages": HELLO, "user": "u1", "service_tier": "auto", "prediction": {"type": "content",
     "content": "Hi"}, "prompt_cache_key": "k", "safety_identifier": "s"}, 200, None),  # the answer is the same
    ("chat", b'{"messages": [{"role": "user", "content": "Hello"}], "temperature": NaN}', 422, "temperature"),
    ("chat", {"messages": HELLO, "frequency_penalty": 9}, 422, "frequency_penalty"),
    ("chat", {"messages": HELLO, "presence_penalty": "high"}, 422, "presence_penalty"),
    ("chat", {"messages": HELLO, "chat_template": "{% for x in range(10**9) %}{% endfor %}"}, 400, "chat_template"),
    ("chat", {"messages": HELLO, "chat_template_kwargs": {"enable_thinking": True}}, 400, "chat_template_kwargs"),
    ("chat", {"messages": [{"role": "root", "content": "x"}]}, 422, "messages[0].role"),
    ("chat", {"messages": [{"role": None, "content": "x"}]}, 422, "messages[0].role"),
    ("chat", {"messages": [{"role": "user", "content": None}]}, 422, "messages[0].content"),
    ("chat", {"messages": [{"role": "user", "content": {"text": "x"}}]}, 422, "messages[0].content"),
    ("chat", {"messages": [HELLO]}, 422, "messages[0]"),
    ("chat", {"messages": MANY}, 400, "messages"),  # over --max-messages
    ("chat", {"messages": [{"role": "user", "content": "word " * 400}]}, 400, "messages"),  # > --max-prompt-tokens
    ("chat", {"messages": HELLO, "model": "x\r\nX-Injected: yes"}, 404, "model"),
    ("chat", {"messages": HELLO, "model": ["a"]}, 422, "model"),
    ("chat", {"messages": HELLO, "stream": True, "stream_options": {"include_usage": "yes"}}, 422,
     "stream_options.include_usage"),
    ("chat", b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', 400, None),  # invalid UTF-8 in a string
    ("chat", b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "messages[0].content"),  # lone surrogate
    ("chat", b'{"messages": [{"role": "user", "content": "Hello"}], "stop": "\\ud800"}', 400, "stop"),  # was kept
    ("chat", b'{"messages": [{"role": "user", "content": "Hello"}], "tools": [{"type": "function", "function": '
             b'{"name": "f", "description": "\\udfff"}}]}', 400, "tools[0].function.description"),  # was a 500
    ("chat", b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 1}', 200, None),  # a pair
    ("completions", b'{"prompt": "Hello", "stop": ["\\ud800"]}', 400, "stop[0]"),
    ("chat", b'{"messages": ' + b'{"a": ' * 30000 + b"1" + b"}" * 30000 + b"}", 400, None),  # deep objects
    ("chat", b'{"messages": [], "messages": "dup"}', 422, "messages"),
    ("chat", b"\x00" * 100, 400, None),
    ("chat", b"", 400, None),
    ("chat", b'"just a string"', 400, None),
    ("chat", json.dumps({"messages": HELLO, "x": "y" * (11 << 20)}).encode(), 413, None),  # 11 MB body
    ("completions", {"prompt": "hi", "echo": True}, 400, "echo"),
    ("completions", {"prompt": "hi", "best_of": 3}, 400, "best_of"),
    ("completions", {"prompt": "hi", "suffix": "end"}, 400, "suffix"),
    ("completions", {"prompt": [1, 2, 3]}, 422, "prompt[0]"),
    ("completions", {"prompt": "word " * 400}, 400, "prompt"),
]


def test_enough_abusive_requests():
    assert len(ABUSIVE) >= 30


@pytest.mark.parametrize("route,body,status,param", ABUSIVE, ids=[f"{i}-{a[0]}-{a[2]}" for i, a in enumerate(ABUSIVE)])
def test_abusive_request_gets_openai_error_and_server_keeps_serving(http, route, body, status, param):
    path = "/v1/chat/completions" if route == "chat" else "/v1/completions"
    if isinstance(body, bytes):
        r = http.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        try:
            content = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            content = json.dumps(body).encode()  # Infinity: what a sloppy client sends
        r = http.post(path, content=content, headers={"Content-Type": "application/json"})
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        error = _is_openai_error(r, status)
        assert error["param"] == param, error
        assert "X-Injected" not in r.headers and "x-injected" not in {k.lower() for k in r.headers}
    _alive(http)


@pytest.mark.parametrize("body, says", [
    (b'{"messages": [{"role": "user", "content": "Hello"}], "temperature": NaN}', "temperature: Input should be "
     "a finite number"),  # not "less than or equal to 2": NaN is in no range
    (b'{"messages": [{"role": "user", "content": "Hello"}], "top_p": -Infinity}', "top_p: Input should be a "
     "finite number"),
    (b'{"messages": [{"role": "user", "content": null}]}', "messages[0].content: must be a string or a list of "
     "text parts (null)"),  # not "Field required": the field is there
    (b'{"messages": [{"role": "user"}]}', "messages[0].content: must be a string or a list of text parts "
     "(missing)"),
    (b'{"messages": [{"role": "user", "content": "Hello"}], "web_search_options": {}}', "web_search_options is not "
     "supported by this server (it would change the answer): leave it out"),
    (b'{"messages": [{"role": "user", "content": "Hello"}], "modalities": ["audio"]}', 'modalities is not supported '
     'by this server (it would change the answer): leave it out or send ["text"]'),
])
def test_error_messages_say_what_is_wrong(http, body, says):
    r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["error"]["message"] == says, r.text


def test_slowloris_body_is_cut_off_and_others_are_served(server, http):
    """A client that sends its body a byte at a time gets 408 after --body-timeout; meanwhile others are served."""
    body = json.dumps({"messages": HELLO}).encode()
    sock = socket.create_connection((server.host, server.port))
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode())
        t0 = time.monotonic()
        sock.settimeout(0.25)
        reply = b""
        for byte in body:
            _alive(http)  # the slow client holds nobody up
            try:
                sock.sendall(bytes([byte]))
                reply += sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if reply:
                break
        sock.settimeout(5)
        while b"\r\n\r\n" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - t0 < LIMITS["body_timeout"] + 5
    finally:
        sock.close()
    _alive(http)


def test_a_client_that_leaves_while_sending_its_body_is_no_server_error(server, http, caplog):
    """ClientDisconnect while the body is read: nobody to answer, and nothing to log as an internal error."""
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"messages\"")
    sock.close()
    time.sleep(0.5)
    _alive(http)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


def test_limits_are_options_with_safe_defaults():
    from chatforge.serve.config import ServeConfig

    cfg = ServeConfig()
    assert cfg.max_body_bytes <= 4 << 20 and 0 < cfg.max_messages <= 1024 and 0 < cfg.body_timeout <= 120
    assert cfg.max_prompt_tokens is None  # default: the model's context
