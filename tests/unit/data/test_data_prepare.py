"""prepare(): strict by default, --lenient drops with a count and a ceiling; statistics and epochs."""

import json

import pytest

from chatforge.data import prepare
from chatforge.data.pack import pack
from chatforge.data.stats import auto_epochs, dataset_stats, estimate_epoch_seconds, histogram, percentile
from chatforge.errors import ChatforgeError


def chats(n, start=0):
    return [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} for i in range(start, start + n)]


def write(path, records, bad_lines=()):
    lines = [json.dumps(r) for r in records] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_strict_refuses_with_file_line_and_counts(tmp_path, tokenizer):
    f = write(tmp_path / "d.jsonl", chats(20), ['{"messages": [', '{"messages": []}'])
    with pytest.raises(ChatforgeError) as e:
        prepare(f, tokenizer)
    msg = e.value.message
    assert f"{f}:21: invalid JSON" in msg and f"{f}:22: missing messages" in msg
    assert "invalid JSON: 1" in msg and "missing messages: 1" in msg
    assert "--lenient" in e.value.hint


def test_lenient_drops_says_how_many_and_why(tmp_path, tokenizer, capsys):
    f = write(tmp_path / "d.jsonl", chats(20), ['{"messages": ['])
    prepared = prepare(f, tokenizer, lenient=True)
    assert len(prepared.examples) == 20 and prepared.dropped == {"invalid_json": 1}
    assert "dropped 1 of 21 rows (invalid JSON: 1)" in capsys.readouterr().err


def test_lenient_still_refuses_above_the_drop_share(tmp_path, tokenizer, capsys):
    f = write(tmp_path / "d.jsonl", chats(8), ['{"messages": [', "[1]", '{"messages": "x"}'])
    with pytest.raises(ChatforgeError, match=r"3 of 11 rows \(27%\) would be dropped, more than the allowed 10%"):
        prepare(f, tokenizer, lenient=True)
    assert "dropped" not in capsys.readouterr().err  # refused: no "dropped 3 of 11 rows" as if it went on
    assert len(prepare(f, tokenizer, lenient=True, max_drop_share=0.5).examples) == 8


def test_overlong_policies_for_chats(tmp_path, tokenizer):
    long = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 100}]}
    f = write(tmp_path / "d.jsonl", chats(30) + [long])
    prepared = prepare(f, tokenizer, max_length=64)  # chats: drop by default, counted
    assert len(prepared.examples) == 30 and prepared.dropped == {"too_long": 1}
    prepared = prepare(f, tokenizer, max_length=64, overlong="truncate")
    assert len(prepared.examples) == 31 and max(len(e) for e in prepared.examples) == 64
    assert all(e.trained > 0 for e in prepared.examples)
    with pytest.raises(ChatforgeError, match="longer than max length"):
        prepare(f, tokenizer, max_length=64, overlong="error")


def test_stats(tmp_path, tokenizer):
    f = write(tmp_path / "d.jsonl", chats(10) + [{"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}])
    prepared = prepare(f, tokenizer, max_length=256)
    s = prepared.stats
    lengths = sorted(len(e) for e in prepared.examples)
    assert (s["examples"], s["turns"]) == (11, 12)
    assert s["tokens_total"] == sum(lengths)
    assert s["tokens_trained"] == sum(e.trained for e in prepared.examples) < s["tokens_total"]
    assert s["length"]["max"] == lengths[-1] and s["length"]["p50"] == lengths[5]
    assert s["auto_epochs"] == 25
    assert s["packed_rows"] == len(pack(prepared.examples, 256)) == -(-sum(lengths) // 256)  # tight fit
    assert s["padding_share"] == pytest.approx(1 - sum(lengths) / (256 * s["packed_rows"]), abs=1e-4)
    assert 0 < s["padding_share"] < 1 and len(s["histogram"]) >= 1
    assert dataset_stats(prepared) == s


@pytest.mark.parametrize("n, epochs", [(1, 25), (100, 25), (150, 20), (999, 4), (1000, 3), (8333, 3),
                                       (8334, 2), (12500, 2), (30000, 1)])
def test_auto_epochs_follows_openai(n, epochs):
    assert auto_epochs(n) == epochs


@pytest.mark.parametrize("n, answer_tokens, epochs", [
    (383, 11_076, 8),     # the bundled chats: short answers, the example rule stands
    (540, 77_323, 3),     # 540 MedQuAD pairs: 6 by the example rule, 3 by their answer tokens
    (540, 200_000, 1),    # long answers: one pass is already more than enough tokens
    (100, 40_000, 6),     # round(250k / 40k): the token rule, below the example rule's 25
    (30000, 10_000_000, 1)])
def test_auto_epochs_stops_at_enough_answer_tokens(n, answer_tokens, epochs):
    assert auto_epochs(n, answer_tokens) == epochs
    assert auto_epochs(n, answer_tokens) <= auto_epochs(n)  # the token rule only ever lowers the count


def test_percentile_and_histogram():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    lines = histogram([10] * 5 + [50])
    assert lines[0].split()[-1] == "5" and lines[-1].split()[-1] == "1"


def test_time_estimate_is_measured(tiny_model, tokenizer, tmp_path):
    from chatforge.models.load import load_model

    prepared = prepare(write(tmp_path / "d.jsonl", chats(20)), tokenizer, max_length=128)
    model = load_model(str(tiny_model)).model
    est = estimate_epoch_seconds(model, prepared.stats, seq_len=64, budget_s=1.0)
    assert est["tokens_per_second"] > 0 and est["benchmark_steps"] >= 2
    assert est["epoch_seconds"] == pytest.approx(prepared.stats["packed_rows"] * 128 / est["tokens_per_second"],
                                                 rel=0.01)
    assert not model.training and all(p.grad is None for p in model.parameters())
