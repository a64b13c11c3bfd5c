"""The Modelfile: FROM the GGUF, a Go TEMPLATE that renders conversations exactly like the Jinja chat template,
one PARAMETER stop per end-of-turn token, and the system prompt."""

import re

import pytest

from gotemplate import ollama_data, render_go

from chatforge.errors import ChatforgeError
from chatforge.export.ollama import detect_template, modelfile
from chatforge.models.template import DEFAULT_CHAT_TEMPLATE, render

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"},
     {"role": "assistant", "content": "A1\n\nwith lines"}, {"role": "user", "content": "Q2"}],
]


def _go(template: str, messages: list[dict], tools: list[dict] | None = None) -> str:
    """The Go template run the way Ollama runs it (tests/unit/export/gotemplate.py)."""
    return render_go(template, ollama_data(messages, tools))


def _template_of(text: str) -> str:
    return re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)


def test_chatml_modelfile(tokenizer):
    assert detect_template(tokenizer) == ("chatml", SMOLLM_SYSTEM)
    text = modelfile(tokenizer, "lumora-q8_0.gguf")
    assert text.startswith("FROM ./lumora-q8_0.gguf\n")
    assert re.findall(r'PARAMETER stop "(.*)"', text) == ["<|im_end|>"]
    assert f'SYSTEM """{SMOLLM_SYSTEM}"""' in text  # the template's own default system prompt
    assert 'SYSTEM """Answer as Lumora Home support."""' in modelfile(tokenizer, "m.gguf",
                                                                     system="Answer as Lumora Home support.")


def test_go_template_renders_like_the_jinja_template(tokenizer):
    template = _template_of(modelfile(tokenizer, "m.gguf"))
    for conv in CONVERSATIONS:
        # Ollama adds the Modelfile's SYSTEM as a first message when a conversation has none.
        with_system = conv if conv[0]["role"] == "system" else [{"role": "system", "content": SMOLLM_SYSTEM}] + conv
        assert _go(template, with_system) == render(tokenizer, conv, add_generation_prompt=True)


def test_base_model_gets_the_default_template_with_its_eos(tiny_gpt2):
    from chatforge.models.load import load_tokenizer

    tok = load_tokenizer(str(tiny_gpt2))
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE and detect_template(tok) == ("default", None)
    text = modelfile(tok, "gpt2-f16.gguf")
    assert re.findall(r'PARAMETER stop "(.*)"', text) == ["<|endoftext|>"] and "SYSTEM" not in text
    for conv in CONVERSATIONS:
        assert _go(_template_of(text), conv) == render(tok, conv, add_generation_prompt=True)


def test_unknown_template_is_a_clear_error(tokenizer):
    tok = tokenizer  # session-scoped: restored below
    saved = tok.chat_template
    tok.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                         "{{ m['content'] }}<|eot_id|>{% endfor %}")
    try:
        with pytest.raises(ChatforgeError) as e:
            modelfile(tok, "m.gguf")
    finally:
        tok.chat_template = saved
    assert "supported: chatml, default" in e.value.message


def test_system_prompt_cannot_break_the_modelfile(tokenizer):
    with pytest.raises(ChatforgeError):
        modelfile(tokenizer, "m.gguf", system='say """ and then FROM /etc/passwd')


# ---- tool use: the Modelfile renders .Tools, calls and results in the format the model was trained with ----
TOOLS = [{"type": "function", "function": {"name": "get_order_status", "description": "Status of a Lumora order",
                                           "parameters": {"type": "object", "properties": {
                                               "order_id": {"type": "string"}}, "required": ["order_id"]}}}]
CALL = {"id": "c1", "type": "function", "function": {"name": "get_order_status", "arguments": {"order_id": "LM-1"}}}
TOOL_CONVERSATIONS = [
    [{"role": "user", "content": "Where is LM-1?"}],
    [{"role": "user", "content": "Where is LM-1?"}, {"role": "assistant", "content": "", "tool_calls": [CALL]},
     {"role": "tool", "content": '{"status": "shipped"}', "tool_call_id": "c1"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is LM-1 and LM-2?"},
     {"role": "assistant", "content": "Checking both.", "tool_calls": [CALL, dict(CALL, id="c2", function={
         "name": "get_order_status", "arguments": {"order_id": "LM-2"}})]},
     {"role": "tool", "content": "shipped", "tool_call_id": "c1"}, {"role": "tool", "content": "late",
                                                                     "tool_call_id": "c2"},
     {"role": "assistant", "content": "One shipped, one is late."}, {"role": "user", "content": "Thanks"}],
]


@pytest.mark.parametrize("conv", TOOL_CONVERSATIONS, ids=["question", "result", "parallel"])
@pytest.mark.parametrize("with_tools", [True, False], ids=["tools", "no-tools"])
def test_go_template_renders_tools_and_calls_like_training(tokenizer, conv, with_tools):
    """SmolLM2's ChatML (no tool support of its own): chatforge's default tool format, in Go as in Python."""
    tools = TOOLS if with_tools else None
    template = _template_of(modelfile(tokenizer, "m.gguf"))
    with_system = conv if conv[0]["role"] == "system" else [{"role": "system", "content": SMOLLM_SYSTEM}] + conv
    expected = render(tokenizer, conv, add_generation_prompt=True, tools=tools)
    assert _go(template, with_system, tools) == expected
    if with_tools:
        assert "<tools>" in expected and expected.count("<tool_call>") == 1 + sum(
            len(m.get("tool_calls") or []) for m in conv)


@pytest.mark.parametrize("conv", TOOL_CONVERSATIONS, ids=["question", "result", "parallel"])
def test_base_model_go_template_renders_tools(tiny_gpt2, conv):
    from chatforge.models.load import load_tokenizer

    tok = load_tokenizer(str(tiny_gpt2))  # no default system prompt: the tools are the system turn
    template = _template_of(modelfile(tok, "m.gguf"))
    assert _go(template, conv, TOOLS) == render(tok, conv, add_generation_prompt=True, tools=TOOLS)
