"""The page's own logic (app.js), run in node over a minimal stand-in for the DOM: what it shows for a check that
could not run and for a job whose exit code is unknown. Skipped where node is not installed."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[3] / "src" / "chatforge" / "studio" / "static"

HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const [appJs, catalog, script] = process.argv.slice(2).map((p) => fs.readFileSync(p, "utf8"));
const elements = {};
function node(tag) {
  return { tag, children: [], attrs: {}, dataset: {}, style: {}, hidden: false, value: "", textContent: "",
    setAttribute(k, v) { this.attrs[k] = v; if (k === "id") elements[v] = this; },
    append(...c) { this.children.push(...c); }, replaceChildren(...c) { this.children = c; },
    addEventListener() {}, remove() {}, focus() {}, querySelectorAll() { return []; },
    get text() { return [this.textContent, ...this.children.map((c) => (c && c.text !== undefined ? c.text : ""))].join(" "); } };
}
const document = { documentElement: {}, title: "", createElement: node, querySelectorAll: () => [],
  getElementById: (id) => elements[id] || (elements[id] = node("div")) };
let reply = null;  // what the next fetch of an /api/ path answers
const fetch = async (path) => path.startsWith("/static/")
  ? { ok: true, json: async () => JSON.parse(catalog) }
  : { ok: true, status: 200, json: async () => reply };
const ctx = vm.createContext({ document, fetch, console, setTimeout, URLSearchParams, EventSource: function () {},
  location: { search: "?lang=en", hash: "" }, navigator: { language: "en" }, window: { addEventListener() {} } });
document.getElementById("export-format").value = "hf";  // the page's <select>s start with a value
ctx.setReply = (r) => { reply = r; };
ctx.elements = elements;
vm.runInContext(appJs, ctx);
vm.runInContext(script, ctx).then((out) => console.log(JSON.stringify(out)), (e) => { console.error(e); process.exit(1); });
"""


def _page(tmp_path, script):
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    files = {"harness.js": HARNESS, "script.js": script}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    p = subprocess.run(["node", tmp_path / "harness.js", STATIC / "app.js", STATIC / "i18n-en.json",
                        tmp_path / "script.js"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_check_that_could_not_run_shows_its_error(tmp_path):
    out = _page(tmp_path, """(async () => {
      await new Promise((r) => setTimeout(r, 50));  // main() has loaded the catalog
      setReply({ ok: false, error: { message: "--columns foo=...: 'foo' is not a field", hint: "use question=COL" } });
      await check();
      return document.getElementById("data-report").text;
    })()""")
    assert "'foo' is not a field" in out and "use question=COL" in out and "undefined" not in out


def test_a_job_with_an_unknown_exit_code_is_not_success(tmp_path):
    en = json.loads((STATIC / "i18n-en.json").read_text(encoding="utf-8"))
    out = _page(tmp_path, """(async () => {
      await new Promise((r) => setTimeout(r, 50));
      return [jobEnd({ running: false, returncode: null }), jobEnd({ returncode: 0 }), jobEnd({ returncode: 2 }),
              t("runs.same", { n: 2 }), document.getElementById("diff-out") && 1];
    })()""")
    assert out[0] == en["job.unknown"] and out[1] == "" and "2" in out[2]


def test_one_same_option_is_singular(tmp_path):
    out = _page(tmp_path, """(async () => {
      await new Promise((r) => setTimeout(r, 50));
      setReply({ a: "x", b: "y", differ: [], same: ["lr"] });
      await diff();
      return document.getElementById("diff-out").text;
    })()""")
    assert "1 other option is the same." in out
