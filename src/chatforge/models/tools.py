"""Tool calls in prompts and answers: one format per model, the same at train, eval, serve and export time.

Messages follow OpenAI's shape, with arguments already parsed into a dict:

    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                                                         "function": {"name": "f", "arguments": {"x": 1}}}]}
    {"role": "tool", "content": "<the result, as text>", "tool_call_id": "call_1"}
    tools = [{"type": "function", "function": {"name": "f", "description": "...", "parameters": {JSON schema}}}]

A chat template that renders tools itself (Qwen2.5, Llama 3.1+, SmolLM3, Hermes-style templates) gets them
through `apply_chat_template(..., tools=)`. How such a template writes a call is read off the template by
rendering a probe call (`tool_format`), so the parser of generated text expects exactly what was trained.

Any other template gets chatforge's DEFAULT TOOL FORMAT, rendered through the template's plain roles:

    system turn     {system prompt, or the template's own default one}

                    # Tools

                    To call a function, answer <tool_call>
                    {"name": ..., "arguments": {...}}
                    </tool_call>

                    <tools>
                    {"type": "function", "function": {...}}      one JSON line per tool
                    </tools>
    assistant turn  {content, if any}\\n<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>
    tool turn       role "tool", content = the result text as it is

so `<tool_call>{json}</tool_call>` is both what the model learns to write and what the server parses.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from chatforge.errors import json_error

OPEN, CLOSE = "<tool_call>", "</tool_call>"
TOOLS_HEADER = ("# Tools\n\nTo call a function, answer <tool_call>\n{\"name\": ..., \"arguments\": {...}}\n"
                "</tool_call>\n\n<tools>\n")
TOOLS_FOOTER = "\n</tools>"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_PROBE_NAME, _PROBE_ARG, _PROBE_VALUE, _PROBE_RESULT = "cf_probe_fn", "cf_probe_arg", "cf_probe_value", "cf_probe_out"
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": _PROBE_NAME, "description": "cf probe description",
    "parameters": {"type": "object", "properties": {_PROBE_ARG: {"type": "string"}}, "required": [_PROBE_ARG]}}}]


class ToolsError(ValueError):
    """Tool definitions or a call that cannot be used; `where` names the field (e.g. tools[0].function.name)."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


# ---- definitions and calls -----------------------------------------------------------------------------------
def normalize_tools(raw, where: str = "tools") -> list[dict]:
    """Tool definitions in OpenAI's shape ({"type": "function", "function": {...}}) or the bare function shape
    (ShareGPT / Glaive: {"name", "description", "parameters"}), or a JSON string of either list -> OpenAI's
    shape. Raises ToolsError naming the field."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as e:
            raise ToolsError(where, f"not valid JSON ({json_error(e)})") from None
    if not isinstance(raw, list):
        raise ToolsError(where, f"must be a list of function definitions, not {type(raw).__name__}")
    tools, seen = [], set()
    for i, t in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(t, dict):
            raise ToolsError(at, f"must be an object, not {type(t).__name__}")
        if "function" in t or "type" in t:
            if t.get("type") != "function":
                raise ToolsError(f"{at}.type", f"must be \"function\", not {t.get('type')!r}")
            fn, at = t.get("function"), f"{at}.function"
            if not isinstance(fn, dict):
                raise ToolsError(at, "must be an object with a name")
        else:
            fn = t
        name = fn.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ToolsError(f"{at}.name", f"must be 1-64 letters, digits, _ . or -, not {name!r}")
        if name in seen:
            raise ToolsError(f"{at}.name", f"{name!r} is defined twice")
        seen.add(name)
        if "description" in fn and not isinstance(fn["description"], str):
            raise ToolsError(f"{at}.description", "must be a string")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type", "object") != "object" or \
                not isinstance(params.get("properties", {}), dict) or \
                not isinstance(params.get("required", []), list):
            raise ToolsError(f"{at}.parameters", "must be a JSON schema of type object (properties: an object, "
                                                  "required: a list)")
        out = {"name": name}
        if fn.get("description"):
            out["description"] = fn["description"]
        out["parameters"] = params
        tools.append({"type": "function", "function": out})
    return tools


def tool_names(tools: list[dict] | None) -> list[str]:
    return [t["function"]["name"] for t in tools or []]


def check_arguments(tools: list[dict], name: str, arguments, where: str) -> dict:
    """A call's arguments (a dict, or a JSON string of one) checked against the named tool's schema: it must
    exist, the arguments must be a JSON object holding every required field. Returns them as a dict."""
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    if name not in by_name:
        known = ", ".join(by_name) or "none"
        raise ToolsError(where, f"calls {name!r}, which is not in this conversation's tools ({known})")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolsError(f"{where}.arguments", f"not valid JSON ({json_error(e)})") from None
    if not isinstance(arguments, dict):
        raise ToolsError(f"{where}.arguments", f"must be a JSON object, not {type(arguments).__name__}")
    missing = [k for k in by_name[name]["parameters"].get("required", []) if k not in arguments]
    if missing:
        raise ToolsError(f"{where}.arguments", f"{name} needs {', '.join(map(repr, missing))}")
    return arguments


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def make_call(name: str, arguments: dict, call_id: str | None = None) -> dict:
    return {"id": call_id or new_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}


def has_tool_parts(messages: list[dict]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


# ---- the format of one model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolFormat:
    """How a model writes calls: `open` {"<name_key>": name, "<args_key>": {...}} `close`, per call.

    native: the chat template renders tools itself; else chatforge's default format (see the module doc).
    head:   what the model writes after the assistant header up to a call's JSON (e.g. "<tool_call>\\n").
    named:  the JSON text of a call up to its arguments, with {name} where the function name goes.
    """

    native: bool
    open: str = OPEN
    close: str = CLOSE
    name_key: str = "name"
    args_key: str = "arguments"
    head: str = OPEN + "\n"
    named: str = '{"name": "{name}", "arguments": '

    def prefix(self, name: str | None = None) -> str:
        """Text that starts an answer with a call (tool_choice "required"), or with a call of `name`."""
        if name is None:
            return self.head
        return self.head + self.named.replace("{name}", name)

    def call_text(self, calls: list[dict]) -> str:
        """The default format's text of an assistant's calls (native templates write their own)."""
        return "\n".join(f"{self.open}\n" + json.dumps({self.name_key: c["function"]["name"], self.args_key:
                                                        c["function"]["arguments"]}, ensure_ascii=False)
                         + f"\n{self.close}" for c in calls)


DEFAULT_FORMAT = ToolFormat(native=False)
_CACHE: dict[tuple, object] = {}  # per tokenizer and template: its format, its default system prompt


def _key(tokenizer, what: str) -> tuple:
    template = getattr(tokenizer, "chat_template", None) or ""
    return (what, id(tokenizer), template if isinstance(template, str) else json.dumps(template, sort_keys=True))


def tool_format(tokenizer) -> ToolFormat:
    """The model's tool-call format: read off its chat template by rendering a probe call, or the default."""
    key = _key(tokenizer, "format")
    if key not in _CACHE:
        _CACHE[key] = _probe(tokenizer) or DEFAULT_FORMAT
    return _CACHE[key]


def _probe(tokenizer) -> ToolFormat | None:
    """A native format when the template renders the probe tool's definition, the probe call and the probe
    result, and writes the call as a JSON object we can find; else None (use the default format)."""
    from chatforge.models.template import render_raw, end_of_turn_ids

    user = {"role": "user", "content": "cf probe question"}
    call = {"role": "assistant", "content": "", "tool_calls": [make_call(_PROBE_NAME, {_PROBE_ARG: _PROBE_VALUE},
                                                                         "call_cfprobe")]}
    result = {"role": "tool", "content": _PROBE_RESULT, "tool_call_id": "call_cfprobe", "name": _PROBE_NAME}
    try:
        prompt = render_raw(tokenizer, [user], True, _PROBE_TOOLS)
        upto = render_raw(tokenizer, [user, call], False, _PROBE_TOOLS)
        full = render_raw(tokenizer, [user, call, result, {"role": "assistant", "content": "ok"}], False,
                           _PROBE_TOOLS)
    except Exception:  # a template that refuses tool messages has no native tool support
        return None
    if "cf probe description" not in prompt or _PROBE_RESULT not in full or not upto.startswith(prompt):
        return None
    span = upto[len(prompt):]
    dec = json.JSONDecoder()
    for start in (i for i, ch in enumerate(span) if ch == "{"):
        try:
            obj, end = dec.raw_decode(span, start)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        name_key = next((k for k, v in obj.items() if v == _PROBE_NAME), None)
        args_key = next((k for k, v in obj.items() if v in ({_PROBE_ARG: _PROBE_VALUE},
                                                            json.dumps({_PROBE_ARG: _PROBE_VALUE}))), None)
        if name_key is None or args_key is None:
            continue
        tail = span[end:]
        for tok in (tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(tokenizer)):
            tail = tail.split(tok)[0] if tok else tail
        text = span[start:end]
        args_at = text.find(json.dumps(args_key), text.find(_PROBE_NAME))
        colon = text.find(":", args_at + len(json.dumps(args_key))) + 1
        while colon < len(text) and text[colon] == " ":
            colon += 1
        named = text[:colon].replace(_PROBE_NAME, "{name}")
        return ToolFormat(True, span[:start].strip(), tail.strip(), name_key, args_key, span[:start], named)
    return None


# ---- rendering -----------------------------------------------------------------------------------------------
def default_system_prompt(tokenizer) -> str | None:
    """The system prompt a template adds by itself when a conversation has none (SmolLM2's does), or None."""
    key = _key(tokenizer, "system")
    if key not in _CACHE:
        _CACHE[key] = _default_system(tokenizer)
    return _CACHE[key]


def _default_system(tokenizer) -> str | None:
    from chatforge.models.template import render_raw

    probe = [{"role": "user", "content": "cf probe question"}]
    with_system = render_raw(tokenizer, [{"role": "system", "content": "CFSYS"}] + probe, False, None)
    without = render_raw(tokenizer, probe, False, None)
    head, _, tail = with_system.partition("CFSYS")
    if without.startswith(head) and without.endswith(tail) and len(without) > len(head) + len(tail):
        return without[len(head):len(without) - len(tail)]
    return None


def tools_block(tools: list[dict]) -> str:
    return TOOLS_HEADER + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + TOOLS_FOOTER


def to_default_format(messages: list[dict], tools: list[dict] | None, default_system: str | None) -> list[dict]:
    """Messages with tools -> plain role/content messages in chatforge's default tool format."""
    out = [dict(m) for m in messages]
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] = out[0]["content"] + "\n\n" + tools_block(tools)
        else:
            out.insert(0, {"role": "system", "content": (default_system + "\n\n" if default_system else "")
                           + tools_block(tools)})
    for m in out:
        calls = m.pop("tool_calls", None)
        if calls:
            text = DEFAULT_FORMAT.call_text(calls)
            m["content"] = f"{m['content']}\n{text}" if m.get("content") else text
        m.pop("tool_call_id", None)
        m.pop("name", None)
    return out


def prepare_for_template(tokenizer, messages: list[dict], tools: list[dict] | None):
    """(messages, tools) as they go to apply_chat_template: unchanged for a native template, else converted
    to the default format (and no tools)."""
    if not tools and not has_tool_parts(messages):
        return messages, None
    if tool_format(tokenizer).native:
        return messages, tools or None
    return to_default_format(messages, tools, default_system_prompt(tokenizer) if tools else None), None


# ---- parsing generated text ----------------------------------------------------------------------------------
def parse_calls(text: str, fmt: ToolFormat, tools: list[dict] | None) -> tuple[str | None, list[dict]]:
    """Generated text -> (content, calls). Anything that is not a well-formed call of a known tool (a
    half-written block, invalid JSON, an unknown function, text after the calls) is returned as plain content
    with no calls: the client sees what the model wrote instead of an error."""
    names = set(tool_names(tools))
    plain = (text, [])
    if fmt.open:
        first = text.find(fmt.open)
        if first < 0:
            return text, []
        blocks, pos = [], first
        while pos < len(text):
            rest = text[pos:]
            if not rest.strip():
                break
            if not rest.lstrip().startswith(fmt.open):
                return plain
            start = text.index(fmt.open, pos) + len(fmt.open)
            if fmt.close:
                end = text.find(fmt.close, start)
                if end < 0:
                    return plain
                blocks.append(text[start:end])
                pos = end + len(fmt.close)
            else:
                nxt = text.find(fmt.open, start)
                end = len(text) if nxt < 0 else nxt
                blocks.append(text[start:end])
                pos = end
        content = text[:first].rstrip() or None
    else:
        if not text.strip().startswith("{"):
            return text, []
        blocks, content = [text.strip()], None
    calls = []
    for b in blocks:
        try:
            obj = json.loads(b.strip())
        except json.JSONDecodeError:
            return plain
        if not isinstance(obj, dict) or obj.get(fmt.name_key) not in names:
            return plain
        args = obj.get(fmt.args_key, {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return plain
        if not isinstance(args, dict):
            return plain
        calls.append(make_call(obj[fmt.name_key], args))
    return content, calls
