"""The real public datasets in ../shared/data (skipped when absent) read with the expected formats."""

import pytest

from chatforge.data import analyse


@pytest.mark.parametrize("path, fmt, rows", [
    ("medquad/medquad_train.jsonl", "qa", 3000),
    ("alpaca/alpaca_data_sample2000.json", "alpaca", 2000),
    ("fastchat_dummy_conversation/dummy_conversation.json", "sharegpt", 500),
    ("llamafactory_identity/identity.json", "alpaca", 91),
])
def test_chat_datasets_are_valid(shared_data, tokenizer, path, fmt, rows):
    prepared, report = analyse(shared_data / path, tokenizer, max_length=1024)
    assert not report.errors, report.summary()
    assert set(prepared.formats.values()) == {fmt} and prepared.rows == rows
    assert len(prepared.examples) == rows and prepared.stats["tokens_trained"] > 0


def test_glaive_tool_calls_are_read_and_valid(shared_data, tokenizer):
    """LLaMA-Factory's ShareGPT layout with function_call / observation turns and a tools field."""
    f = shared_data / "glaive_toolcall_en_demo" / "glaive_toolcall_en_demo.json"
    prepared, report = analyse(f, tokenizer, max_length=1 << 16)
    assert not report.errors, report.summary()
    # the sample repeats a few records exactly; the rest are data-quality warnings (data/quality.py), no errors
    assert "duplicate" in {p.cls for p in report.problems} and not report.errors
    assert prepared.rows == len(prepared.examples) == 300
    calls = [m for r in prepared.records for m in r if m.get("tool_calls")]
    results = [m for r in prepared.records for m in r if m["role"] == "tool"]
    assert len(calls) == len(results) == 211
    assert all(isinstance(c["function"]["arguments"], dict) for m in calls for c in m["tool_calls"])
    assert all(r.tools for r in prepared.records if any(m.get("tool_calls") for m in r))


@pytest.mark.parametrize("path", ["wiki_demo/wiki_demo.txt", "tiny_shakespeare/input.txt"])
def test_raw_text_becomes_blocks(shared_data, tokenizer, path):
    prepared, report = analyse(shared_data / path, tokenizer, max_length=512)
    assert not report.problems and prepared.kind == "text"
    assert all(len(e) <= 512 for e in prepared.examples) and len(prepared.examples[0]) == 512
    assert prepared.stats["tokens_trained"] == prepared.stats["tokens_total"] > 100_000
