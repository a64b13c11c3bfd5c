"""Feedback on the chat page and the arena, driven in a real Chromium (Playwright for Python, the system
Chromium via executable_path) against a real server with a store: thumbs, edit, regenerate + pick the better
one, and an arena vote. Each step is checked in the store itself, not only on the page. Waits use locators
(the page's Content-Security-Policy forbids the string evaluation that wait_for_function needs)."""

import re
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
LAST = "#log .msg.assistant:last-child"



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

    store = Store(tmp_path_factory.mktemp("page-store") / "chatforge.db")
    ids = {str(tiny_model): store.register_model(str(tiny_model), resolve(str(tiny_model)).path),
           "base": store.register_model("base", resolve(str(tiny_gpt2)).path)}
    app = create_app(Engine(load_model(str(tiny_model))), ServeConfig(compare="base"), keeper=Keeper(store, ids),
                     compare=Engine(load_model(str(tiny_gpt2))))
    with background(app) as url:
        yield SimpleNamespace(url=url, store=store, model=app.state.model_id)
    store.close()



@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#max-tokens", "6")
    page.locator("#temperature").fill("1")  # sampled answers: a random tiny model is rarely silent then
    yield page
    context.close()


def _ask(page, question: str):
    page.fill("#input", question)
    page.click("#send")
    return _wait_done(page, LAST)


def _wait_done(page, selector: str):
    box = page.locator(selector)
    sync_api.expect(box).to_have_attribute("data-state", re.compile("^(done|length)$"), timeout=30_000)
    return box


def _feedback(server, completion_id: str) -> list[dict]:
    return [f for f in server.store.list_feedback(limit=None)
            if completion_id in (f["completion_id"], f["chosen_id"], f["rejected_id"])]


def test_thumbs_edit_regenerate_and_better_of_two_are_stored(page, server):
    assert "kept on the server" in page.text_content("#kept")
    _ask(page, "What is Lumora Home?")
    first = page.locator("#log .msg.assistant").first  # (LAST would follow the newest answer)
    cid = first.get_attribute("data-id")
    kept = server.store.completion(cid)
    assert kept["answer"] == first.locator(".text").text_content()

    first.locator("button.up").click()  # thumbs up
    sync_api.expect(first).to_have_attribute("data-feedback", re.compile(r"^\d+$"))
    assert [(f["kind"], f["rating"]) for f in _feedback(server, cid)] == [("rating", "up")]
    first.locator("button.down").click()  # changing one's mind is a second record (export reports it)
    sync_api.expect(first.locator("button.down")).to_have_attribute("aria-pressed", "true")

    first.locator("button.edit").click()  # edit: the answer it should have given
    first.locator(".editor textarea").fill("Lumora Home is a smart lamp.")
    first.locator("button.save").click()
    sync_api.expect(first.locator(".text")).to_have_text("Lumora Home is a smart lamp.")
    sync_api.expect(first).to_have_attribute("data-corrected", "1")
    corrections = [f for f in _feedback(server, cid) if f["kind"] == "correction"]
    assert [f["correction"] for f in corrections] == ["Lumora Home is a smart lamp."]

    first.locator("button.regenerate").click()  # regenerate keeps the earlier answer
    sync_api.expect(page.locator("#log .msg.assistant")).to_have_count(2)
    second = _wait_done(page, "#log .msg.assistant:nth-of-type(3)")
    new_id = second.get_attribute("data-id")
    assert new_id and new_id != cid and page.locator("#log .msg.assistant").count() == 2
    again = server.store.completion(new_id)
    assert again["messages"] == kept["messages"] and again["conversation_id"] == kept["conversation_id"]

    second.locator("button.better").click()  # this one is better than the first
    sync_api.expect(second).to_have_attribute("data-better", "yes")
    pairs = [f for f in _feedback(server, new_id) if f["kind"] == "pair"]
    assert [(f["chosen_id"], f["rejected_id"]) for f in pairs] == [(new_id, cid)]

    assert first.locator("button.regenerate").is_disabled()  # only the newest answer can be regenerated
    follow = _ask(page, "And its warranty?")  # the conversation goes on from the preferred answer
    turn = server.store.completion(follow.get_attribute("data-id"))
    assert turn["conversation_id"] == kept["conversation_id"]
    assert turn["messages"][-2] == {"role": "assistant", "content": again["answer"]}


def test_a_conversation_the_user_does_not_keep_is_not_stored(page, server):
    page.uncheck("#keep")
    assert "not kept" in page.text_content("#kept")
    box = _ask(page, "Forget this one.")
    assert server.store.completion(box.get_attribute("data-id")) is None
    assert box.locator(".actions").count() == 0  # no feedback buttons on what is not kept


def test_arena_vote_reveals_the_names_and_is_stored(browser, server):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(server.url + "/arena")
        page.fill("#question", "Which lamp is best?")
        page.fill("#max-tokens", "4")
        page.click("#ask")
        sync_api.expect(page.locator("body")).to_have_attribute("data-state", "answered", timeout=30_000)
        assert page.text_content("#left .name") == page.text_content("#right .name") == ""  # hidden
        left_text = page.text_content("#left .text")
        page.click("#vote-right")
        sync_api.expect(page.locator("body")).to_have_attribute("data-state", "voted")
        vote = server.store.list_feedback(limit=None)[-1]
        assert vote["kind"] == "vote" and vote["vote"] == "right"
        assert page.text_content("#left .name") == "· " + vote["left"]["model"]
        assert page.text_content("#right .name") == "· " + vote["right"]["model"]
        assert {vote["left"]["model"], vote["right"]["model"]} == {server.model, "base"}
        assert server.store.completion(vote["left"]["completion_id"])["answer"] == left_text
        assert vote["chosen_id"] == vote["right"]["completion_id"]
        assert page.is_disabled("#vote-left")  # one vote per battle
    finally:
        context.close()
