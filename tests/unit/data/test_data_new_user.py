"""What a new user's own files hit first: one-line JSON arrays, hand-made CSVs, wrong column names, typos in
options; each a clear, correct report, never silent data loss."""

import json

import pytest

from chatforge.data import analyse, prepare
from chatforge.errors import ChatforgeError

QA = [{"question": f"What is item {i}?", "answer": f"Item {i} is a thing number {i}."} for i in range(10)]


def test_an_error_in_a_one_line_json_array_drops_that_record_only(tmp_path, tokenizer):
    """json.dumps(rows) puts every record on line 1: one bad record must not take the others with it."""
    path = tmp_path / "min.json"
    path.write_text(json.dumps(QA + [{"question": "Empty?", "answer": ""}]))
    prepared, report = analyse(path, tokenizer, max_length=256)
    assert [p.cls for p in report.errors] == ["empty_content"]
    assert len(prepared.examples) == 10 and prepared.dropped == {"empty_content": 1}
    assert len(prepare(path, tokenizer, max_length=256, lenient=True).examples) == 10


def test_leakage_in_a_one_line_json_array_drops_the_leaking_record_only(tmp_path, tokenizer):
    path, held = tmp_path / "min.json", tmp_path / "held.jsonl"
    path.write_text(json.dumps(QA))
    held.write_text(json.dumps(QA[2]) + "\n")
    prepared, report = analyse(path, tokenizer, max_length=256, eval_path=held, quality=False)
    assert [p.cls for p in report.errors] == ["leakage"]
    assert len(prepared.examples) == 9


@pytest.mark.parametrize("body, fields", [
    ("question,answer\nWhat is X?,It is A, B and C.\nWhy?,Because.\n", 3),  # an unquoted comma: cut silently
    ("question,answer\nWhat is X?\nWhy?,Because.\n", 1),  # a short row: not "'answer' must be a string"
])
def test_a_csv_row_with_the_wrong_number_of_fields_is_an_error(tmp_path, tokenizer, body, fields):
    path = tmp_path / "faq.csv"
    path.write_text(body)
    prepared, report = analyse(path, tokenizer, max_length=256)
    (problem,) = report.errors
    assert problem.line == 2 and f"this row has {fields} field" in problem.message
    assert "the header 2: question, answer" in problem.message and "quoted" in problem.message
    assert len(prepared.examples) == 1


def test_trailing_empty_csv_fields_lose_nothing_and_pass(tmp_path, tokenizer):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nWhat is X?,It is X.,\nWhy?,Because.\n")
    prepared, report = analyse(path, tokenizer, max_length=256)
    assert not report.errors and len(prepared.examples) == 2


def test_an_unknown_format_refusal_does_not_suggest_length_options(run_cli, tiny_model, tmp_path):
    path = tmp_path / "wrong.jsonl"
    path.write_text("".join(json.dumps({"question": q["question"], "answr": q["answer"]}) + "\n" for q in QA))
    code, out, _ = run_cli("check", path, "--model", tiny_model, "--no-estimate")
    assert code == 2
    last = out.strip().splitlines()[-1]
    assert "would refuse" in last and "--max-length" not in last.split("refuse this data")[1]
    assert "--columns" in last
    with pytest.raises(ChatforgeError) as e:
        prepare(path, _tokenizer_of(tiny_model), max_length=256, lenient=True)
    assert "--overlong" not in e.value.hint and "--columns" in e.value.hint


def _tokenizer_of(model):
    from chatforge.models.load import load_tokenizer

    return load_tokenizer(model)


def test_an_unknown_format_name_is_a_clear_error(tmp_path, tokenizer):
    """train's --format takes any string: a typo must be an error naming the formats, not a KeyError."""
    path = tmp_path / "faq.jsonl"
    path.write_text(json.dumps(QA[0]) + "\n")
    with pytest.raises(ChatforgeError, match="--format must be one of openai, .* not 'q&a'"):
        prepare(path, tokenizer, format="q&a")


def test_tokens_per_character_counts_the_text_not_the_chat_template(tmp_path, tokenizer):
    """A template's own tokens (role markers, a default system prompt) are not the tokenizer's fit to the text."""
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QA))
    prepared, _ = analyse(path, tokenizer, max_length=256, quality=False)
    texts = [m["content"] for r in prepared.records for m in r]
    tokens = sum(len(t) for t in tokenizer(texts, add_special_tokens=False)["input_ids"])
    assert prepared.stats["tokens_per_character"] == round(tokens / prepared.stats["characters"], 3)
    assert prepared.stats["tokens_per_character"] < prepared.stats["tokens_total"] / prepared.stats["characters"]


def test_json_ok_is_false_when_train_would_refuse_warnings_alone(run_cli, tiny_model, tmp_path):
    """Over-long rows are warnings, yet too many of them is an exit 2: "ok" must say the same."""
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "tell me " * 300, "completion": "ok."}) + "\n"
                    + json.dumps({"prompt": "hi", "completion": "ok."}) + "\n")
    code, out, _ = run_cli("check", path, "--model", tiny_model, "--no-estimate", "--json", "--max-length", "64")
    report = json.loads(out)
    assert code == 2 and report["errors"] == 0 and report["train_refuses"]
    assert report["ok"] is False


def test_a_csv_answer_that_looks_like_json_stays_text(tmp_path, tokenizer):
    """JSON-looking cells are parsed for messages columns; an answer "[1, 2, 3]" or a JSON answer is still text."""
    path = tmp_path / "faq.csv"
    path.write_text('question,answer\nList them?,"[1, 2, 3]"\nAs JSON?,"{""a"": 1}"\n')
    prepared, report = analyse(path, tokenizer, max_length=256, quality=False)
    assert not report.errors
    assert [r[-1]["content"] for r in prepared.records] == ["[1, 2, 3]", '{"a": 1}']
    joined, report = analyse(path, tokenizer, max_length=256, quality=False,
                             columns=["question=question+answer", "answer=answer"])
    assert not report.errors and joined.records[0][0]["content"] == "List them?\n[1, 2, 3]"


def test_a_csv_messages_column_is_still_parsed(tmp_path, tokenizer):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    path = tmp_path / "chats.csv"
    path.write_text('messages\n"' + json.dumps(msgs).replace('"', '""') + '"\n')
    prepared, report = analyse(path, tokenizer, max_length=256, quality=False)
    assert not report.errors and prepared.records == [msgs]


def test_csv_header_names_are_stripped(tmp_path, tokenizer):
    """'question, answer' (a space after the comma) is the qa format, not an unknown column ' answer' that no
    --columns mapping can name (it strips column names)."""
    path = tmp_path / "faq.csv"
    path.write_text("question, answer\nWhat is X?,It is X.\n")
    prepared, report = analyse(path, tokenizer, max_length=256, quality=False)
    assert not report.errors and prepared.formats == {str(path): "qa"}


def test_a_null_cell_is_empty_content_not_a_wrong_type(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "faq.parquet"
    pq.write_table(pa.table({"question": ["What is X?", None], "answer": ["It is X.", "It is Y."]}), path)
    _, report = analyse(path, tokenizer, max_length=256, quality=False)
    (problem,) = report.errors
    assert problem.line == 2 and problem.cls == "empty_content" and "'question' is empty (null)" in problem.message


# ---- preference data given to a chat method ---------------------------------------------------------------
PAIRS = [{"prompt": q["question"], "chosen": q["answer"], "rejected": "No idea."} for q in QA]
LABELLED = [{"prompt": q["question"], "completion": q["answer"], "label": i % 2 == 0} for i, q in enumerate(QA)]


@pytest.mark.parametrize("records, method", [(PAIRS, "dpo"), (LABELLED, "kto")])
def test_preference_data_for_a_chat_method_says_what_it_is(tmp_path, tokenizer, records, method):
    """Pairs were "unknown format"; labelled answers silently trained their bad answers as chat data."""
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ChatforgeError) as e:
        prepare(path, tokenizer, lenient=True)
    assert e.value.message.startswith(f"{path}:1: this is preference data")
    assert f"--method {method}" in e.value.message and "unknown format" not in str(e.value)


def test_train_refuses_preference_data_for_lora_with_one_clear_error(run_cli, tiny_model, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("Prompt,Chosen,Rejected\n" + "".join(f"{r['prompt']},{r['chosen']},No.\n" for r in PAIRS))
    code, out, err = run_cli("train", "--model", tiny_model, "--data", path, "--method", "lora",
                             "--out", tmp_path / "run", "--max-steps", "1")
    assert code == 2 and "Traceback" not in err
    assert f"{path}:2: this is preference data (pairs: prompt/chosen/rejected)" in err and "--method dpo" in err
    assert not (tmp_path / "run" / "final").exists()


def test_preference_rows_among_chat_files_are_named_in_check(run_cli, tiny_model, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a_chat.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QA))
    (tmp_path / "data" / "b_labelled.jsonl").write_text(json.dumps(LABELLED[0]) + "\n")
    code, out, _ = run_cli("check", tmp_path / "data", "--model", tiny_model, "--no-estimate")
    assert code == 2
    assert "b_labelled.jsonl:1: preference data given as chat data: this is preference data" in out
    assert "--method kto" in out


def test_the_unknown_format_message_names_only_options_the_command_has(tmp_path, tokenizer):
    """`chatforge eval` has --columns but no --format."""
    from chatforge.evaluate.run import load_cases

    path = tmp_path / "wrong.jsonl"
    path.write_text("".join(json.dumps({"question": q["question"], "answr": q["answer"]}) + "\n" for q in QA))
    _, report = analyse(path, tokenizer, max_length=256, quality=False)
    assert "--format" in report.errors[0].message and "--columns" in report.errors[0].message
    with pytest.raises(ChatforgeError) as e:
        load_cases(str(path), tokenizer, None)
    assert "--format" not in str(e.value) and "--columns FIELD=COLUMN" in str(e.value)


def test_a_label_column_of_categories_is_completion_data_not_kto(tmp_path, tokenizer):
    # KTO's labels are true/false; a completion dataset may well have a "label" column of its own
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Ticket {i}: my bill is wrong", "completion": "Sorry, fixing it.",
                                        "label": "billing"}) + "\n" for i in range(3)))
    assert len(prepare(path, tokenizer).examples) == 3
