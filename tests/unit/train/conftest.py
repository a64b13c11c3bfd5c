"""Small training runs on the tiny model: a few steps of a few hundred tokens each, fp32 (bit-reproducible)."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory) -> Path:
    """80 conversations of the bundled example data (short: ~70 tokens each)."""
    lines = (EXAMPLES / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines()[:80]
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_cfg(tiny_model, chat_file, tmp_path):
    """TrainConfig for a quick tiny-model run: rows of 128 tokens, 2 rows per forward pass, 2 passes per step."""
    from chatforge.train.config import TrainConfig

    def _make(**overrides):
        values = dict(model=str(tiny_model), data=str(chat_file), out=str(tmp_path / "run"), max_length=128,
                      micro_batch_tokens=256, batch_tokens=512, max_steps=6, precision="fp32", save_every=3,
                      eval_every=3, lr=5e-3)
        values.update(overrides)
        return TrainConfig(**values)

    return _make


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models run fastest on one thread (and deterministically); the CPU is shared with other tests."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # chatforge's set_threads() keeps what the user chose
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
