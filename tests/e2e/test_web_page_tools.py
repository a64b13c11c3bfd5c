"""The chat page with tools, in a real headless Chromium (Playwright, the system Chromium): paste tool
definitions, ask, see the model's tool call under its answer (with the feedback controls), type the tool's
result, and get the answer that uses it; a malformed tools box is a clear message and sends nothing; a
non-streamed reply's tool calls show too. The running batch is a scripted stand-in (the model "decides" by what
the prompt holds); the server, chat template, tool parsing, store and page are real."""

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatforge.infer import Completion, Update

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
TOOLS = [{"type": "function", "function": {"name": "get_order_status", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]
LAST = "#log .msg.assistant:last-child"


def script(prompt: str) -> str:
    """What the stand-in model answers to a rendered (ChatML) prompt."""
    last_turn = prompt.rsplit("<|im_start|>assistant", 2)[-2]
    if "<|im_start|>tool\n" in last_turn:  # a tool result just came back: answer with it
        return "The order is " + last_turn.rsplit("<|im_start|>tool\n", 1)[1].split("<|im_end|>")[0].strip() + "."
    if "<tools>" in prompt:
        return 'Checking.\n<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "LM-7"}}\n</tool_call>'
    return "Hello."


class ScriptedBatch:
    """A running-batch stand-in: each sequence writes script(prompt), 5 characters per step."""

    prompts: list[str] = []  # every prompt it saw, as text

    def __init__(self, engine):
        self.engine, self.rows = engine, {}

    size = property(lambda self: len(self.rows))
    ids = property(lambda self: list(self.rows))

    def can_admit(self):
        return True

    def clear(self):
        self.rows = {}

    def admit(self, ids, prompts, params, cancelled=None):
        for i, p in zip(ids, prompts):
            text = self.engine.tokenizer.decode(p)
            ScriptedBatch.prompts.append(text)
            self.rows[i] = [script(text), 0, len(p)]
        return []

    def step(self, cancelled=None):
        out = []
        for i, row in list(self.rows.items()):
            text, pos, n = row
            row[1] += 5
            done = Completion(text, "stop", n, 1) if row[1] >= len(text) else None
            out.append(Update(i, text[pos:pos + 5], done))
            if done:
                del self.rows[i]
        return out



@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.models.resolve import resolve
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.feedback import Keeper
    from chatforge.serve.server import background
    from chatforge.store import Store

    store = Store(tmp_path_factory.mktemp("tools-store") / "chatforge.db")
    engine = Engine(load_model(str(tiny_model)))
    keeper = Keeper(store, {engine.name: store.register_model(engine.name, resolve(str(tiny_model)).path)})
    app = create_app(engine, ServeConfig(), batcher=ScriptedBatch, keeper=keeper)
    with background(app) as url:
        yield SimpleNamespace(url=url, store=store)
    store.close()



@pytest.fixture
def page(browser, server):
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(server.url + "/")
    yield page
    context.close()


def _done(page, selector: str):
    box = page.locator(selector)
    sync_api.expect(box).to_have_attribute("data-state", re.compile("^(done|length)$"), timeout=30_000)
    return box


def test_the_page_shows_a_tool_call_and_sends_its_result_back(page, server):
    page.fill("#tools", json.dumps(TOOLS))
    page.fill("#input", "Where is order LM-7?")
    page.press("#input", "Enter")
    first = _done(page, "#log .msg.assistant >> nth=0")  # (LAST would follow the newest answer)
    call = first.locator(".tool-call")
    sync_api.expect(call).to_have_count(1)
    assert call.locator(".call").text_content() == 'get_order_status({"order_id": "LM-7"})'
    assert call.text_content().startswith("calls get_order_status(")
    assert first.locator(".text").text_content() == "Checking."  # the call is not shown as content
    assert first.get_attribute("data-tool-calls") == "1"
    result = call.locator("textarea")
    sync_api.expect(result).to_be_focused()  # ready for the result, from the keyboard
    # the feedback controls work on an answer that calls a tool (thumbs up is stored)
    first.locator("button.up").click()
    sync_api.expect(first).to_have_attribute("data-feedback", re.compile(r"^\d+$"))
    assert server.store.list_feedback(limit=None)[-1]["completion_id"] == first.get_attribute("data-id")

    assert result.get_attribute("placeholder") == "result of get_order_status (Enter to send)"
    result.fill("shipped")
    result.press("Enter")
    sync_api.expect(page.locator("#log .msg.assistant")).to_have_count(2)
    second = _done(page, "#log .msg.assistant >> nth=1")
    assert page.locator("#log .msg.tool .text").text_content() == "shipped"
    assert second.locator(".text").text_content() == "The order is shipped."
    assert result.is_disabled() and page.locator("button.send-results").is_disabled()
    shots = Path(os.environ.get("CHATFORGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    (shots / "chat").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "chat" / "tool-call.png"))
    # what the model saw the second time: its own call in the assistant turn, then the result as a tool turn
    seen = ScriptedBatch.prompts[-1]
    assert seen.index('"order_id": "LM-7"') < seen.index("<|im_start|>tool\nshipped")


def test_malformed_tools_json_is_a_clear_message_and_sends_nothing(page):
    sent = len(ScriptedBatch.prompts)
    page.fill("#tools", '[{"type": "function", oops')
    page.fill("#input", "Where is order LM-7?")
    page.click("#send")
    sync_api.expect(page.locator("#tools-error")).to_contain_text("Tools: not valid JSON")
    assert page.locator("#tools").get_attribute("aria-invalid") == "true"
    assert page.input_value("#input") == "Where is order LM-7?"  # the question stays, nothing was sent
    assert page.locator("#log .msg").count() == 0 and len(ScriptedBatch.prompts) == sent
    detail = page.text_content("#tools-error").split("(", 1)[1]  # the browser's own words on the JSON
    page.click("#lang")  # the message is redrawn in Chinese, with the same detail
    sync_api.expect(page.locator("#tools-error")).to_contain_text("工具：不是有效的 JSON（" + detail.split(")")[0])
    page.click("#lang")
    page.fill("#tools", '{"type": "function"}')
    page.click("#send")
    sync_api.expect(page.locator("#tools-error")).to_contain_text("must be a JSON list of function definitions")
    page.fill("#tools", '[{"type": "function", "function": {}}]')
    page.click("#send")
    sync_api.expect(page.locator("#tools-error")).to_contain_text("item 1 is not a function definition")
    page.fill("#tools", "")  # no tools: asked as usual, the message goes away
    page.click("#send")
    _done(page, LAST)
    assert page.locator("#tools-error").text_content() == ""
    assert page.locator(LAST + " .text").text_content() == "Hello."


def test_tool_calls_of_a_non_streamed_reply_are_shown(page):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_order_status", "arguments": '{"order_id": "LM-9"}'}}
    reply = {"id": "chatcmpl-whole", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                                                                "tool_calls": [call]}}]}
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(reply)))
    page.fill("#tools", json.dumps(TOOLS))
    page.fill("#input", "Where is order LM-9?")
    page.press("#input", "Enter")
    box = _done(page, LAST)
    assert box.locator(".tool-call .call").text_content() == 'get_order_status({"order_id": "LM-9"})'
    assert box.get_attribute("data-id") == "chatcmpl-whole"
