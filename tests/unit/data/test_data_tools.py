"""Tool-calling data: both layouts read into one shape, every tool problem reported at its file:line, and loss
masks token by token for the default tool format (ChatML and a base model) and two native tool templates."""

import copy
import json

import pytest
from tool_templates import HERMES, LLAMA31

from chatforge.data import analyse
from chatforge.data.encode import IGNORE, encode_chat
from chatforge.models.tools import DEFAULT_FORMAT, tool_format

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
ORDER = {"type": "function", "function": {
    "name": "get_order_status", "description": "Look up a Lumora order",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
DEVICE = {"type": "function", "function": {
    "name": "get_device_status", "description": "Status of a device in a home",
    "parameters": {"type": "object", "properties": {"device": {"type": "string"}, "home_id": {"type": "string"}},
                   "required": ["device", "home_id"]}}}
TOOLS = [ORDER, DEVICE]
USER = {"role": "user", "content": "Where is order LM-1042?"}
RESULT = '{"status": "shipped"}'


def call(name="get_order_status", args='{"order_id": "LM-1042"}', cid="c1"):
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]}


def answered(*calls_and_results):
    return [USER, *calls_and_results, {"role": "assistant", "content": "It has shipped."}]


TOOL_RESULT = {"role": "tool", "tool_call_id": "c1", "content": RESULT}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# ---- formats ---------------------------------------------------------------------------------------------------
def test_openai_and_sharegpt_layouts_read_into_the_same_conversation(tmp_path, tokenizer):
    openai_rec = {"tools": TOOLS, "messages": answered(call(), TOOL_RESULT)}
    sharegpt_rec = {"tools": json.dumps([t["function"] for t in TOOLS]), "conversations": [
        {"from": "human", "value": USER["content"]},
        {"from": "function_call", "value": json.dumps({"name": "get_order_status",
                                                       "arguments": {"order_id": "LM-1042"}})},
        {"from": "observation", "value": RESULT}, {"from": "gpt", "value": "It has shipped."}]}
    a, ra = analyse(write_jsonl(tmp_path / "a.jsonl", [openai_rec]), tokenizer)
    b, rb = analyse(write_jsonl(tmp_path / "b.jsonl", [sharegpt_rec]), tokenizer)
    assert not ra.problems and not rb.problems
    (x,), (y,) = a.records, b.records
    assert x.tools == y.tools == TOOLS  # bare function definitions become OpenAI's {"type": "function", ...}
    assert x[1]["tool_calls"][0]["function"] == y[1]["tool_calls"][0]["function"] == {
        "name": "get_order_status", "arguments": {"order_id": "LM-1042"}}  # the JSON string is parsed
    assert [m["role"] for m in x] == [m["role"] for m in y] == ["user", "assistant", "tool", "assistant"]
    assert a.examples[0].input_ids == b.examples[0].input_ids and a.examples[0].labels == b.examples[0].labels


def test_every_tool_problem_by_line(tmp_path, tokenizer):
    rows = [
        {"tools": TOOLS, "messages": answered(call(), TOOL_RESULT)},                               # 1 valid
        {"tools": TOOLS, "messages": [USER, call()]},                  # 2 valid: a call may end the conversation
        {"tools": TOOLS, "messages": answered(call("cancel_order"), TOOL_RESULT)},                # 3
        {"tools": TOOLS, "messages": answered(call(args='{"order_id": '), TOOL_RESULT)},          # 4 bad JSON
        {"tools": TOOLS, "messages": answered(call("get_device_status", '{"device": "Halo"}'),
                                              TOOL_RESULT)},                                       # 5 no home_id
        {"tools": TOOLS, "messages": [USER, TOOL_RESULT, {"role": "assistant", "content": "?"}]},  # 6 orphan
        {"tools": TOOLS, "messages": [USER, call(), {"role": "user", "content": "Hello?"},
                                      {"role": "assistant", "content": "Sorry."}]},                # 7 unanswered
        {"tools": TOOLS, "messages": answered(call(), dict(TOOL_RESULT, tool_call_id="zz"))},      # 8 wrong id
        {"tools": [{"type": "function", "function": {"name": "bad name!"}}],
         "messages": [USER, {"role": "assistant", "content": "Hi"}]},                              # 9
        {"tools": "[{not json", "messages": [USER, {"role": "assistant", "content": "Hi"}]},       # 10
        {"tools": TOOLS, "messages": [USER, call(), TOOL_RESULT]},                                 # 11 ends on tool
        {"tools": TOOLS, "messages": [USER, call(), dict(TOOL_RESULT, content="x"), TOOL_RESULT,
                                      {"role": "assistant", "content": "Done."}]},                 # 12 two results
    ]
    f = write_jsonl(tmp_path / "tools.jsonl", rows)
    prepared, report = analyse(f, tokenizer)
    got = [(p.line, p.cls) for p in report.errors]
    assert got == [(3, "unknown_tool"), (4, "invalid_arguments"), (5, "invalid_arguments"),
                   (6, "orphan_tool_result"), (7, "unanswered_call"), (8, "orphan_tool_result"),
                   (9, "invalid_tools"), (10, "invalid_tools"), (11, "non_alternating"), (12, "orphan_tool_result")]
    msgs = {p.line: p.message for p in report.errors}
    assert "'cancel_order'" in msgs[3] and "get_order_status, get_device_status" in msgs[3]
    assert "messages[1].tool_calls[0].function.arguments" in msgs[4] and "not valid JSON" in msgs[4]
    assert "'home_id'" in msgs[5] and "messages[2]" in msgs[7] and "get_order_status" in msgs[7]
    assert "tools[0].function.name" in msgs[9]
    assert str(report.errors[0]).startswith(f"{f}:3: call to a function not in tools: ")
    assert len(prepared.examples) == 2


# ---- masks -----------------------------------------------------------------------------------------------------
def oracle(tok, segments):
    """Tokenize the hand-written text whole; a token is expected trained when it starts in a trained segment."""
    text = "".join(t for t, _ in segments)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    bounds, pos = [], 0
    for t, trained in segments:
        bounds.append((pos, pos + len(t), trained))
        pos += len(t)
    labels = [tid if any(a <= start < b and tr for a, b, tr in bounds) else IGNORE
              for tid, (start, _) in zip(enc["input_ids"], enc["offset_mapping"])]
    return list(enc["input_ids"]), labels


def check(tok, messages, tools, segments):
    got = encode_chat(tok, _parsed(messages), tools=tools)
    ids, labels = oracle(tok, segments)
    assert tok.decode(got.input_ids) == tok.decode(ids), "the rendered text differs from the hand-written one"
    assert got.input_ids == ids
    for i, (a, b) in enumerate(zip(got.labels, labels)):
        assert a == b, f"token {i} {tok.decode([ids[i]])!r}: label {a}, expected {b}"
    return got


def _parsed(messages):
    """Arguments as dicts, the shape the data layer hands to encode_chat."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            m = dict(m, content=m["content"] or "", tool_calls=[
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in m["tool_calls"]])
        out.append(m)
    return out


CONVERSATION = [USER, dict(call(), content="Let me check."), TOOL_RESULT,
                {"role": "assistant", "content": "It has shipped."}]
CALL_JSON = '{"name": "get_order_status", "arguments": {"order_id": "LM-1042"}}'
TOOLS_TEXT = ('# Tools\n\nTo call a function, answer <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>\n\n'
              "<tools>\n"
              + "\n".join(json.dumps(t) for t in TOOLS) + "\n</tools>")


def chatml(role, content):
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def test_default_format_on_chatml_trains_calls_and_answers_only(tokenizer):
    """SmolLM2's template has no tool support: chatforge's default format, the template's own system prompt."""
    assert tool_format(tokenizer) == DEFAULT_FORMAT
    got = check(tokenizer, CONVERSATION, TOOLS, [
        (chatml("system", SMOL_SYSTEM + "\n\n" + TOOLS_TEXT), False),  # tool definitions: never trained
        (chatml("user", USER["content"]) + "<|im_start|>assistant\n", False),
        (f"Let me check.\n<tool_call>\n{CALL_JSON}\n</tool_call><|im_end|>", True), ("\n", False),
        (chatml("tool", RESULT) + "<|im_start|>assistant\n", False),  # the tool result: never trained
        ("It has shipped.<|im_end|>", True), ("\n", False)])
    assert tokenizer.decode([t for t in got.labels if t != IGNORE]).count("<tool_call>") == 1


def test_default_format_with_a_system_prompt_and_parallel_calls(tokenizer):
    two = {"role": "assistant", "content": None, "tool_calls": [
        call()["tool_calls"][0],
        {"id": "c2", "type": "function", "function": {"name": "get_device_status",
                                                       "arguments": '{"device": "Halo", "home_id": "H7"}'}}]}
    msgs = [{"role": "system", "content": "Be brief."}, USER, two, TOOL_RESULT,
            {"role": "tool", "tool_call_id": "c2", "content": "online"}, {"role": "assistant", "content": "Fine."}]
    device_json = '{"name": "get_device_status", "arguments": {"device": "Halo", "home_id": "H7"}}'
    check(tokenizer, msgs, TOOLS, [
        (chatml("system", "Be brief.\n\n" + TOOLS_TEXT) + chatml("user", USER["content"])
         + "<|im_start|>assistant\n", False),
        (f"<tool_call>\n{CALL_JSON}\n</tool_call>\n<tool_call>\n{device_json}\n</tool_call><|im_end|>", True),
        ("\n", False),
        (chatml("tool", RESULT) + chatml("tool", "online") + "<|im_start|>assistant\n", False),
        ("Fine.<|im_end|>", True), ("\n", False)])


def test_default_format_on_a_base_model(base_tokenizer):
    tok = base_tokenizer
    check(tok, CONVERSATION, TOOLS, [
        ("### System:\n" + TOOLS_TEXT + "\n\n### User:\n" + USER["content"] + "\n\n### Assistant:\n", False),
        (f"Let me check.\n<tool_call>\n{CALL_JSON}\n</tool_call><|endoftext|>", True), ("\n\n", False),
        ("### Tool:\n" + RESULT + "\n\n### Assistant:\n", False),
        ("It has shipped.<|endoftext|>", True), ("\n\n", False)])


@pytest.fixture(scope="module")
def hermes_tokenizer(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = HERMES
    return tok


@pytest.fixture(scope="module")
def llama31_tokenizer(llama3_tokenizer):
    tok = copy.deepcopy(llama3_tokenizer)
    tok.chat_template = LLAMA31
    return tok


def test_native_hermes_template(hermes_tokenizer):
    tok = hermes_tokenizer
    fmt = tool_format(tok)
    assert fmt.native and (fmt.open, fmt.close, fmt.args_key) == ("<tool_call>", "</tool_call>", "arguments")
    assert fmt.prefix("get_order_status") == '<tool_call>\n{"name": "get_order_status", "arguments": '
    system = ("You are a helpful assistant.\n\n# Tools\n\n<tools>\n" + "\n".join(json.dumps(t) for t in TOOLS)
              + '\n</tools>\n\nFor each call return <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call>')
    check(tok, CONVERSATION, TOOLS, [
        (chatml("system", system) + chatml("user", USER["content"]) + "<|im_start|>assistant\n", False),
        (f"Let me check.\n<tool_call>\n{CALL_JSON}\n</tool_call><|im_end|>", True), ("\n", False),
        ("<|im_start|>user\n<tool_response>\n" + RESULT + "\n</tool_response><|im_end|>\n"
         + "<|im_start|>assistant\n", False),  # results inside a user turn: never trained
        ("It has shipped.<|im_end|>", True), ("\n", False)])


def test_native_llama31_template(llama31_tokenizer):
    tok = llama31_tokenizer
    fmt = tool_format(tok)
    assert fmt.native and (fmt.open, fmt.close, fmt.name_key, fmt.args_key) == ("", "", "name", "parameters")
    head = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    tools_text = ('Answer a call as JSON {"name": function name, "parameters": arguments}.\n\n'
                  + "".join(json.dumps(t, indent=4) + "\n\n" for t in TOOLS))
    msgs = [USER, call(), TOOL_RESULT, {"role": "assistant", "content": "It has shipped."}]
    check(tok, msgs, TOOLS, [
        ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + tools_text + "<|eot_id|>"
         + "<|start_header_id|>user<|end_header_id|>\n\n" + USER["content"] + "<|eot_id|>" + head, False),
        ('{"name": "get_order_status", "parameters": {"order_id": "LM-1042"}}<|eot_id|>', True),
        ("<|start_header_id|>ipython<|end_header_id|>\n\n" + RESULT + "<|eot_id|>" + head, False),
        ("It has shipped.<|eot_id|>", True)])


def test_tool_definitions_that_are_broken_json_name_the_column_once():
    from chatforge.models.tools import ToolsError, normalize_tools

    with pytest.raises(ToolsError) as e:
        normalize_tools('[{"name": "x')
    assert "Unterminated string starting at column 11" in e.value.message and "at at" not in e.value.message
