"""Tool calling through the real server and the official openai client: tools, tool_choice, parallel_tool_calls,
message.tool_calls / finish_reason "tool_calls", streamed delta.tool_calls, malformed output, bad requests.

The engine, tokenizer, templates, HTTP layer and scheduler are real; the running batch is a scripted stand-in
that answers each prompt with a fixed text (a few characters per step), chosen by what the prompt contains,
so the model's "decisions" are deterministic. A real tiny model trained to call is in tests/unit/train.
"""

import json
from types import SimpleNamespace

import httpx
import openai
import pytest

from chatforge.infer import Completion, Update

ORDER = {"type": "function", "function": {
    "name": "get_order_status", "description": "Look up a Lumora order",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
DEVICE = {"type": "function", "function": {
    "name": "get_device_status", "description": "Status of a device in a home",
    "parameters": {"type": "object", "properties": {"device": {"type": "string"}, "home_id": {"type": "string"}},
                   "required": ["device", "home_id"]}}}
TOOLS = [ORDER, DEVICE]
ASK = [{"role": "user", "content": "Where is my order LM-1042?"}]
CALL = '{"name": "get_order_status", "arguments": {"order_id": "LM-1042"}}'
DEVICE_CALL = '{"name": "get_device_status", "arguments": {"device": "Halo", "home_id": "H7"}}'
PROMPTS: list[str] = []  # every prompt the stand-in saw, as text


def script(prompt: str) -> str:
    """What the stand-in model answers to a rendered prompt."""
    last_user = prompt.rsplit("<|im_start|>user\n", 1)[-1]
    if prompt.endswith('"arguments": '):  # a named tool_choice: the call was started for the model
        return '{"order_id": "LM-1042"}}\n</tool_call>'
    if prompt.endswith("<tool_call>\n"):  # tool_choice "required"
        return CALL + "\n</tool_call>"
    if "<|im_start|>tool\n" in prompt.rsplit("<|im_start|>assistant", 2)[-2]:  # a tool result just came back
        return "Your order LM-1042 has shipped."
    if "<tools>" not in prompt:
        return "I cannot look that up."
    if "MALFORMED" in last_user:
        return '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": '
    if "UNKNOWN" in last_user:
        return '<tool_call>\n{"name": "delete_everything", "arguments": {}}\n</tool_call>'
    if "TWO" in last_user:
        return f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n{DEVICE_CALL}\n</tool_call>"
    if "HELLO" in last_user:
        return "Hello! <tool is a word, not a call> Bye."
    return f"Let me check.\n<tool_call>\n{CALL}\n</tool_call>"


class ScriptedBatch:
    """A LiveBatch stand-in: each sequence writes script(prompt), 4 characters per step."""

    def __init__(self, engine):
        self.engine, self.rows = engine, {}

    @property
    def size(self):
        return len(self.rows)

    @property
    def ids(self):
        return list(self.rows)

    def can_admit(self):
        return True

    def clear(self):
        self.rows = {}

    def admit(self, ids, prompts, params, cancelled=None):
        for i, p in zip(ids, prompts):
            text = self.engine.tokenizer.decode(p)
            PROMPTS.append(text)
            self.rows[i] = [script(text), 0, len(p)]
        return []

    def step(self, cancelled=None):
        updates = []
        for i, row in list(self.rows.items()):
            if cancelled(i):
                del self.rows[i]
                continue
            text, pos, n = row
            row[1] = pos + 4
            done = Completion(text, "stop", n, row[1] // 4) if row[1] >= len(text) else None
            updates.append(Update(i, text[pos:pos + 4], done))
            if done:
                del self.rows[i]
        return updates


@pytest.fixture(scope="module")
def server(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(tiny_model)))
    app = create_app(engine, ServeConfig(max_tokens=64), batcher=ScriptedBatch)
    with background(app) as url:
        yield SimpleNamespace(url=url, engine=engine)


@pytest.fixture
def client(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
    global _MODEL
    _MODEL = server.engine.name  # the one model the server serves
    return c


_MODEL = ""


def _ask(client, messages=ASK, **kw):
    return client.chat.completions.create(model=_MODEL, messages=messages, tools=TOOLS, **kw)


def test_a_call_comes_back_as_message_tool_calls(client):
    r = _ask(client)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (c,) = choice.message.tool_calls
    assert c.type == "function" and c.id.startswith("call_") and c.function.name == "get_order_status"
    assert json.loads(c.function.arguments) == {"order_id": "LM-1042"}
    assert "<tools>" in PROMPTS[-1] and '"get_device_status"' in PROMPTS[-1]  # definitions reach the prompt


def test_streamed_calls_are_assembled_by_the_openai_client(client):
    with client.chat.completions.stream(model=_MODEL, messages=ASK, tools=TOOLS) as stream:
        content = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert content == choice.message.content == "Let me check."  # nothing of the call leaked as content
    assert choice.finish_reason == "tool_calls"
    (c,) = choice.message.tool_calls
    assert c.function.name == "get_order_status" and json.loads(c.function.arguments) == {"order_id": "LM-1042"}
    # and by hand, the way any client joins chunks: by index
    chunks = list(client.chat.completions.create(model=_MODEL, messages=ASK, tools=TOOLS, stream=True,
                                                 extra_body={"tool_choice": "auto"}))
    parts = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert {p.index for p in parts} == {0} and parts[0].id and parts[0].function.name == "get_order_status"
    assert json.loads("".join(p.function.arguments or "" for p in parts)) == {"order_id": "LM-1042"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_round_trip_call_result_answer(client):
    first = _ask(client).choices[0].message
    messages = ASK + [first.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": '{"status": "shipped"}'}]
    r = _ask(client, messages)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == "Your order LM-1042 has shipped."
    prompt = PROMPTS[-1]  # the call and its result are in the prompt, in the trained format
    assert f"<tool_call>\n{CALL}\n</tool_call><|im_end|>" in prompt
    assert '<|im_start|>tool\n{"status": "shipped"}<|im_end|>' in prompt
    streamed = "".join(c.choices[0].delta.content or "" for c in _ask(client, messages, stream=True)
                       if c.choices)
    assert streamed == "Your order LM-1042 has shipped."


def test_results_of_parallel_calls_are_accepted_in_later_turns_too(client):
    """Every tool message answers one of the calls before it (the check of its tool_call_id passes)."""
    two = [{"role": "user", "content": "TWO things please"}]
    first = _ask(client, two).choices[0].message
    a, b = (c.id for c in first.tool_calls)
    messages = two + [first.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": a, "content": '{"status": "shipped"}'},
                      {"role": "tool", "tool_call_id": b, "content": '{"status": "on"}'}]
    r = _ask(client, messages)
    assert r.choices[0].message.content == "Your order LM-1042 has shipped."
    later = _ask(client, messages + [r.choices[0].message.model_dump(exclude_none=True)] + ASK)
    assert later.choices[0].finish_reason == "tool_calls"  # the next turn: a new call, the old ones still valid


def test_tool_choice_none_required_and_named(client):
    r = _ask(client, tool_choice="none")
    assert r.choices[0].message.content == "I cannot look that up." and not r.choices[0].message.tool_calls
    assert "<tools>" not in PROMPTS[-1]
    r = _ask(client, [{"role": "user", "content": "HELLO"}], tool_choice="required")
    assert PROMPTS[-1].endswith("<|im_start|>assistant\n<tool_call>\n")  # the model must start a call
    assert r.choices[0].message.tool_calls[0].function.name == "get_order_status"
    named = {"type": "function", "function": {"name": "get_order_status"}}
    for stream in (False, True):
        if stream:
            with client.chat.completions.stream(model=_MODEL, messages=ASK, tools=TOOLS, tool_choice=named) as s:
                r = s.get_final_completion()
        else:
            r = _ask(client, tool_choice=named)
        assert PROMPTS[-1].endswith('<tool_call>\n{"name": "get_order_status", "arguments": ')
        (c,) = r.choices[0].message.tool_calls
        assert json.loads(c.function.arguments) == {"order_id": "LM-1042"} and not r.choices[0].message.content


def test_parallel_calls_and_parallel_tool_calls_false(client):
    two = [{"role": "user", "content": "TWO things please"}]
    calls = _ask(client, two).choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_order_status", "get_device_status"]
    assert len({c.id for c in calls}) == 2
    with client.chat.completions.stream(model=_MODEL, messages=two, tools=TOOLS) as s:
        assert [c.function.name for c in s.get_final_completion().choices[0].message.tool_calls] == \
            ["get_order_status", "get_device_status"]
    one = _ask(client, two, parallel_tool_calls=False).choices[0].message.tool_calls
    assert [c.function.name for c in one] == ["get_order_status"]


@pytest.mark.parametrize("ask, text", [
    ("MALFORMED call", '<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": '),
    ("UNKNOWN function", '<tool_call>\n{"name": "delete_everything", "arguments": {}}\n</tool_call>'),
    ("HELLO", "Hello! <tool is a word, not a call> Bye."),
])
def test_what_is_not_a_valid_call_is_plain_content(client, ask, text):
    messages = [{"role": "user", "content": ask}]
    r = _ask(client, messages)
    assert r.choices[0].message.content == text and not r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "stop"
    streamed = list(_ask(client, messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in streamed)


BAD = [  # (extra body fields, status, param)
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, 400, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, 400, "tools[0].type"),
    ({"tools": [ORDER, ORDER]}, 400, "tools[1].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}, 400,
     "tools[0].function.parameters"),
    ({"tools": "get_order_status"}, 422, "tools"),
    ({"tools": []}, 400, "tools"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, 400, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400, "tool_choice"),
    ({"tool_choice": "required"}, 400, "tool_choice"),
    ({"functions": [ORDER["function"]]}, 400, "functions"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, 422, "parallel_tool_calls"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "get_order_status", "arguments": "{oops"}}]}], "tools": TOOLS}, 400,
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 422, "messages[0].tool_call_id"),
    ({"messages": ASK + [{"role": "tool", "tool_call_id": "zz", "content": "x"}]}, 400, "messages[1].tool_call_id"),
    ({"messages": ASK + [{"role": "tool", "tool_call_id": "c", "content": "x"},  # a result before its call
                         {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                             "name": "get_order_status", "arguments": "{}"}}]}]}, 400, "messages[1].tool_call_id"),
    ({"messages": [{"role": "user"}]}, 422, "messages[0].content"),
]


@pytest.mark.parametrize("extra, status, param", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_tool_requests_are_openai_errors(server, extra, status, param):
    body = {"messages": ASK, "max_tokens": 8} | extra
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"
    assert httpx.post(server.url + "/v1/chat/completions", json={"messages": ASK}, timeout=30).status_code == 200
