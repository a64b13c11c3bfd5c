"""Files as new users save them: a JSON array named .jsonl, UTF-16 from Notepad or Excel, semicolon CSV from a
European Excel, empty files. The one reader (formats.read_rows) is what check and train both use."""

import codecs
import json

import pytest

from chatforge.data import analyse, prepare
from chatforge.errors import ChatforgeError

ROWS = [{"question": f"What is lamp {i}?", "answer": f"Lamp {i} is a reading lamp."} for i in range(30)]
ANSWERS = [r["answer"] for r in ROWS]


def answers(prepared):
    return [r[-1]["content"] for r in prepared.records]


@pytest.mark.parametrize("text", [json.dumps(ROWS, indent=2), json.dumps(ROWS)], ids=["pretty", "one_line"])
def test_a_json_array_named_jsonl_is_read_as_the_array(tmp_path, tokenizer, text):
    f = tmp_path / "rows.jsonl"
    f.write_text(text + "\n", encoding="utf-8")
    prepared, report = analyse(f, tokenizer)  # chatforge check
    assert not report.problems and answers(prepared) == ANSWERS
    assert answers(prepare(f, tokenizer)) == ANSWERS  # chatforge train reads it the same way
    same = tmp_path / "rows.json"
    same.write_text(text, encoding="utf-8")
    assert answers(analyse(same, tokenizer)[0]) == ANSWERS


def test_a_broken_array_named_jsonl_is_one_error_not_one_per_line(tmp_path, tokenizer):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps(ROWS, indent=2).replace('"answer": "Lamp 3', '"answer" "Lamp 3'), encoding="utf-8")
    prepared, report = analyse(f, tokenizer)
    (p,) = report.problems
    assert (p.cls, p.line) == ("invalid_json", 16) and "the rest of the file was not read" in p.message
    assert answers(prepared) == ANSWERS[:3]


def test_json_lines_of_arrays_are_still_lines(tmp_path, tokenizer):
    f = tmp_path / "lists.jsonl"
    f.write_text('["a", "b"]\n["c"]\n', encoding="utf-8")
    _, report = analyse(f, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [(1, "unknown_format"), (2, "unknown_format")]


@pytest.mark.parametrize("codec, bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)])
@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.csv"])
def test_utf16_with_a_bom_is_read(tmp_path, tokenizer, codec, bom, name):
    if name.endswith(".csv"):  # Excel's "Unicode text": UTF-16, tab separated
        text = "question\tanswer\r\n" + "".join(f"{r['question']}\t{r['answer']}\r\n" for r in ROWS)
    elif name.endswith(".json"):
        text = json.dumps(ROWS, indent=2, ensure_ascii=False)
    else:
        text = "".join(json.dumps(r) + "\r\n" for r in ROWS)
    f = tmp_path / name
    f.write_bytes(bom + text.encode(codec))
    prepared, report = analyse(f, tokenizer)
    assert not report.problems and answers(prepared) == ANSWERS


def test_a_semicolon_csv_is_read(tmp_path, tokenizer):
    f = tmp_path / "faq.csv"
    f.write_text('question;answer\nHow much?;"3,50 €; or 3 with the coupon"\nWhere?;In the box\n', encoding="utf-8")
    prepared, report = analyse(f, tokenizer)
    assert not report.problems and answers(prepared) == ["3,50 €; or 3 with the coupon", "In the box"]
    comma = tmp_path / "comma.csv"  # a semicolon in a cell does not make a comma CSV a semicolon one
    comma.write_text('question,answer\nWhy;how?,"Because; that is why"\n', encoding="utf-8")
    assert answers(analyse(comma, tokenizer)[0]) == ["Because; that is why"]


@pytest.mark.parametrize("name, content, why", [
    ("empty.jsonl", b"", "it is empty"), ("blank.jsonl", b"\n \n", "it is empty"),
    ("header.csv", b"question,answer\n", "only a header row"), ("empty.json", b"[]", "no records"),
    ("empty.txt", b" \n", "it is empty")])
def test_a_file_with_no_examples_is_one_clear_error(run_cli, tiny_model, tmp_path, name, content, why):
    f = tmp_path / name
    f.write_bytes(content)
    code, out, err = run_cli("check", f, "--model", tiny_model, "--no-estimate")
    assert code == 2 and out == "", out
    assert f"error: {f}: no examples in this file ({why})" in err
    assert "rows" not in err and "--lenient" not in err and "Traceback" not in err
    with pytest.raises(ChatforgeError, match="no examples in this file"):  # train refuses it the same way
        prepare(f, None)


def test_a_directory_of_empty_files_is_one_error_an_empty_file_among_others_its_own(tmp_path, tokenizer):
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.csv").write_text("question,answer\n")
    with pytest.raises(ChatforgeError, match=r"no examples in any of its 2 data files"):
        analyse(tmp_path, tokenizer)
    (tmp_path / "c.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    prepared, report = analyse(tmp_path, tokenizer)
    assert answers(prepared) == ANSWERS[:1]
    assert [(p.file, p.message) for p in report.problems] == [
        (str(tmp_path / "a.jsonl"), "no examples in this file (it is empty)"),
        (str(tmp_path / "b.csv"), "no examples in this file (only a header row)")]


def test_json_errors_say_at_once(tmp_path, tokenizer):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "answer": "never closed}\n', encoding="utf-8")
    _, report = analyse(f, tokenizer)
    (p,) = report.problems
    assert p.message == "Unterminated string starting at column 29"
    tools = tmp_path / "tools.jsonl"
    tools.write_text(json.dumps({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": '{"a": "x}'}}]}]}) + "\n")
    (p,) = analyse(tools, tokenizer)[1].problems
    assert "(Unterminated string starting at column 7)" in p.message and "at at" not in p.message


def test_records_of_a_one_line_array_are_named_by_their_number(tmp_path, tokenizer):
    # json.dumps(rows) and pandas' to_json(orient="records") put every record on line 1: the line tells nothing
    rows = [dict(r) for r in ROWS]
    rows[4]["answer"] = ""
    rows[9] = dict(ROWS[0])
    f = tmp_path / "rows.json"
    f.write_text(json.dumps(rows), encoding="utf-8")
    _, report = analyse(f, tokenizer, quality=False)
    assert [(p.line, p.record, p.cls) for p in report.problems] == [(1, 5, "empty_content"), (1, 10, "duplicate")]
    assert str(report.problems[0]).startswith(f"{f}:1 (record 5): empty content: ")
    assert report.problems[1].message == f"same as {f}:1 (record 1)"
    with pytest.raises(ChatforgeError, match=r"rows\.json:1 \(record 5\): empty content"):
        prepare(f, tokenizer)  # chatforge train names it the same way


def test_records_of_a_pretty_printed_array_are_named_by_line_alone(tmp_path, tokenizer):
    rows = [dict(r) for r in ROWS]
    rows[4]["answer"] = ""
    f = tmp_path / "rows.json"
    f.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    (p,) = analyse(f, tokenizer, quality=False)[1].problems
    assert (p.line, p.record) == (18, None) and str(p).startswith(f"{f}:18: empty content: ")


def test_a_broken_one_line_array_names_the_record_it_stopped_at(tmp_path, tokenizer):
    f = tmp_path / "rows.json"
    f.write_text(json.dumps(ROWS).replace('"answer": "Lamp 3', '"answer" "Lamp 3'), encoding="utf-8")
    prepared, report = analyse(f, tokenizer)
    (p,) = report.problems
    assert (p.cls, p.line, p.record) == ("invalid_json", 1, 4) and str(p).startswith(f"{f}:1 (record 4): ")
    assert answers(prepared) == ANSWERS[:3]
