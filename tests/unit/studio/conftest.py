"""A studio over a temporary workspace holding the tiny model (models/tiny) and a small chat file."""

import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture
def workspace(tmp_path, tiny_model) -> Path:
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    shutil.copytree(tiny_model, ws / "models" / "tiny")
    lines = (EXAMPLES / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (ws / "data" / "chats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ws


@pytest.fixture
def client(workspace):
    from fastapi.testclient import TestClient

    from chatforge.studio.app import create_app

    app = create_app(workspace, port=7860, upload_limit=1 << 20)
    with TestClient(app, base_url="http://127.0.0.1:7860", headers={"X-Chatforge-Studio": "1"}) as c:
        yield c
