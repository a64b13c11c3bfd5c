"""The chat page and the arena take every text from one message catalog per language
(serve/static/i18n-en.json, i18n-zh.json): the catalogs have the same keys, every key the pages use exists (and
every key is used), and no visible text is left in the HTML or written by the scripts outside the catalog."""

import json
import re
from html.parser import HTMLParser
from importlib import resources

import pytest

from chatforge.serve.app import _page, page_catalogs

PAGES = ("index.html", "arena.html")
KEY = re.compile(r"[a-z][a-z_]*(\.[a-z0-9_]+)+")
PLACEHOLDER = re.compile(r"__[A-Z_]+__")
TEXT_ATTRS = ("placeholder", "title", "aria-label", "alt", "value")


def _static(name: str) -> str:
    return resources.files("chatforge.serve").joinpath("static", name).read_text(encoding="utf-8")


class _Page(HTMLParser):
    """The page's visible text nodes, its text attributes, its data-i18n* keys and its scripts and styles."""

    def __init__(self):
        super().__init__()
        self.texts, self.attrs, self.keys, self.scripts, self.styles = [], [], [], [], []
        self._in = []

    def handle_starttag(self, tag, attrs):
        self._in.append(tag)
        for name, value in attrs:
            if name == "data-i18n" or name.startswith("data-i18n-"):
                self.keys.append(value)
            elif name in TEXT_ATTRS and value and not (tag == "input" and name == "value"):
                self.attrs.append((tag, name, value))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._in.pop()

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        elif tag in self._in:  # tags closed implicitly
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag):]

    def handle_data(self, data):
        where = self._in[-1] if self._in else ""
        if where == "script":
            self.scripts.append(data)
        elif where == "style":
            self.styles.append(data)
        elif data.strip():
            self.texts.append(data.strip())


def _parse(name: str) -> _Page:
    p = _Page()
    p.feed(_static(name))
    return p


def _string_literals(js: str) -> list[str]:
    """The JavaScript's string literals ("...", '...', `...`), comments left out."""
    js = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", js)
    return [m.group(2) for m in re.finditer(r"([\"'`])((?:\\.|(?!\1).)*)\1", js)]


def test_both_catalogs_have_exactly_the_same_keys_and_no_empty_text():
    catalogs = page_catalogs()
    assert set(catalogs) == {"en", "zh"}
    assert set(catalogs["en"]) == set(catalogs["zh"])
    for lang, catalog in catalogs.items():
        assert all(isinstance(v, str) and v.strip() for v in catalog.values()), lang
        for key, text in catalog.items():  # the same {placeholders} in both languages
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", catalogs["en"][key])), key


def test_the_chinese_catalog_is_chinese():
    catalogs = page_catalogs()
    same = [k for k in catalogs["en"] if catalogs["en"][k] == catalogs["zh"][k]]
    assert set(same) <= {"chat.title", "chat.brand", "chat.tools_placeholder"}  # brand and code only
    plain = [k for k, v in catalogs["zh"].items() if not re.search(r"[\u4e00-\u9fff]", v)]
    assert set(plain) == set(same) | {"lang.switch"}  # the switch names the other language: "English"


@pytest.mark.parametrize("name", PAGES)
def test_every_key_a_page_uses_exists(name):
    catalog = page_catalogs()["en"]
    page = _parse(name)
    used = set(page.keys) | {s for s in _string_literals("\n".join(page.scripts)) if KEY.fullmatch(s)}
    assert used, "the page uses no catalog keys"
    assert used <= set(catalog), sorted(used - set(catalog))


def test_every_catalog_key_is_used_by_a_page():
    used = set()
    for name in PAGES:
        page = _parse(name)
        used |= set(page.keys) | {s for s in _string_literals("\n".join(page.scripts)) if KEY.fullmatch(s)}
    assert set(page_catalogs()["en"]) <= used, sorted(set(page_catalogs()["en"]) - used)


@pytest.mark.parametrize("name", PAGES)
def test_no_visible_text_is_left_outside_the_catalog(name):
    page = _parse(name)
    assert [t for t in page.texts if not PLACEHOLDER.fullmatch(t)] == []  # text nodes
    assert page.attrs == []  # placeholder=, title=, aria-label= come from data-i18n-* attributes
    css = "\n".join(page.styles)  # CSS content: strings hold no words
    assert [c for c in re.findall(r"content:\s*\"([^\"]*)\"", css) if re.search(r"\w", c)] == []
    for literal in set(_string_literals("\n".join(page.scripts))) - {"use strict"}:  # no prose, no Chinese
        if literal[:1] not in "#.":  # (CSS selectors such as "#votes button" are not shown)
            assert not re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", literal), literal
        assert not re.search(r"[\u3000-\u9fff\uff00-\uffef]", literal), literal


def test_the_page_carries_both_catalogs_and_the_system_prompt_unchanged():
    system = "\n你是 Lumora 的助手。<b>Lumora</b> & \"Halo\" __MODEL_ID__ __I18N__ {model}"
    html = _page("the-model", system=system)
    raw = html.split('<script type="application/json" id="i18n">', 1)[1].split("</script>", 1)[0]
    assert json.loads(raw) == page_catalogs()

    class Values(HTMLParser):  # what a browser gets as the textarea's value
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.inside, self.value = False, ""

        def handle_starttag(self, tag, attrs):
            self.inside = self.inside or (tag == "textarea" and ("id", "system") in attrs)

        def handle_endtag(self, tag):
            self.inside = False if tag == "textarea" else self.inside

        def handle_data(self, data):
            self.value += data if self.inside else ""

    v = Values()
    v.feed(html)
    assert v.value[1:] == system  # (a browser drops the one newline right after <textarea>)
    assert html.count("__MODEL_ID__") == html.count("__I18N__") == 1  # only the system prompt's own text
