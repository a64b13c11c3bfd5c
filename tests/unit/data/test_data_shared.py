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


def test_sharegpt_with_tool_roles_is_a_clear_error(shared_data, tokenizer):
    f = shared_data / "glaive_toolcall_en_demo" / "glaive_toolcall_en_demo.json"
    prepared, report = analyse(f, tokenizer, max_length=4096)
    roles = [p for p in report.errors if p.cls == "unknown_role"]
    assert roles and {p.cls for p in report.errors} == {"unknown_role"}
    first = min(roles, key=lambda p: p.line)
    assert first.line == 2 and "'function_call'" in first.message  # the line where the record starts
    # conversations without tools still work (a few are longer than max_length: dropped and counted)
    assert len(prepared.examples) == prepared.rows - len(roles) - prepared.dropped.get("too_long", 0) > 100


@pytest.mark.parametrize("path", ["wiki_demo/wiki_demo.txt", "tiny_shakespeare/input.txt"])
def test_raw_text_becomes_blocks(shared_data, tokenizer, path):
    prepared, report = analyse(shared_data / path, tokenizer, max_length=512)
    assert not report.problems and prepared.kind == "text"
    assert all(len(e) <= 512 for e in prepared.examples) and len(prepared.examples[0]) == 512
    assert prepared.stats["tokens_trained"] == prepared.stats["tokens_total"] > 100_000
