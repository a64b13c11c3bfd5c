"""The chat page in a real headless Chromium against a real server: type, click Send, watch the answer stream.

Chromium is driven through the DevTools protocol over a ~50-line WebSocket client (the standard library has
none, and no extra dependency is needed). Clicks and typing are real input events (Input.dispatchMouseEvent,
Input.insertText, Input.dispatchKeyEvent), not element.click(). Skipped when no chromium is installed
(scripts/install_chromium.sh installs Debian's).
"""

import base64
import json
import os
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest
from conftest import chromium_path

pytestmark = pytest.mark.e2e
KEY = "page-key"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1280,900"]


class DevTools:
    """A minimal Chrome DevTools Protocol client: one WebSocket (RFC 6455 text frames) to one page target."""

    def __init__(self, ws_url: str):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.last_id = 0

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self._send(json.dumps({"id": self.last_id, "method": method, "params": params}).encode())
        while True:  # events (no id) are not needed here and are skipped
            reply = json.loads(self._receive())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _send(self, payload: bytes) -> None:
        n = len(payload)  # client frames are masked; FIN + text opcode
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 \
            else bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _receive(self) -> str:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else struct.unpack(">Q", self._exact(8))[0] \
                if n == 127 else n
            payload = self._exact(n)  # server frames are never masked
            if b0 & 0x0F == 0x8:
                raise ConnectionError("DevTools sent close")
            message += payload
            if b0 & 0x80:  # FIN: the message is complete
                return message.decode()

    # ---- page helpers ----------------------------------------------------------------------------------------
    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        x, y = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                       "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                       "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        self.click(selector)
        self.call("Input.insertText", text=text)

    def key(self, key: str, code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}; the chat log: "
                             f"{self.js('document.getElementById(`log`).outerHTML')}")



@pytest.fixture(scope="module")
def server(tiny_model):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(tiny_model)))
    prompts = []  # every conversation the server templated, to check what the page sent
    encode = engine.encode_chat
    engine.encode_chat = lambda messages: prompts.append(messages) or encode(messages)
    app = create_app(engine, ServeConfig(api_key=KEY))
    with background(app) as url:
        yield SimpleNamespace(url=url, prompts=prompts, scheduler=app.state.scheduler, engine=engine)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"  # chromium writes its debugging port here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        tools = DevTools(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        tools.call("Page.navigate", url=server.url + "/")
        tools.wait_for("document.readyState === 'complete' && !!document.getElementById('send')")
        yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


LAST = "document.querySelector('#log .msg.assistant:last-child')"


def _ask(page, question: str) -> dict:
    page.type("#input", question)
    page.click("#send")
    page.wait_for(f"['done', 'length'].includes({LAST}?.dataset.state)")
    return page.js(f"({{ text: {LAST}.querySelector('.text').textContent, chunks: Number({LAST}.dataset.chunks) }})")


def test_typing_a_question_and_clicking_send_streams_an_answer(page, server):
    page.type("#api-key", KEY)
    page.type("#system", "You are terse.")
    page.click("#temperature")
    page.key("Home", 36)  # the slider to its minimum: temperature 0, so the answer is reproducible
    assert page.js("document.getElementById('temperature').value") == "0"
    page.js("document.getElementById('max-tokens').value = '8'")
    answer = _ask(page, "What is Lumora Home?")
    assert answer["chunks"] > 1  # it arrived in several server-sent events, shown as they came
    assert server.prompts[-1] == [{"role": "system", "content": "You are terse."},
                                  {"role": "user", "content": "What is Lumora Home?"}]
    import httpx  # the page shows exactly what the API answers for that conversation

    expected = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"messages": server.prompts[-1], "temperature": 0, "max_tokens": 8}, timeout=30)
    assert answer["text"] == expected.json()["choices"][0]["message"]["content"] != ""
    assert page.js("document.querySelector('#log .msg.user').textContent").endswith("What is Lumora Home?")

    second = _ask(page, "And its warranty?")  # multi-turn: the first exchange is sent back as history
    assert server.prompts[-2][-1]["content"] == "What is Lumora Home?"
    assert [m["role"] for m in server.prompts[-1]] == ["system", "user", "assistant", "user"]
    assert server.prompts[-1][2]["content"] == answer["text"] and second["text"]


def test_stop_ends_the_answer_and_the_server_generation_then_clear_empties_the_chat(page, server):
    page.js("document.getElementById('max-tokens').value = '1500'")
    page.type("#input", "Tell me a long story.")
    page.click("#send")
    page.wait_for(f"Number({LAST}?.dataset.chunks) >= 2")
    page.click("#stop")
    page.wait_for(f"{LAST}.dataset.state === 'stopped'")
    deadline = time.monotonic() + 5  # the aborted fetch closed the connection: generation stops too
    while server.scheduler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.scheduler.running == 0 and server.scheduler.stats["cancelled"] >= 1
    assert page.js("document.getElementById('send').disabled") is False
    page.click("#clear")
    assert page.js("document.querySelectorAll('#log .msg').length") == 0


def test_a_wrong_key_shows_the_server_error(page):
    page.js("document.getElementById('api-key').value = ''")
    page.type("#api-key", "wrong")
    page.type("#input", "Hello?")
    page.click("#send")
    page.wait_for(f"{LAST}?.dataset.state === 'error'")
    assert "API key" in page.js(f"{LAST}.textContent")
