"""The studio works with the keyboard alone, in a real headless Chromium (Playwright, the system Chromium)
against a real `chatforge studio` process: Tab / Shift+Tab move through the pages' controls (each focused control
shows a visible focus ring), Enter and Space switch pages, run a check on a data file and open the train form's
advanced section. A select's value is changed with its own keys (End), as a keyboard user does; nothing is
clicked."""

import shutil
from pathlib import Path

import pytest
from test_studio_browser import CHROMIUM, FLAGS, ROOT, studio  # noqa: F401 (the studio fixture)

pytestmark = pytest.mark.e2e


def _focused(locator) -> bool:
    return locator.evaluate("e => e === document.activeElement")


def _tab_to(page, selector: str, back: bool = False, limit: int = 60):
    """Press Tab (Shift+Tab) until `selector` has the focus; every control on the way shows its focus."""
    target = page.locator(selector)
    for _ in range(limit):
        if _focused(target):
            return target
        page.keyboard.press("Shift+Tab" if back else "Tab")
        focus = page.evaluate("(() => { const e = document.activeElement;"
                              " return [e.tagName + '#' + e.id, getComputedStyle(e).outlineStyle]; })()")
        assert focus[0] == "BODY#" or focus[1] != "none", f"no visible focus on {focus[0]}"
    raise AssertionError(f"{selector} is not reachable with {'Shift+Tab' if back else 'Tab'}")


UNNAMED = """els => els.filter((e) => e.getClientRects().length
  && !(e.labels && [...e.labels].some((l) => l.textContent.trim()))
  && !(e.getAttribute("aria-label") || "").trim() && !(e.tagName === "BUTTON" && e.textContent.trim())
  && !(e.tagName === "IFRAME" && e.title.trim())).map((e) => e.id || e.outerHTML.slice(0, 80))"""


def _unnamed(page, name: str) -> list[str]:
    """The controls of a page that a screen reader could not name (no label text, aria-label or button text)."""
    return page.locator(f"#page-{name}").locator("input, select, textarea, button, iframe").evaluate_all(UNNAMED)


def test_the_studio_with_the_keyboard_only(studio, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    url, ws = studio
    (ws / "data").mkdir(exist_ok=True)
    lines = (ROOT / "examples" / "data" / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    (ws / "data" / "lumora.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(url + "?lang=en")
        expect(page.locator("#tabs button[data-page=data]")).to_have_text("Data")

        # switch pages: Tab to a page's tab, Enter (and Space) shows it
        _tab_to(page, "#tabs button[data-page=train]")
        page.keyboard.press("Enter")
        expect(page.locator("#page-train")).to_be_visible()
        expect(page.locator("#tabs button[data-page=train]")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#train-form summary")).to_be_visible()
        # open a form section: the advanced options fold out with Enter, and their fields are reachable
        _tab_to(page, "#train-form summary")
        page.keyboard.press("Enter")
        expect(page.locator("#train-form details")).to_have_attribute("open", "")
        _tab_to(page, "#cfg-save_every")
        assert _unnamed(page, "train") == []
        _tab_to(page, "#train-start")  # the form's submit button comes after them
        _tab_to(page, "#train-form summary", back=True)
        page.keyboard.press("Space")  # and folds back with Space
        expect(page.locator("#train-form details")).not_to_have_attribute("open", "")

        # back to the Data page with Shift+Tab and Space; run a check on the data file
        _tab_to(page, "#tabs button[data-page=data]", back=True)
        page.keyboard.press("Space")
        expect(page.locator("#page-data")).to_be_visible()
        expect(page.locator("#data-file")).to_have_value("data/lumora.jsonl")
        _tab_to(page, "#data-model")
        page.keyboard.press("End")  # the workspace's own model is the last one
        expect(page.locator("#data-model")).to_have_value("models/tiny")
        _tab_to(page, "#data-check")
        page.keyboard.press("Enter")
        expect(page.locator("#data-verdict")).to_have_text("Ready to train", timeout=120_000)
        assert _unnamed(page, "data") == []
        _tab_to(page, "#data-upload")  # the upload control is reachable too

        # the language switch and the other pages are reachable and operable the same way
        for name in ("runs", "eval", "chat", "export"):
            _tab_to(page, f"#tabs button[data-page={name}]", back=True)
            page.keyboard.press("Enter")
            expect(page.locator(f"#page-{name}")).to_be_visible()
            assert _unnamed(page, name) == [], name
        _tab_to(page, "#export-start")
        _tab_to(page, "#tabs button[data-page=export]", back=True)
        page.keyboard.press("ArrowLeft")  # the tab list's arrow keys move between pages too
        expect(page.locator("#page-chat")).to_be_visible()
        expect(page.locator("#tabs button[data-page=chat]")).to_be_focused()
        _tab_to(page, "#lang", back=True)
        page.keyboard.press("Enter")
        expect(page.locator("#tabs button[data-page=train]")).to_have_text("训练")
        browser.close()
