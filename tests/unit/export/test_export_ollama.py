"""The Modelfile: FROM the GGUF, a Go TEMPLATE that renders conversations exactly like the Jinja chat template,
one PARAMETER stop per end-of-turn token, and the system prompt."""

import re

import pytest

from chatforge.errors import ChatforgeError
from chatforge.export.ollama import detect_template, modelfile
from chatforge.models.template import DEFAULT_CHAT_TEMPLATE, render

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"},
     {"role": "assistant", "content": "A1\n\nwith lines"}, {"role": "user", "content": "Q2"}],
]


def _go(template: str, messages: list[dict]) -> str:
    """Just enough of Go's text/template for these templates: range .Messages, if/else if/else on
    `eq .Role "x"`, .Role and .Content, and {{- -}} whitespace trimming."""
    parts = re.split(r"({{-?\s*.*?\s*-?}})", template)
    for i, p in enumerate(parts):  # apply trimming markers to the neighbouring text
        if p.startswith("{{-") and i > 0:
            parts[i - 1] = parts[i - 1].rstrip()
        if p.endswith("-}}") and i + 1 < len(parts):
            parts[i + 1] = parts[i + 1].lstrip()
    tags = [p if not p.startswith("{{") else p.strip("{}-").strip() for p in parts]
    is_tag = [p.startswith("{{") for p in parts]

    def run(i: int, msg: dict | None, out: list[str], emit: bool) -> int:
        """Evaluate from token i until an unmatched end/else; return that token's index."""
        while i < len(tags):
            t = tags[i]
            if not is_tag[i]:
                out.append(t) if emit else None
            elif t in ("end",) or t.startswith("else"):
                return i
            elif t == "range .Messages":
                stop = i
                for m in messages:
                    stop = run(i + 1, m, out, emit)
                i = stop if messages else _skip(i + 1)
            elif t.startswith("if "):
                i = _branches(i, msg, out, emit)
            else:
                out.append(msg["role"] if t == ".Role" else msg["content"]) if emit else None
            i += 1
        return i

    def _branches(i, msg, out, emit):
        taken = False
        while True:
            t = tags[i]
            cond = t.startswith(("if ", "else if ")) and msg["role"] == re.search(r'"(\w+)"', t).group(1)
            cond = cond or t == "else"
            i = run(i + 1, msg, out, emit and cond and not taken)
            taken = taken or cond
            if tags[i] == "end":
                return i

    def _skip(i):
        return run(i, None, [], False)

    out: list[str] = []
    run(0, None, out, True)
    return "".join(out)


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
