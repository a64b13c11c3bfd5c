"""A real full disk (a small tmpfs) while the eval report is written: a clear error, the previous report kept."""

import json

import pytest

from chatforge.errors import ChatforgeError
from chatforge.evaluate import report as R


def _result(model):
    entry = {"value": 50.0, "ci": [49.0, 51.0]}
    metrics = {k: entry for k, _, _ in R.METRICS}
    side = {"answer": "a", "finish_reason": "stop", "f1": 50.0, "rougeL": 50.0, "answer_tokens": 1}
    return {"model": model, "baseline": None, "data": "heldout.jsonl", "examples_evaluated": 1,
            "settings": {"confidence": 0.95, "max_tokens": 8, "bootstrap": 10, "seed": 0},
            "metrics": {"tuned": metrics}, "delta": None,
            "examples": [{"index": 0, "question": "q?", "reference": "r", "tuned": side}]}


def test_report_onto_a_full_disk_keeps_the_previous_report(small_disk, fill_disk):
    disk = small_disk(2)
    out = disk / "eval"
    R.write_report(_result("first"), out, None)
    fill_disk(disk, leave_bytes=2048)
    with pytest.raises(ChatforgeError) as e:
        R.write_report(_result("second"), out, None)
    assert "disk is full" in e.value.message and "previous eval report" in e.value.message
    assert e.value.exit_code == 1
    assert json.loads((out / "metrics.json").read_text())["model"] == "first"
    assert sorted(p.name for p in disk.iterdir()) == [".filler", "eval"]  # no temporary directory left
