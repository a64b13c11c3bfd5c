"""Column mapping: people's own column names -> format fields, the same from the CLI, YAML and Python API."""

import json

import pytest

from chatforge.config import build
from chatforge.data import analyse, prepare
from chatforge.data.columns import parse_columns, suggest
from chatforge.errors import ChatforgeError

CSV = ("department,title,ask,answer\n"
       "内科,头痛怎么办,最近总是头痛，晚上睡不好。,注意休息，必要时就医。\n"
       "消化科,胃疼,饭后胃疼，有时反酸。,少食多餐，避免辛辣。\n")


@pytest.fixture
def faq(tmp_path):
    f = tmp_path / "faq.csv"
    f.write_text(CSV, encoding="utf-8")
    return f


def test_several_columns_are_joined_in_order_and_system_is_mapped(faq, tokenizer):
    prepared = prepare(faq, tokenizer, columns=["question=title+ask", "answer=answer", "system=department"])
    first = prepared.records[0]
    assert first == [{"role": "system", "content": "内科"},
                     {"role": "user", "content": "头痛怎么办\n最近总是头痛，晚上睡不好。"},
                     {"role": "assistant", "content": "注意休息，必要时就医。"}]
    assert prepared.formats == {str(faq): "qa"}


def test_separator_option_and_python_dict_form(faq, tokenizer):
    prepared = prepare(faq, tokenizer, columns={"question": ["title", "ask"], "answer": "answer"},
                       column_separator="：")
    assert prepared.records[1][0] == {"role": "user", "content": "胃疼：饭后胃疼，有时反酸。"}
    assert parse_columns(["question=a+b"], "\\t").separator == "\t"


def test_the_mapping_reaches_every_format_field(tmp_path, tokenizer):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"task": "Translate", "src": "猫", "tgt": "cat"}, ensure_ascii=False) + "\n")
    prepared = prepare(f, tokenizer, columns="instruction=task input=src output=tgt")
    assert prepared.formats[str(f)] == "alpaca"
    assert prepared.records[0][-2:] == [{"role": "user", "content": "Translate\n\n猫"},
                                        {"role": "assistant", "content": "cat"}]


def test_unknown_format_lists_the_columns_and_suggests_a_mapping(faq, tokenizer):
    _, report = analyse(faq, tokenizer)
    msg = report.errors[0].message
    assert report.errors[0].cls == "unknown_format"
    assert "its columns: department, title, ask, answer" in msg
    assert "--columns question=title+ask answer=answer system=department" in msg
    assert suggest(["foo", "bar"]) is None


@pytest.mark.parametrize("spec, expected", [
    (["question"], "expected FIELD=COLUMN"),
    (["colour=title"], "not a field of any format"),
    (["answer=a", "answer=b"], "mapped twice"),
    (["question=a+"], "empty column name"),
])
def test_bad_mappings_are_clear_errors(spec, expected):
    with pytest.raises(ChatforgeError, match=expected):
        parse_columns(spec)


def test_a_mapped_column_missing_from_a_row_names_the_row(faq, tokenizer):
    _, report = analyse(faq, tokenizer, columns=["question=title+body", "answer=answer"])
    assert report.errors[0].line == 2 and "'body'" in report.errors[0].message


def test_check_cli_prints_the_mapping_it_used(run_cli, tiny_model, faq):
    code, out, err = run_cli("check", faq, "--model", tiny_model, "--no-estimate", "--columns", "question=title+ask",
                             "answer=answer", "system=department")
    assert code == 0, out + err
    assert 'columns: question = title + ask, answer = answer, system = department (joined with "\\n")' in out
    assert "characters      " in out  # lengths in characters (one per Chinese character), not words or bytes
    code, out, _ = run_cli("check", faq, "--model", tiny_model, "--no-estimate")
    assert code == 2 and "--columns question=title+ask" in out


def test_yaml_and_cli_give_the_same_train_config(tmp_path):
    import argparse

    from chatforge.config import add_arguments
    from chatforge.train.config import TrainConfig

    y = tmp_path / "c.yaml"
    y.write_text("columns: [question=title+ask, answer=answer]\ncolumn_separator: ' / '\n", encoding="utf-8")
    from_yaml = build(TrainConfig, yaml_file=y)
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    from_cli = build(TrainConfig, parser.parse_args(["--columns", "question=title+ask", "answer=answer",
                                                     "--column-separator", " / "]))
    assert from_yaml.columns == from_cli.columns == ["question=title+ask", "answer=answer"]
    assert from_yaml.column_separator == from_cli.column_separator == " / "
