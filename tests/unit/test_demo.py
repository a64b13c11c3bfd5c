"""The demo's own bookkeeping (the full demo is `make demo`, exercised stage by stage by the other tests)."""

import pytest

from chatforge.demo import DemoConfig, _fresh_run_dir
from chatforge.errors import ChatforgeError


def test_a_previous_demo_run_is_replaced(tmp_path):
    run = tmp_path / "demo"
    (run / "final").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    _fresh_run_dir(run)
    assert not run.exists()


def test_a_directory_that_is_not_a_run_is_never_deleted(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ChatforgeError, match="not a chatforge run"):
        _fresh_run_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_defaults_point_at_the_bundled_example_data():
    cfg = DemoConfig()
    assert cfg.train_data.endswith("examples/data/lumora_train.jsonl")
    assert cfg.heldout_data.endswith("examples/data/lumora_heldout.jsonl")
    with open(cfg.train_data, encoding="utf-8") as f:
        assert sum(1 for _ in f) >= 300
