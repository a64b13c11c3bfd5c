"""An Ollama Modelfile for an exported GGUF: the same chat template (as a Go template) and stop tokens.

A Jinja chat template cannot be translated to Go in general, so we recognise the template families chatforge
exports by what they render, and write the Go template of that family:

    chatml   <|im_start|>{role}\\n{content}<|im_end|>\\n ... <|im_start|>assistant\\n   (SmolLM2, other ChatML models)
    default  ### {Role}:\\n{content}[EOS after assistant]\\n\\n ... ### Assistant:\\n  (chatforge's, base models)

A template that adds a default system prompt when the conversation has none (SmolLM2's does) gets it as the
Modelfile's SYSTEM: Ollama adds SYSTEM exactly in that case, so the two render the same conversations.
Tool use (Ollama's .Tools, .ToolCalls, "tool" messages) is rendered in chatforge's default tool format, the
one such models are trained with (see `_tools_templates`).
"""

from __future__ import annotations

from pathlib import Path

from chatforge.errors import ChatforgeError

# Go templates (Ollama's `.Messages` API). They end with the assistant header, like add_generation_prompt.
CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
             "<|im_start|>assistant\n")
DEFAULT_GO = ("{{- range .Messages }}### {{ if eq .Role \"system\" }}System{{ else if eq .Role \"user\" }}User"
              "{{ else }}Assistant{{ end }}:\n{{ .Content }}{{ if eq .Role \"assistant\" }}EOS{{ end }}\n\n{{ end }}"
              "### Assistant:\n")

# The same with tool use in chatforge's default tool format (chatforge.models.tools): Ollama's `.Tools` in the
# system turn (after the system prompt, or as the system turn when there is none), an assistant's
# `.ToolCalls` as <tool_call> blocks, and tool results as their own "tool" turn: what the model was trained on.
# Ollama serializes the tool definitions and call arguments with its own JSON encoder (its whitespace and key
# order may differ from Python's json.dumps that training used); the layout around them is identical.
def _go_tools_block() -> str:
    from chatforge.models.tools import TOOLS_FOOTER, TOOLS_HEADER

    return TOOLS_HEADER + "{{ range $k, $t := $.Tools }}{{ if $k }}\n{{ end }}{{ json $t }}{{ end }}" + TOOLS_FOOTER


_GO_CALLS = ('{{ range $j, $c := $m.ToolCalls }}{{ if or $j $m.Content }}\n{{ end }}<tool_call>\n'
             '{"name": "{{ $c.Function.Name }}", "arguments": {{ json $c.Function.Arguments }}}\n</tool_call>{{ end }}')
_GO_NO_SYSTEM = '{{- if and .Tools (ne (index .Messages 0).Role "system") }}'
_GO_FIRST_SYSTEM = '{{ if and (eq $i 0) (eq $m.Role "system") $.Tools }}\n\n'


def _tools_templates() -> dict[str, str]:
    block = _go_tools_block()
    chatml = (_GO_NO_SYSTEM + "<|im_start|>system\n" + block + "<|im_end|>\n{{ end }}"
              "{{- range $i, $m := .Messages }}<|im_start|>{{ $m.Role }}\n{{ $m.Content }}"
              + _GO_FIRST_SYSTEM + block + "{{ end }}" + _GO_CALLS + "<|im_end|>\n{{ end }}<|im_start|>assistant\n")
    default = (_GO_NO_SYSTEM + "### System:\n" + block + "\n\n{{ end }}"
               '{{- range $i, $m := .Messages }}### {{ if eq $m.Role "system" }}System{{ else if eq $m.Role "user" }}'
               'User{{ else if eq $m.Role "tool" }}Tool{{ else }}Assistant{{ end }}:\n{{ $m.Content }}'
               + _GO_FIRST_SYSTEM + block + "{{ end }}" + _GO_CALLS
               + '{{ if eq $m.Role "assistant" }}EOS{{ end }}\n\n{{ end }}### Assistant:\n')
    return {"chatml": chatml, "default": default}


# A conversation that exercises every part of a template: system, user, assistant, then a new user turn.
_PROBE = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q1"},
          {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]


def _render_chatml(messages: list[dict], eos: str) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
        "<|im_start|>assistant\n"


def _render_default(messages: list[dict], eos: str) -> str:
    return "".join(f"### {m['role'].capitalize()}:\n{m['content']}{eos if m['role'] == 'assistant' else ''}\n\n"
                   for m in messages) + "### Assistant:\n"


FAMILIES = {"chatml": (_render_chatml, CHATML_GO), "default": (_render_default, DEFAULT_GO)}


def detect_template(tokenizer) -> tuple[str, str | None]:
    """(family, default system prompt or None) of the tokenizer's chat template, or a clear error."""
    from chatforge.models.template import adds_bos, render

    eos = tokenizer.eos_token or ""
    with_system = render(tokenizer, _PROBE, add_generation_prompt=True)
    without = render(tokenizer, _PROBE[1:], add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and with_system.startswith(bos) and without.startswith(bos) and adds_bos(tokenizer):
        # A template with BOS first (chatforge's default for Gemma's <bos>, also when a run's trained system
        # prompt was written into it): the Go template leaves BOS out, because llama.cpp puts it before every
        # prompt of such a model itself (the GGUF's tokenizer.ggml.add_bos_token).
        with_system, without = with_system.removeprefix(bos), without.removeprefix(bos)
    for family, (python_render, _) in FAMILIES.items():
        if with_system != python_render(_PROBE, eos):
            continue
        if without == python_render(_PROBE[1:], eos):
            return family, None
        # The template inserts its own system turn when there is none: its text sits where "SYS" was.
        head, _, tail = with_system.partition("SYS")
        if without.startswith(head) and without.endswith(tail) and len(without) > len(head) + len(tail):
            return family, without[len(head):len(without) - len(tail)]
    raise ChatforgeError("--ollama: this model's chat template is not one chatforge can translate to an Ollama "
                         f"template; supported: {', '.join(FAMILIES)} (ChatML, and chatforge's default template)",
                         hint="export without --ollama: the GGUF itself carries the template "
                              "(tokenizer.chat_template), which recent Ollama versions read")


def modelfile(tokenizer, gguf_name: str, *, system: str | None = None) -> str:
    """The Modelfile text: FROM ./gguf_name, TEMPLATE, one PARAMETER stop per end-of-turn token, SYSTEM."""
    from chatforge.models.template import end_of_turn_ids

    from chatforge.models.tools import tool_format

    family, default_system = detect_template(tokenizer)
    # A template with its own tool format keeps the plain Go template (Ollama cannot reproduce it from the
    # ChatML family); every other model was trained on chatforge's default tool format, which the Go template
    # renders from Ollama's .Tools / .ToolCalls.
    go = FAMILIES[family][1] if tool_format(tokenizer).native else _tools_templates()[family]
    template = go.replace("EOS", tokenizer.eos_token or "")
    system = system if system is not None else default_system
    stops = [tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(tokenizer)]
    lines = [_from_line(gguf_name), "", f'TEMPLATE """{template}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if system:
        if '"""' in system:
            raise ChatforgeError('--system: a system prompt for a Modelfile cannot contain """')
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


def _from_line(gguf_name: str) -> str:
    return f"FROM ./{gguf_name}"


def written_for(path: Path, gguf_name: str) -> bool:
    """`path` is a Modelfile as chatforge writes it for the GGUF file gguf_name beside it (its first line)."""
    if not path.is_file():  # (never opens a FIFO, which would block)
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline(4096).rstrip("\n") == _from_line(gguf_name)
    except OSError:
        return False
