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


def test_the_preference_step_reports_base_sft_and_dpo_with_the_gains():
    from chatforge.demo import PAIRS_HELDOUT, PAIRS_TRAIN, preference_summary

    def result(tuned, base, delta, ci):
        return {"examples_evaluated": 84, "metrics": {"tuned": {"preference_accuracy": {"value": tuned}},
                                                      "base": {"preference_accuracy": {"value": base}}},
                "delta": {"preference_accuracy": {"value": delta, "ci": ci}}}

    text = preference_summary(result(70.0, 50.0, 20.0, [10.0, 30.0]), result(85.0, 70.0, 15.0, [5.0, 25.0]))
    assert "84 held-out pairs" in text
    assert "base  50.0%" in text and "SFT   70.0%" in text and "DPO   85.0%" in text
    assert "DPO - SFT:  +15.0 points [95% CI +5.0, +25.0]" in text
    assert PAIRS_TRAIN.is_file() and PAIRS_HELDOUT.is_file()
