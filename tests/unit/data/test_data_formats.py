"""Every input format and file type reads into the same conversations; every validation class is reported
at the right file:line."""

import json

import pytest

from chatforge.data import analyse
from chatforge.data.encode import encode_chat

CHAT = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]
AS_USER_ASSISTANT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("record, fmt, expected", [
    ({"messages": CHAT}, "openai", CHAT),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Hi"},
                        {"from": "gpt", "value": "Hello"}]}, "sharegpt", CHAT),
    ({"system": "S", "conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello"}]},
     "sharegpt", CHAT),
    ({"instruction": "Hi", "input": "", "output": "Hello", "system": "S"}, "alpaca", CHAT),
    ({"instruction": "Translate", "input": "chat", "output": "猫", "history": [["Hi", "Hello"]]}, "alpaca",
     AS_USER_ASSISTANT + [{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "猫"}]),
    ({"prompt": "Hi", "completion": "Hello"}, "completion", AS_USER_ASSISTANT),
    ({"question": "Hi", "answer": "Hello", "source": "x", "qtype": "y"}, "qa", AS_USER_ASSISTANT),
])
def test_chat_formats_are_detected_and_normalized(tmp_path, tokenizer, record, fmt, expected):
    f = write_jsonl(tmp_path / "d.jsonl", [record])
    prepared, report = analyse(f, tokenizer)
    assert not report.problems
    assert prepared.formats == {str(f): fmt} and prepared.kind == "chat"
    assert prepared.records == [expected]
    assert prepared.examples[0] == encode_chat(tokenizer, expected)


def test_file_types_and_directories(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "data"
    d.mkdir()
    (d / "a.json").write_text(json.dumps([{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}],
                                         indent=2), encoding="utf-8")
    (d / "b.csv").write_text("prompt,completion\nQ3,\"A3, with comma\"\n", encoding="utf-8-sig")  # with BOM
    pq.write_table(pa.table({"instruction": ["Q4"], "output": ["A4"]}), d / "c.parquet")
    (d / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"messages": AS_USER_ASSISTANT}).encode() + b"\n")
    (d / "notes.md").write_text("ignored")
    prepared, report = analyse(d, tokenizer)
    assert not report.problems
    assert [r[-1]["content"] for r in prepared.records] == ["A1", "A2", "A3, with comma", "A4", "Hello"]
    assert sorted(prepared.formats.values()) == ["alpaca", "completion", "openai", "qa"]


def test_json_array_rows_know_their_lines(tmp_path, tokenizer):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"question": "Q", "answer": "A"}, {"question": "Q2", "answer": ""}], indent=2))
    _, report = analyse(f, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [(6, "empty_content")]


def test_csv_rows_start_where_their_record_starts(tmp_path, tokenizer):
    f = tmp_path / "qa.csv"
    f.write_text('question,answer\n"a question\nover two lines",yes\nsecond,\n', encoding="utf-8")
    prepared, report = analyse(f, tokenizer)
    assert prepared.records[0][0]["content"] == "a question\nover two lines"
    assert [(p.line, p.cls) for p in report.problems] == [(4, "empty_content")]


def test_every_validation_class_by_line(tmp_path, tokenizer):
    long = {"messages": CHAT[:2] + [{"role": "assistant", "content": "word " * 200}]}
    lines = [
        json.dumps({"messages": CHAT}),                                                    # 1 valid
        '{"messages": [',                                                                  # 2
        None,                                                                              # 3 bad UTF-8
        json.dumps({"messages": "Hi"}),                                                    # 4
        json.dumps({"msgs": CHAT}),                                                        # 5
        json.dumps({"messages": [{"role": "user", "contnet": "Hi"}]}),                     # 6
        json.dumps({"messages": [{"role": "robot", "content": "{}"}]}),                    # 7
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]}),
        json.dumps({"messages": CHAT[:2]}),                                                # 9
        json.dumps({"messages": [CHAT[1], CHAT[1], CHAT[2]]}),                             # 10
        json.dumps({"messages": CHAT}),                                                    # 11 duplicate of 1
        json.dumps(long),                                                                  # 12
        json.dumps({"messages": [{"role": "user", "content": 5}, CHAT[2]]}),              # 13
    ]
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b"\n".join(b'{"messages": "\xff\xfe"}' if ln is None else ln.encode() for ln in lines))
    prepared, report = analyse(f, tokenizer, max_length=64, quality=False)  # quality: test_data_quality.py
    got = [(p.line, p.cls, p.severity) for p in report.problems]
    assert got == [
        (2, "invalid_json", "error"), (3, "invalid_utf8", "error"), (4, "wrong_type", "error"),
        (5, "missing_messages", "error"), (6, "unknown_key", "error"), (7, "unknown_role", "error"),
        (8, "empty_content", "error"), (9, "no_assistant", "error"), (10, "non_alternating", "error"),
        (13, "wrong_type", "error"), (11, "duplicate", "warning"), (12, "too_long", "warning")]
    assert all(p.file == str(f) for p in report.problems)
    assert "'robot'" in str(report.problems[5]) and "contnet" in str(report.problems[4])
    assert report.counts()["wrong_type"] == 2
    assert len(prepared.examples) == 2  # lines 1 and 11; 12 dropped for length (chats' default policy)
    assert prepared.dropped["too_long"] == 1


def test_weights_and_roles_validation(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "w.jsonl", [
        {"messages": AS_USER_ASSISTANT[:1] + [dict(AS_USER_ASSISTANT[1], weight=0)]},  # nothing to train
        {"messages": [dict(AS_USER_ASSISTANT[0], weight=1), AS_USER_ASSISTANT[1]]},     # weight on user
        {"messages": [AS_USER_ASSISTANT[0], dict(AS_USER_ASSISTANT[1], weight=0.5)]},
        {"messages": AS_USER_ASSISTANT + [{"role": "user", "content": "And?"}]},          # unanswered
        {"messages": [CHAT[1], CHAT[0], CHAT[2]]},                                          # late system
    ])
    _, report = analyse(f, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [
        (1, "no_assistant"), (2, "wrong_type"), (3, "wrong_type"), (4, "non_alternating"), (5, "non_alternating")]


def test_sharegpt_unknown_roles_are_a_clear_error(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "human", "value": "Find a recipe"}, {"from": "robot", "value": "{}"}]}])
    _, report = analyse(f, tokenizer)
    (p,) = report.problems
    assert (p.line, p.cls) == (1, "unknown_role") and "'robot'" in p.message and "function_call" in p.message


def test_unknown_format_and_forced_format(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "x.jsonl", [{"q": "Hi", "a": "Hello"}, {"question": "Hi", "answer": "Hello"}])
    _, report = analyse(f, tokenizer)
    assert [p.cls for p in report.problems] == ["unknown_format"]
    _, report = analyse(f, tokenizer, format="qa")
    assert [(p.line, p.cls) for p in report.problems] == [(1, "missing_messages")]


def test_chinese_everywhere(tmp_path, tokenizer):
    chat = [{"role": "user", "content": "退货后多久能收到退款？"}, {"role": "assistant", "content": "收到退货后七个工作日内退款。"}]
    f = write_jsonl(tmp_path / "zh.jsonl", [{"messages": chat}])
    prepared, report = analyse(f, tokenizer)
    assert not report.problems and prepared.records == [chat]
    enc = encode_chat(tokenizer, chat)
    assert prepared.stats["tokens_total"] == len(enc) > len(chat[1]["content"])  # tokens, not characters
    trained = tokenizer.decode([t for t in enc.labels if t != -100])
    assert trained == "收到退货后七个工作日内退款。<|im_end|>"
    txt = tmp_path / "zh.txt"
    txt.write_text("中文文本。" * 50, encoding="utf-8")
    prepared, report = analyse(txt, tokenizer, max_length=32)
    assert prepared.kind == "text" and not report.problems
    assert tokenizer.decode(prepared.examples[0].input_ids).startswith("中文文本。")


def test_text_records_and_overlong_policies(tmp_path, tokenizer):
    docs = [{"text": "short document"}, {"text": "a much longer document " * 20}]
    f = write_jsonl(tmp_path / "t.jsonl", docs)
    prepared, report = analyse(f, tokenizer, max_length=16)  # raw text default: truncate = run on into blocks
    assert prepared.kind == "text" and not report.problems and not prepared.dropped
    assert sum(len(e) for e in prepared.examples) > 80 and all(len(e) <= 16 for e in prepared.examples)
    prepared, report = analyse(f, tokenizer, max_length=16, overlong="drop")
    assert [(p.line, p.cls) for p in report.problems] == [(2, "too_long")] and prepared.dropped == {"too_long": 1}
    _, report = analyse(f, tokenizer, max_length=16, overlong="error")
    assert [p.severity for p in report.problems] == ["error"]


def test_invalid_utf8_in_a_text_file_names_the_line(tmp_path, tokenizer):
    f = tmp_path / "t.txt"
    f.write_bytes(b"line one\nline two\nbad \xc3\x28 here\n")
    _, report = analyse(f, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [(3, "invalid_utf8")]


def test_leakage_between_training_and_eval(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", [{"messages": CHAT}, {"messages": AS_USER_ASSISTANT}])
    heldout = write_jsonl(tmp_path / "eval.jsonl", [{"question": "Hi", "answer": "Hello"}])
    prepared, report = analyse(train, tokenizer, eval_path=heldout)
    (p,) = report.problems
    assert (p.file, p.line, p.cls, p.severity) == (str(train), 2, "leakage", "error")
    assert f"{heldout}:1" in p.message
    assert prepared.records == [CHAT]


def test_empty_and_missing_files(tmp_path, tokenizer):
    from chatforge.errors import ChatforgeError

    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ChatforgeError, match=r"empty.jsonl: no examples in this file \(it is empty\)"):
        analyse(tmp_path / "empty.jsonl", tokenizer)
    with pytest.raises(ChatforgeError, match="no such file"):
        analyse(tmp_path / "nope.jsonl", tokenizer)
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ChatforgeError, match="unsupported file type"):
        analyse(tmp_path / "x.xml", tokenizer)


def test_a_template_refusing_a_conversation_is_reported_by_line(tmp_path, tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if 'secret' in m['content'] %}"
                         "{{ raise_exception('no secrets here') }}{% endif %}"
                         "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    f = write_jsonl(tmp_path / "t.jsonl", [{"question": "Hi", "answer": "Hello"},
                                           {"question": "a secret?", "answer": "no"}])
    prepared, report = analyse(f, tok)
    (p,) = report.problems
    assert (p.line, p.cls) == (2, "template_error") and "no secrets here" in p.message
    assert len(prepared.examples) == 1 and prepared.dropped == {"template_error": 1}
