"""The studio in a real headless Chromium (Playwright for Python driving Debian's chromium) against a real
`chatforge studio` process: upload the example data -> check report -> train the tiny model with a live
curve -> stop -> resume -> complete -> eval -> chat -> export; then the same pages in Chinese.
Screenshots go to test-artifacts/studio/ (or $CHATFORGE_TEST_ARTIFACTS)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def studio(tmp_path, tiny_model):
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (scripts/install_chromium.sh installs Debian's)")
    pytest.importorskip("playwright.sync_api")
    ws = tmp_path / "ws"
    shutil.copytree(tiny_model, ws / "models" / "tiny")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "chatforge", "studio", "--workspace", str(ws), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "api/state", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url, ws
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)
    for pidfile in (ws / ".studio" / "jobs").glob("*.json"):  # jobs outlive the studio by design: end them here
        import json

        try:
            os.killpg(json.loads(pidfile.read_text())["pid"], 9)
        except (ProcessLookupError, PermissionError, KeyError, ValueError):
            pass


@pytest.fixture
def shots():
    out = Path(os.environ.get("CHATFORGE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "studio"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_whole_flow_in_the_browser(studio, shots, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, ws = studio
    data = tmp_path / "lumora_train.jsonl"
    lines = (ROOT / "examples" / "data" / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    held = tmp_path / "lumora_heldout.jsonl"
    held.write_text("\n".join((ROOT / "examples" / "data" / "lumora_heldout.jsonl").read_text(encoding="utf-8")
                              .splitlines()[:3]) + "\n", encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        page.goto(url + "?lang=en")
        expect(page.locator("#tabs button[data-page=data]")).to_have_text("Data")

        # Data: upload -> check report
        expect(page.locator("#data-report")).to_have_text("No data files yet: upload one.")
        page.set_input_files("#data-upload", str(data))
        expect(page.locator("#notice")).to_contain_text("data/lumora_train.jsonl")
        expect(page.locator("#data-report")).to_have_text("")  # the placeholder went with the first file
        page.set_input_files("#data-upload", str(held))
        page.select_option("#data-file", "data/lumora_train.jsonl")
        page.select_option("#data-model", "models/tiny")
        page.click("#data-check")
        expect(page.locator("#data-verdict")).to_have_text("Ready to train")
        expect(page.locator("#data-facts")).to_contain_text("chat")
        expect(page.locator("#data-histogram")).to_be_visible()
        page.screenshot(path=str(shots / "1-data-check.png"), full_page=True)

        # Train: a form from TrainConfig; start -> live curve -> stop -> resume -> complete
        page.click("#tabs button[data-page=train]")
        page.fill("#train-name", "browser-run")
        page.select_option("#cfg-model", "models/tiny")
        page.select_option("#cfg-data", "data/lumora_train.jsonl")
        page.fill("#cfg-max_steps", "30")
        page.fill("#cfg-max_length", "128")
        page.click("#train-form summary")  # the advanced options fold out
        page.fill("#cfg-micro_batch_tokens", "256")
        page.fill("#cfg-batch_tokens", "256")
        page.fill("#cfg-save_every", "2")
        page.select_option("#cfg-precision", "fp32")
        page.fill("#cfg-eval_split", "0")
        page.screenshot(path=str(shots / "2-train-form.png"), full_page=True)
        page.click("#train-start")
        expect(page.locator("#run-detail h2")).to_have_text("browser-run")
        page.wait_for_function("() => Number(document.querySelector('#run-curve polyline[data-series=loss]')"
                               "?.dataset.points || 0) >= 3")
        page.screenshot(path=str(shots / "3-training-live.png"), full_page=True)
        page.click("#run-stop")
        expect(page.locator("#run-status")).to_contain_text("stopped (resumable)")
        page.reload()  # the state lives on the server
        expect(page.locator("#run-status")).to_contain_text("stopped (resumable)")
        page.click("#run-resume")
        expect(page.locator("#run-status")).to_have_text("complete")
        expect(page.locator("#run-step")).to_contain_text("30 / 30")
        page.screenshot(path=str(shots / "4-run-complete.png"), full_page=True)

        # Evaluate on the held-out file
        page.click("#tabs button[data-page=eval]")
        page.select_option("#eval-run", "browser-run")
        page.select_option("#eval-data", "data/lumora_heldout.jsonl")
        page.click("#eval-start")
        expect(page.locator("#eval-done")).to_be_visible(timeout=300_000)
        expect(page.locator("#eval-table")).to_contain_text("F1")
        expect(page.frame_locator("#eval-out iframe").locator("body")).to_contain_text("F1")  # the report
        page.screenshot(path=str(shots / "5-eval.png"), full_page=True)

        # Chat with the run
        page.click("#tabs button[data-page=chat]")
        page.select_option("#chat-model", "runs/browser-run")
        page.click("#chat-load")
        expect(page.locator("#chat-status")).to_have_text("Ready", timeout=180_000)
        chat = page.frame_locator("#chat-frame")  # the chat server's own page, forwarded by the studio
        chat.locator("#input").fill("How do I reset the Halo?")
        chat.locator("#input").press("Enter")  # the keyboard works
        expect(chat.locator(".msg.assistant .text")).to_have_count(1)
        expect(chat.locator(".msg.assistant .text")).not_to_have_text("", timeout=120_000)
        expect(chat.locator("#send")).to_be_enabled()
        page.screenshot(path=str(shots / "6-chat.png"), full_page=True)

        # Export
        page.click("#tabs button[data-page=export]")
        page.select_option("#export-run", "browser-run")
        page.select_option("#export-format", "hf")
        page.click("#export-start")
        expect(page.locator("#export-done")).to_have_text("Export finished", timeout=300_000)
        expect(page.locator("#export-files")).to_contain_text("model.safetensors")
        page.screenshot(path=str(shots / "7-export.png"), full_page=True)
        assert (ws / "exports" / "browser-run-hf" / "model.safetensors").is_file()

        # The same studio in Chinese: the page's text switches
        page.click("#lang")
        expect(page.locator("#tabs button[data-page=train]")).to_have_text("训练")
        expect(page.locator("#chat-load")).to_have_text("加载")
        page.click("#tabs button[data-page=runs]")
        expect(page.locator("#runs-table")).to_contain_text("已完成")
        page.click("#tabs button[data-page=data]")
        page.select_option("#data-file", "data/lumora_train.jsonl")
        page.select_option("#data-model", "models/tiny")
        page.click("#data-check")
        expect(page.locator("#data-verdict")).to_have_text("可以开始训练")
        page.screenshot(path=str(shots / "8-zh.png"), full_page=True)
        page.click("#tabs button[data-page=train]")  # the form's help in Chinese too (TrainConfig's is English)
        expect(page.locator("label[for=cfg-lr] .help")).to_contain_text("峰值学习率")
        page.click("#tabs button[data-page=chat]")  # the Chat tab in Chinese shows the chat page in Chinese
        page.select_option("#chat-model", "runs/browser-run")  # (its chat server is still running)
        page.click("#chat-load")
        expect(page.locator("#chat-status")).to_have_text("就绪")
        assert page.get_attribute("#chat-frame", "src") == "/chat?lang=zh"
        expect(chat.locator("#send")).to_have_text("发送")
        expect(chat.locator("label[for=system]")).to_have_text("系统提示词")
        page.screenshot(path=str(shots / "9-zh-chat.png"), full_page=True)
        browser.close()
