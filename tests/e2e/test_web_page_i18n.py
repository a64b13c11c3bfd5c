"""The chat page and the arena in English and Simplified Chinese, in a real headless Chromium (Playwright, the
system Chromium): ?lang=zh shows the Chinese catalog, the browser's language picks the default, the header's
switch changes the language in place (the conversation stays), and the run's system prompt is shown unchanged
in both languages. The running batch is the scripted stand-in of test_web_page_tools."""

import re
from types import SimpleNamespace

import pytest
from test_web_page_tools import ScriptedBatch

from chatforge.serve.app import page_catalogs

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
SYSTEM = "\n你是 Lumora 的客服助手。Answer <b>briefly</b> & \"politely\" {model} __MODEL_ID__"
EN, ZH = page_catalogs()["en"], page_catalogs()["zh"]


@pytest.fixture(scope="module")
def server(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(tiny_model)))  # the arena's second model: the same weights, another id
    app = create_app(engine, ServeConfig(system=SYSTEM, compare="other"), batcher=ScriptedBatch, compare=engine)
    with background(app) as url:
        yield SimpleNamespace(url=url)



@pytest.fixture
def open_page(browser, server):
    contexts, errors = [], []

    def open_(path: str, locale: str = "en-US"):
        contexts.append(browser.new_context(locale=locale))
        page = contexts[-1].new_page()
        page.on("pageerror", lambda e: errors.append(f"{path}: {e}"))
        page.on("console", lambda m: m.type == "error" and errors.append(f"{path}: {m.text}"))
        page.goto(server.url + path)
        return page

    yield open_
    for c in contexts:
        c.close()
    assert errors == []  # no script error, no resource the page's Content-Security-Policy refused


def _texts(page) -> dict[str, str]:
    """Every catalog-driven text on the page: {key: what is shown}."""
    out = {}
    for el in page.locator("[data-i18n]").all():
        out[el.get_attribute("data-i18n")] = el.text_content()
    return out


def test_chat_page_in_chinese_with_lang_zh_and_english_by_default(open_page):
    zh = open_page("/?lang=zh")
    sync_api.expect(zh.locator("#send")).to_have_text("发送")
    assert zh.locator("html").get_attribute("lang") == "zh-CN"
    assert zh.text_content("label[for=system]") == "系统提示词" and zh.text_content("#lang") == "English"
    assert zh.get_attribute("#input", "placeholder") == ZH["chat.input_placeholder"]
    shown = _texts(zh)
    assert shown and all(shown[k] == ZH[k] for k in shown)
    body = zh.inner_text("body")
    assert not [EN[k] for k in EN if " " in EN[k] and EN[k] != ZH[k] and EN[k] in body]  # no English phrase left
    assert zh.input_value("#system") == SYSTEM  # the run's system prompt, unchanged

    en = open_page("/")
    sync_api.expect(en.locator("#send")).to_have_text("Send")
    assert en.locator("html").get_attribute("lang") == "en"
    assert en.text_content("label[for=system]") == "System prompt" and en.text_content("#lang") == "中文"
    assert all(v == EN[k] for k, v in _texts(en).items())
    assert en.input_value("#system") == SYSTEM
    assert not re.search(r"[\u4e00-\u9fff]", en.inner_text("body").replace(en.text_content("#lang"), ""))

    browser_zh = open_page("/", locale="zh-CN")  # no ?lang: the browser's language decides
    sync_api.expect(browser_zh.locator("#send")).to_have_text("发送")
    sync_api.expect(open_page("/?lang=en", locale="zh-CN").locator("#send")).to_have_text("Send")


def test_the_switch_changes_the_language_in_place_and_keeps_the_conversation(open_page):
    page = open_page("/?lang=zh")
    page.fill("#input", "你好")
    page.press("#input", "Enter")
    answer = page.locator("#log .msg.assistant")
    sync_api.expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    assert page.text_content("#log .msg.user .role") == "用户" and answer.locator(".role").text_content() == "助手"
    page.click("#lang")
    sync_api.expect(page.locator("#send")).to_have_text("Send")
    assert answer.locator(".role").text_content() == "assistant"  # drawn texts switch too
    assert page.locator("#log .msg").count() == 2 and answer.locator(".text").text_content() == "Hello."
    assert page.url.endswith("?lang=en") and page.input_value("#system") == SYSTEM
    assert page.get_attribute("#arena-link", "href") == "/arena?lang=en"


def test_arena_in_chinese_and_english(open_page):
    zh = open_page("/arena?lang=zh")
    sync_api.expect(zh.locator("#ask")).to_have_text("同时提问")
    assert zh.text_content("h1") == "chatforge 盲测擂台" and zh.text_content("#vote-tie") == "平局"
    assert zh.get_attribute("#question", "placeholder") == ZH["arena.question_placeholder"]
    assert all(v == ZH[k] for k, v in _texts(zh).items())
    assert zh.get_attribute("#chat-link", "href") == "/?lang=zh"
    en = open_page("/arena")
    sync_api.expect(en.locator("#ask")).to_have_text("Ask both")
    assert all(v == EN[k] for k, v in _texts(en).items())
    en.click("#lang")
    sync_api.expect(en.locator("#vote-both_bad")).to_have_text("都不好")


def test_the_arena_inside_another_page_has_no_link_to_that_pages_root(browser, server):
    context = browser.new_context()
    try:
        page = context.new_page()  # as in the studio's Chat tab, where "/" is the studio, not the chat page
        page.set_content(f'<iframe src="{server.url}/arena?lang=zh" width="900" height="600"></iframe>')
        arena = page.frame_locator("iframe")
        sync_api.expect(arena.locator("#ask")).to_have_text("同时提问")
        sync_api.expect(arena.locator("#chat-link")).to_be_hidden()
    finally:
        context.close()
