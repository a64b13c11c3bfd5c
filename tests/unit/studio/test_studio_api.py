"""The studio's API: security rules, bad input (always a 4xx with a message, never a 500), the train form
from TrainConfig, and a real training run started, stopped, resumed and finished through the API."""

import os
import time
from pathlib import Path

import pytest
import yaml


def error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"]["message"]
    return body["error"]


# ---- security ----------------------------------------------------------------------------------------------
def test_foreign_host_header_is_refused(client):
    """DNS rebinding: a page served from evil.example re-pointed at 127.0.0.1 sends Host: evil.example."""
    e = error(client.get("/api/state", headers={"Host": "evil.example:7860"}), 403)
    assert "host" in e["message"]
    assert client.get("/api/state", headers={"Host": "localhost:7860"}).status_code == 200


def test_state_changes_need_the_csrf_header_and_own_origin(client):
    e = error(client.post("/api/check", json={"file": "data/chats.jsonl"}, headers={"X-Chatforge-Studio": ""}), 403)
    assert "X-Chatforge-Studio" in e["message"]
    e = error(client.post("/api/check", json={"file": "data/chats.jsonl"}, headers={"Origin": "http://evil.example"}),
              403)
    assert "origin" in e["message"]
    error(client.delete("/api/runs/x?confirm=x", headers={"X-Chatforge-Studio": "0"}), 403)
    # the forwarded chat API (/v1/...) is called by the chat server's own page: JSON only, same origin
    e = error(client.post("/v1/feedback", content=b"rating=up", headers={"X-Chatforge-Studio": "",
                                                                       "Content-Type": "text/plain"}), 403)
    assert "JSON" in e["message"]
    error(client.post("/v1/feedback", json={"rating": "up"}, headers={"Origin": "http://evil.example"}), 403)
    assert client.get("/api/state", headers={"X-Chatforge-Studio": ""}).status_code == 200  # reads need none


def test_token_is_required_everywhere_when_set(workspace):
    from fastapi.testclient import TestClient

    from chatforge.studio.app import create_app

    app = create_app(workspace, token="s3cret", host="0.0.0.0", port=7860)
    with TestClient(app, base_url="http://192.0.2.1:7860", headers={"X-Chatforge-Studio": "1"}) as c:
        for path in ("/", "/api/state", "/static/app.js", "/files/data/chats.jsonl"):
            error(c.get(path), 401)
        error(c.get("/api/state", headers={"Authorization": "Bearer wrong"}), 401)
        assert c.get("/api/state", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/?token=s3cret&lang=zh", follow_redirects=False)  # the printed URL sets a cookie
        assert r.status_code == 303 and r.headers["location"] == "/?lang=zh"
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/api/state").status_code == 200  # the cookie now authorizes
        assert "s3cret" not in c.get("/").text


def test_studio_refuses_non_loopback_without_token(run_cli, monkeypatch):
    """`--host 0.0.0.0` generates a token; the CLI never serves an open studio to the network."""
    from chatforge.commands import studio

    seen = {}

    def fake_run(app, **kw):
        seen["guard"] = app.state.guard

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("CHATFORGE_STUDIO_TOKEN", raising=False)
    code, out, _ = run_cli("studio", "--host", "0.0.0.0", "--port", "7999", "--workspace",
                           str(Path(os.environ["CHATFORGE_HOME"]) / "ws-cli"))
    assert code == 0 and "?token=" in out and seen["guard"].token and seen["guard"].token in out
    code, out, _ = run_cli("studio", "--port", "7999", "--workspace", str(Path(os.environ["CHATFORGE_HOME"]) / "ws-cli"))
    assert code == 0 and "token" not in out and seen["guard"].token is None
    assert studio is not None


@pytest.mark.parametrize("path", ["../outside.jsonl", "/etc/passwd", "data/../../outside.jsonl", "C:/x.jsonl",
                                  "data/\x00.jsonl"])
def test_paths_outside_the_workspace_are_refused(client, path):
    e = error(client.post("/api/check", json={"file": path}), 403)
    assert e["field"] == "file"


def test_symlink_leaving_the_workspace_is_refused(client, workspace, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"question": "q", "answer": "a"}\n')
    (workspace / "data" / "link.jsonl").symlink_to(secret)
    error(client.post("/api/check", json={"file": "data/link.jsonl"}), 403)
    error(client.get("/files/data/link.jsonl"), 403)
    assert "data/link.jsonl" not in [f["path"] for f in client.get("/api/state").json()["data_files"]]


def test_files_route_stays_inside_the_workspace(client):
    assert client.get("/files/data/chats.jsonl").status_code == 200
    assert client.get("/files/data/chats.jsonl").headers["content-security-policy"] == "sandbox"
    for path in ("/files/%2e%2e/secret", "/files/..%2fsecret", "/files//etc/passwd"):
        assert client.get(path).status_code in (403, 404), path
    error(client.get("/files/.studio/jobs"), 404)


def test_uploads_have_a_size_limit_and_a_safe_name(client, workspace):
    r = client.put("/api/data/..%2F..%2Fevil name.jsonl", content=b'{"question": "q", "answer": "a"}\n')
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "data/evil_name.jsonl" and (workspace / "data" / "evil_name.jsonl").is_file()
    error(client.put("/api/data/big.jsonl", content=b"x" * ((1 << 20) + 1)), 413)
    error(client.put("/api/data/run.sh", content=b"echo hi"), 400)
    error(client.put("/api/data/empty.jsonl", content=b""), 400)
    r = client.put("/api/data/问答.csv", content="question,answer\n你好,您好\n".encode())
    assert r.status_code == 201 and r.json()["path"] == "data/问答.csv"


# ---- bad input: a clear 4xx, never a 500 -------------------------------------------------------------------
def test_bad_requests_are_4xx_with_the_field(client):
    error(client.post("/api/check", content=b"{not json"), 400)
    error(client.post("/api/check", json=[1, 2]), 400)
    assert error(client.post("/api/check", json={}), 400)["field"] == "file"
    assert error(client.post("/api/check", json={"file": "data/missing.jsonl"}), 404)["field"] == "file"
    assert error(client.get("/api/runs/nope"), 404)["field"] == "run"
    assert error(client.get("/api/runs/..%2F..%2Fetc"), 404) or True
    error(client.get("/api/jobs/nope"), 404)
    error(client.post("/api/runs", json={"name": "../x", "config": {"data": "data/chats.jsonl"}}), 400)
    assert error(client.post("/api/runs", json={"name": "r", "config": {}}), 400)["field"] == "data"
    e = error(client.post("/api/runs", json={"name": "r", "config": {"data": "data/chats.jsonl", "lr": "fast"}}), 400)
    assert e["field"] == "lr" and "lr" in e["message"]
    e = error(client.post("/api/runs", json={"name": "r", "config": {"data": "data/chats.jsonl", "method": "magic"}}),
              400)
    assert "method" in e["message"]
    e = error(client.post("/api/runs", json={"name": "r", "config": {"data": "data/chats.jsonl", "bogus": 1}}), 400)
    assert "bogus" in e["message"]
    error(client.post("/api/runs", json={"name": "r", "config": {"data": "data/chats.jsonl", "out": "/tmp/x"}}), 400)
    error(client.post("/api/runs", json={"name": "r", "config": {"data": "data/chats.jsonl",
                                                                  "model": "/etc"}}), 403)
    error(client.post("/api/export", json={"run": "nope", "format": "hf"}), 404)
    error(client.post("/v1/chat/completions", json={"messages": []}), 409)  # no chat model loaded yet
    error(client.get("/chat"), 409)
    error(client.post("/api/chat/start", json={"model": "../../etc"}), 403)
    error(client.get("/api/diff?a=x&b=y"), 404)
    error(client.get("/static/../app.py"), 404)


def test_train_form_is_trainconfig(client):
    from chatforge.config import describe
    from chatforge.train.config import TrainConfig

    fields = {f["name"]: f for f in client.get("/api/train/schema").json()["fields"]}
    for f in describe(TrainConfig):
        if f["name"] in ("out", "resume", "device"):
            assert f["name"] not in fields
            continue
        assert fields[f["name"]]["help"] == f["help"] and fields[f["name"]]["default"] == f["default"]
        assert fields[f["name"]]["choices"] == (list(f["choices"]) if f["choices"] else None)
    assert not fields["model"]["advanced"] and fields["lora_rank"]["advanced"]


def test_state_lists_models_data_and_runs(client):
    state = client.get("/api/state").json()
    assert "smollm2-135m-instruct" in [m["value"] for m in state["models"]]
    assert "models/tiny" in [m["value"] for m in state["models"]]
    assert [f["path"] for f in state["data_files"]] == ["data/chats.jsonl"]
    assert state["runs"] == []


def test_page_strings_come_from_the_catalogs(client):
    """Every data-i18n key of the page exists in both catalogs, with the same keys in each; the Chinese one also
    translates the help of every train form field (English takes TrainConfig's own), and of no other."""
    import json
    import re

    page = client.get("/").text
    en = json.loads(client.get("/static/i18n-en.json").text)
    zh = json.loads(client.get("/static/i18n-zh.json").text)
    fields = {k for k in zh if k.startswith("field.")}
    assert set(en) == set(zh) - fields
    assert fields == {"field." + f["name"] for f in client.get("/api/train/schema").json()["fields"]}
    assert all(re.search(r"[\u4e00-\u9fff]", zh[k]) for k in fields)
    keys = set(re.findall(r'data-i18n(?:-title)?="([^"]+)"', page))
    script = client.get("/static/app.js").text
    keys |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_]+)"', script))
    assert keys and keys <= set(en), keys - set(en)
    assert en["page.train"] == "Train" and zh["page.train"] == "训练"


# ---- a real run through the API ------------------------------------------------------------------------------
def _wait(client, name, pred, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get(f"/api/runs/{name}").json()
        if pred(r):
            return r
        time.sleep(0.5)
    raise AssertionError(f"run {name} never got there: {r['status']}\n{r.get('log', '')[-2000:]}")


TINY = {"model": "models/tiny", "data": "data/chats.jsonl", "max_length": 128, "micro_batch_tokens": 256,
        "batch_tokens": 256, "precision": "fp32", "eval_split": 0.0, "tensorboard": False}


@pytest.mark.slow
def test_run_started_stopped_resumed_and_finished(client, workspace, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = dict(TINY, max_steps=40, save_every=2)
    r = client.post("/api/runs", json={"name": "first", "config": config})
    assert r.status_code == 201, r.text
    error(client.post("/api/runs", json={"name": "first", "config": config}), 409)
    _wait(client, "first", lambda r: len([m for m in r["metrics"] if "loss" in m]) >= 3)
    assert client.post("/api/runs/first/stop").status_code == 200
    run = _wait(client, "first", lambda r: not r["running"])
    assert run["status"] == "interrupted" and run["returncode"] == 143, run
    error(client.delete("/api/runs/first?confirm=wrong"), 400)
    assert client.post("/api/runs/first/resume").status_code == 200
    error(client.post("/api/runs/first/resume"), 409)  # already training
    # The studio restarted (a new process over the same workspace): the run still trains and is shown as such.
    from fastapi.testclient import TestClient

    from chatforge.studio.app import create_app

    with TestClient(create_app(workspace, port=7860), base_url="http://127.0.0.1:7860",
                    headers={"X-Chatforge-Studio": "1"}) as restarted:
        assert restarted.get("/api/runs/first").json()["running"]
        assert [r["name"] for r in restarted.get("/api/state").json()["runs"]] == ["first"]
        run = _wait(restarted, "first", lambda r: r["status"] == "complete" and not r["running"])
    assert run["steps"] == 40 and run["data_sha256"] and run["has_final"]
    steps = [m["step"] for m in run["metrics"] if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # resumed where it stopped, each step once
    events = (workspace / "runs" / "first" / "events.jsonl").read_text().splitlines()
    assert any('"phase": "stopped"' in e for e in events) and any('"phase": "done"' in e for e in events)
    assert client.get("/api/state").json()["runs"][0]["name"] == "first"
    assert client.delete("/api/runs/first?confirm=first").status_code == 200
    assert not (workspace / "runs" / "first").exists()


@pytest.mark.slow
def test_studio_and_cli_write_the_same_config(client, workspace, run_cli, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = client.post("/api/runs", json={"name": "via-studio", "config": dict(TINY, max_steps=2)})
    assert r.status_code == 201, r.text
    _wait(client, "via-studio", lambda r: r["status"] == "complete" and not r["running"])
    code, _, err = run_cli("train", "--model", workspace / "models" / "tiny", "--data", workspace / "data" / "chats.jsonl",
                           "--max-length", "128", "--micro-batch-tokens", "256", "--batch-tokens", "256",
                           "--precision", "fp32", "--eval-split", "0", "--no-tensorboard", "--max-steps", "2",
                           "--out", workspace / "runs" / "via-cli")
    assert code == 0, err
    a, b = (yaml.safe_load((workspace / "runs" / n / "config.yaml").read_text()) for n in ("via-studio", "via-cli"))
    assert a.pop("out") != b.pop("out")
    assert a == b
    d = client.get("/api/diff?a=via-studio&b=via-cli").json()
    assert [x["option"] for x in d["differ"]] == ["out"]


def test_the_data_page_checks_with_a_column_mapping(client, workspace):
    (workspace / "data" / "faq.csv").write_text("title,ask,answer\n头痛,总是头痛,注意休息\n", encoding="utf-8")
    r = client.post("/api/check", json={"file": "data/faq.csv", "estimate": False,
                                        "columns": "question=title+ask answer=answer"})
    assert r.status_code == 200 and r.json()["columns"] == {"question": ["title", "ask"], "answer": ["answer"]}
    assert r.json()["ok"] is True
