"""Common layouts a new user brings: OpenAI content parts, TRL's conversational prompt/completion, Databricks
Dolly, column names in another case, and .tsv files; each read into the same conversation as its plain twin."""

import json

import pytest

from chatforge.data import analyse, prepare
from chatforge.data.formats import data_files
from chatforge.data.preference import prepare_preferences
from chatforge.errors import ChatforgeError

USER, ANSWER = "Where is order LM-1042?", "It has shipped."
PLAIN = [{"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}]


def parts(*texts):
    return [{"type": "text", "text": t} for t in texts]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# ---- OpenAI content parts ----------------------------------------------------------------------------------
def test_text_parts_are_joined_into_the_message_text(tmp_path, tokenizer):
    rec = {"messages": [{"role": "system", "content": parts("Be brief.")},
                        {"role": "user", "content": parts("Where is", "order LM-1042?")},
                        {"role": "assistant", "content": parts(ANSWER)}]}
    prepared = prepare(write_jsonl(tmp_path / "a.jsonl", [rec]), tokenizer)
    assert prepared.records[0] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Where is\norder LM-1042?"},
                                   {"role": "assistant", "content": ANSWER}]
    assert prepared.formats == {str(tmp_path / "a.jsonl"): "openai"}


@pytest.mark.parametrize("part, named", [
    ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "'image_url'"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "'input_audio'"),
    ({"text": "no type"}, "no 'type'"),
    ("a bare string", "a str"),
])
def test_a_non_text_part_is_an_error_at_its_line_never_dropped(tmp_path, tokenizer, part, named):
    bad = {"messages": [{"role": "user", "content": [*parts(USER), part]}, {"role": "assistant", "content": ANSWER}]}
    path = write_jsonl(tmp_path / "a.jsonl", [{"messages": PLAIN}, bad])
    _, report = analyse(path, tokenizer)
    (p,) = report.errors
    assert (p.file, p.line, p.cls) == (str(path), 2, "wrong_type")
    assert "messages[0].content[1]" in p.message and named in p.message and "only text parts" in p.message
    with pytest.raises(ChatforgeError, match="only text parts"):
        prepare(path, tokenizer)


def test_text_parts_in_tool_call_conversations(tmp_path, tokenizer):
    tools = [{"type": "function", "function": {"name": "get_order_status", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "get_order_status",
                                                         "arguments": '{"order_id": "LM-1042"}'}}

    def rec(wrap):
        return {"tools": tools, "messages": [
            {"role": "user", "content": wrap(USER)}, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": wrap('{"status": "shipped"}')},
            {"role": "assistant", "content": wrap(ANSWER)}]}

    a, ra = analyse(write_jsonl(tmp_path / "a.jsonl", [rec(lambda t: parts(t))]), tokenizer)
    b, rb = analyse(write_jsonl(tmp_path / "b.jsonl", [rec(lambda t: t)]), tokenizer)
    assert not ra.errors and not rb.errors
    assert a.records[0] == b.records[0] and a.records[0].tools == b.records[0].tools
    assert a.examples[0].labels == b.examples[0].labels


def test_text_parts_in_preference_data(tmp_path, tokenizer):
    def rec(wrap):
        return {"input": {"messages": [{"role": "user", "content": wrap(USER)}]},
                "preferred_output": [{"role": "assistant", "content": wrap(ANSWER)}],
                "non_preferred_output": [{"role": "assistant", "content": wrap("No idea.")}]}

    a = prepare_preferences(write_jsonl(tmp_path / "a.jsonl", [rec(lambda t: parts(t))]), tokenizer)
    b = prepare_preferences(write_jsonl(tmp_path / "b.jsonl", [rec(lambda t: t)]), tokenizer)
    assert a.records[0].fingerprint() == b.records[0].fingerprint()


# ---- ShareGPT values as text parts ---------------------------------------------------------------------------
def test_sharegpt_text_parts_are_joined_like_openai_content(tmp_path, tokenizer):
    rec = {"conversations": [{"from": "human", "value": parts("Where is", "order LM-1042?")},
                             {"from": "gpt", "value": parts(ANSWER)}]}
    prepared = prepare(write_jsonl(tmp_path / "a.jsonl", [rec]), tokenizer)
    assert prepared.records == [[{"role": "user", "content": "Where is\norder LM-1042?"}, PLAIN[1]]]


def test_a_sharegpt_non_text_part_is_an_error_at_its_line(tmp_path, tokenizer):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    plain = {"conversations": [{"from": "human", "value": USER}, {"from": "gpt", "value": ANSWER}]}
    bad = {"conversations": [{"from": "human", "value": [*parts(USER), image]}, {"from": "gpt", "value": ANSWER}]}
    path = write_jsonl(tmp_path / "a.jsonl", [plain, bad])
    _, report = analyse(path, tokenizer)
    (p,) = report.errors
    assert (p.file, p.line, p.cls) == (str(path), 2, "wrong_type")
    assert "conversations[0].value[1] is a part of type 'image_url'" in p.message and "only text parts" in p.message


# ---- OpenAI's developer role ---------------------------------------------------------------------------------
def test_the_developer_role_is_read_as_system(tmp_path, tokenizer):
    developer = {"messages": [{"role": "developer", "content": "Be brief."}, *PLAIN]}
    system = {"messages": [{"role": "system", "content": "Be brief."}, *PLAIN]}
    a = prepare(write_jsonl(tmp_path / "a.jsonl", [developer]), tokenizer)
    b = prepare(write_jsonl(tmp_path / "b.jsonl", [system]), tokenizer)
    assert a.records == b.records == [system["messages"]]
    assert a.examples[0].input_ids == b.examples[0].input_ids


def test_the_developer_role_in_a_preference_prompt(tmp_path, tokenizer):
    def rec(role):
        return {"input": {"messages": [{"role": role, "content": "Be brief."}, PLAIN[0]]},
                "preferred_output": [PLAIN[1]], "non_preferred_output": [{"role": "assistant", "content": "No."}]}

    a = prepare_preferences(write_jsonl(tmp_path / "a.jsonl", [rec("developer")]), tokenizer)
    b = prepare_preferences(write_jsonl(tmp_path / "b.jsonl", [rec("system")]), tokenizer)
    assert a.records[0].fingerprint() == b.records[0].fingerprint()


# ---- TRL's conversational prompt/completion -----------------------------------------------------------------
def test_trl_conversational_prompt_completion_is_the_prompt_then_the_completion(tmp_path, tokenizer):
    conversational = {"prompt": [{"role": "user", "content": USER}],
                      "completion": [{"role": "assistant", "content": ANSWER}]}
    standard = {"prompt": USER, "completion": ANSWER}
    a = prepare(write_jsonl(tmp_path / "a.jsonl", [conversational]), tokenizer)
    b = prepare(write_jsonl(tmp_path / "b.jsonl", [standard]), tokenizer)
    assert a.records == b.records == [PLAIN]
    assert a.formats == {str(tmp_path / "a.jsonl"): "completion"}
    assert a.examples[0].labels == b.examples[0].labels


def test_trl_conversational_prompt_trains_only_the_completion(tmp_path, tokenizer):
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    rec = {"prompt": [*earlier, {"role": "user", "content": parts(USER)}],
           "completion": [{"role": "assistant", "content": ANSWER}]}
    same = {"messages": [earlier[0], dict(earlier[1], weight=0), *PLAIN]}
    a = prepare(write_jsonl(tmp_path / "a.jsonl", [rec]), tokenizer)
    b = prepare(write_jsonl(tmp_path / "b.jsonl", [same]), tokenizer)
    assert a.records == b.records
    assert a.examples[0].input_ids == b.examples[0].input_ids and a.examples[0].labels == b.examples[0].labels


def test_trl_prompt_of_another_type_is_named(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": USER, "completion": ANSWER},
                                              {"prompt": {"role": "user"}, "completion": ANSWER}])
    _, report = analyse(path, tokenizer)
    (p,) = report.errors
    assert p.line == 2 and "'prompt' must be a string or a list of messages, not dict" in p.message


# ---- Databricks Dolly --------------------------------------------------------------------------------------
def test_dolly_context_joins_the_instruction_like_alpaca_input(tmp_path, tokenizer):
    dolly = [{"instruction": "Summarise this.", "context": "Cats sleep most of the day.",
              "response": "Cats nap a lot.", "category": "summarization"},
             {"instruction": "Name a colour.", "context": "", "response": "Blue.", "category": "open_qa"}]
    alpaca = [{"instruction": r["instruction"], "input": r["context"], "output": r["response"]} for r in dolly]
    a = prepare(write_jsonl(tmp_path / "dolly.jsonl", dolly), tokenizer)
    b = prepare(write_jsonl(tmp_path / "alpaca.jsonl", alpaca), tokenizer)
    assert a.records == b.records
    assert a.records[0][0] == {"role": "user", "content": "Summarise this.\n\nCats sleep most of the day."}
    assert a.records[1][0] == {"role": "user", "content": "Name a colour."}
    assert a.formats == {str(tmp_path / "dolly.jsonl"): "dolly"}


# ---- column names in another case --------------------------------------------------------------------------
def test_known_fields_match_in_any_case_and_spacing(tmp_path, tokenizer):
    csv = tmp_path / "faq.csv"
    csv.write_text(f"Question,Answer\n{USER},{ANSWER}\n", encoding="utf-8")
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"Instruction": USER, " Output ": ANSWER}])
    assert prepare(csv, tokenizer).records == [PLAIN]
    prepared = prepare(alpaca, tokenizer)
    assert prepared.records == [PLAIN] and prepared.formats == {str(alpaca): "alpaca"}


def test_an_exact_field_wins_over_one_in_another_case(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": USER, "Question": "ignored", "ANSWER": ANSWER}])
    assert prepare(path, tokenizer).records == [PLAIN]


def test_preference_fields_match_in_any_case(tmp_path, tokenizer):
    lower = write_jsonl(tmp_path / "lower.jsonl", [{"prompt": USER, "chosen": ANSWER, "rejected": "No idea."}])
    upper = write_jsonl(tmp_path / "upper.jsonl", [{"Prompt": USER, "Chosen": ANSWER, "Rejected": "No idea."}])
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"Prompt,Chosen,Rejected\n{USER},{ANSWER},No idea.\n", encoding="utf-8")
    kto = write_jsonl(tmp_path / "kto.jsonl", [{"PROMPT": USER, "Completion": ANSWER, "Label": True}])
    expected = prepare_preferences(lower, tokenizer).records[0].fingerprint()
    for path in (upper, csv):
        prepared = prepare_preferences(path, tokenizer)
        assert prepared.records[0].fingerprint() == expected and prepared.formats == {str(path): "trl_paired"}
    assert prepare_preferences(kto, tokenizer).records[0].label is True


def test_check_reads_a_preference_csv_in_another_case(run_cli, tiny_model, tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"Prompt,Chosen,Rejected\n{USER},{ANSWER},No idea.\n", encoding="utf-8")
    code, out, err = run_cli("check", csv, "--model", tiny_model, "--no-estimate")
    assert code == 0, out + err
    assert f"{csv}: 1 row, format trl_paired (pairs)" in out and "train with --method dpo" in out


def test_a_mapped_column_in_another_case_is_suggested(run_cli, tiny_model, tmp_path):
    csv = tmp_path / "faq.csv"
    csv.write_text(f"Title,Reply\n{USER},{ANSWER}\n", encoding="utf-8")
    code, out, _ = run_cli("check", csv, "--model", tiny_model, "--no-estimate",
                           "--columns", "question=title", "answer=Reply")
    assert code == 2
    assert f"{csv}:2: missing messages" in out and "did you mean 'Title'?" in out


# ---- .tsv files --------------------------------------------------------------------------------------------
def test_tsv_files_are_read_tab_separated(tmp_path, tokenizer):
    tsv = tmp_path / "faq.tsv"  # one column whose cells hold commas: only the tab separates
    tsv.write_text("text\nOne, two, three.\nFour, five.\n", encoding="utf-8")
    assert data_files(tmp_path) == [tsv]
    prepared = prepare(tsv, tokenizer, max_length=64)
    assert prepared.records == ["One, two, three.", "Four, five."]
    qa = tmp_path / "qa.tsv"
    qa.write_text(f"question\tanswer\n{USER}\t{ANSWER}\n", encoding="utf-8")
    assert prepare(qa, tokenizer).records == [PLAIN]


def test_an_empty_tsv_says_it_has_only_a_header(tmp_path, tokenizer):
    tsv = tmp_path / "faq.tsv"
    tsv.write_text("question\tanswer\n", encoding="utf-8")
    with pytest.raises(ChatforgeError, match="only a header row"):
        prepare(tsv, tokenizer)


# ---- what `chatforge check` says -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, records, fmt", [
    ("dolly.jsonl", [{"instruction": USER, "context": "", "response": ANSWER, "category": "open_qa"}], "dolly"),
    ("trl.jsonl", [{"prompt": PLAIN[:1], "completion": PLAIN[1:]}], "completion"),
    ("parts.jsonl", [{"messages": [{"role": "user", "content": parts(USER)}, PLAIN[1]]}], "openai"),
])
def test_check_names_the_detected_format(run_cli, tiny_model, tmp_path, name, records, fmt):
    path = write_jsonl(tmp_path / name, records)
    code, out, err = run_cli("check", path, "--model", tiny_model, "--no-estimate")
    assert code == 0, out + err
    assert f"{path}: 1 row, format {fmt} (chat)" in out and "0 errors" in out


def test_check_reads_a_tsv_file(run_cli, tiny_model, tmp_path):
    tsv = tmp_path / "faq.tsv"
    tsv.write_text(f"Question\tAnswer\n{USER}\t{ANSWER}\n", encoding="utf-8")
    code, out, err = run_cli("check", tsv, "--model", tiny_model, "--no-estimate")
    assert code == 0, out + err
    assert f"{tsv}: 1 row, format qa (chat)" in out
