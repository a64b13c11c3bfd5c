"""Tool calling on /v1/chat/completions: the request's tools and messages checked, the prompt's forced start,
and the generated text turned into `message.tool_calls` (or streamed `delta.tool_calls`).

The model writes calls in its own trained format (chatforge.models.tools: the template's native one, or
`<tool_call>{json}</tool_call>`); parsing happens on the generated TEXT after decoding, never in the decode loop.

    tool_choice "auto" (default with tools)  the model decides; its calls are parsed
                "none"                       the prompt carries no tool definitions; nothing is parsed
                "required"                   the answer is started with the format's call opening
                {"type": "function", "function": {"name": N}}   ... and with a call of N
    parallel_tool_calls false                at most the first call is returned

Text that is not a well-formed call of a requested tool comes back as plain `content` (never an error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatforge.models.tools import ToolFormat, ToolsError, normalize_tools, parse_calls, tool_format

CHOICES = ("auto", "none", "required")


class RequestError(Exception):
    """A tool-related request problem: the HTTP status, a message and the request field."""

    def __init__(self, status: int, message: str, param: str | None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass
class ToolPlan:
    tools: list[dict]
    fmt: ToolFormat
    mode: str  # auto | none | required | named
    name: str | None = None  # the function of a named tool_choice
    parallel: bool = True

    @property
    def prompt_tools(self) -> list[dict] | None:
        return None if self.mode == "none" else self.tools

    @property
    def prefix(self) -> str:
        """The start of the answer the model is made to continue (a forced call)."""
        return self.fmt.prefix(self.name) if self.mode in ("required", "named") else ""


# ---- the request -------------------------------------------------------------------------------------------
def template_messages(messages) -> list[dict]:
    """Request messages (serve.schemas.Message) -> chat-template messages, tool calls' arguments parsed."""
    out, call_ids = [], set()  # the ids of the assistant's calls so far: what a tool message may answer
    for i, m in enumerate(messages):
        at = f"messages[{i}]"
        if m.role == "tool":
            if m.tool_call_id is None:
                raise RequestError(422, f"{at}.tool_call_id: a tool message needs the id of the call it answers",
                                   f"{at}.tool_call_id")
            if m.tool_call_id not in call_ids:  # else the model is shown the result of a call it never made
                raise RequestError(400, f"{at}.tool_call_id: {m.tool_call_id!r} is the id of no earlier assistant "
                                        "tool call (a tool message answers a call in messages[].tool_calls)",
                                   f"{at}.tool_call_id")
            out.append({"role": "tool", "content": _text(m, at), "tool_call_id": m.tool_call_id})
        elif m.tool_calls:
            if m.role != "assistant":
                raise RequestError(400, f"{at}: only assistant messages can have tool_calls", f"{at}.tool_calls")
            calls = []
            for j, c in enumerate(m.tool_calls):
                where = f"{at}.tool_calls[{j}].function.arguments"
                try:
                    args = json.loads(c.function.arguments) if c.function.arguments.strip() else {}
                except json.JSONDecodeError as e:
                    raise RequestError(400, f"{where}: not valid JSON ({e.msg})", where) from None
                if not isinstance(args, dict):
                    raise RequestError(400, f"{where}: must be a JSON object", where)
                calls.append({"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                                          "arguments": args}})
                call_ids.add(c.id)
            out.append({"role": "assistant", "content": _text(m, at, optional=True), "tool_calls": calls})
        else:
            _text(m, at)  # content is required here
            out.append(m.as_template_message())
    return out


def _text(m, at: str, optional: bool = False) -> str:
    if m.content is None:
        if optional:
            return ""
        got = "null" if "content" in m.model_fields_set else "missing"  # "content": null, or no field at all
        raise RequestError(422, f"{at}.content: must be a string or a list of text parts ({got})", f"{at}.content")
    return m.content if isinstance(m.content, str) else "\n".join(p.text for p in m.content)


def plan_request(req, tokenizer) -> ToolPlan | None:
    """The request's tools and tool_choice, checked (400 with the field), or None without tools."""
    extra = req.model_extra or {}
    for old in ("functions", "function_call"):
        if old in extra:
            raise RequestError(400, f"{old}: the deprecated functions API is not supported; use tools and "
                                    "tool_choice", old)
    if not req.tools:
        if req.tools is not None:
            raise RequestError(400, "tools: an empty list; leave it out or define at least one function", "tools")
        if req.tool_choice not in (None, "none"):
            raise RequestError(400, "tool_choice needs tools: the request defines none", "tool_choice")
        return None
    try:
        tools = normalize_tools(req.tools)
    except ToolsError as e:
        raise RequestError(400, str(e), e.where) from None
    names = [t["function"]["name"] for t in tools]
    choice, name = req.tool_choice if req.tool_choice is not None else "auto", None
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise RequestError(400, 'tool_choice: must be "auto", "none", "required" or {"type": "function", '
                                    '"function": {"name": ...}}', "tool_choice")
        if name not in names:
            raise RequestError(400, f"tool_choice: {name!r} is not one of the tools ({', '.join(names)})",
                               "tool_choice")
        choice = "named"
    elif choice not in CHOICES:
        raise RequestError(400, f'tool_choice: must be "auto", "none", "required" or a named function, not '
                                f"{choice!r}", "tool_choice")
    if tokenizer is None:
        raise RequestError(400, "tools: this engine cannot render tools", "tools")
    return ToolPlan(tools, tool_format(tokenizer), choice, name, req.parallel_tool_calls is not False)


# ---- the answer --------------------------------------------------------------------------------------------
def finish(plan: ToolPlan, text: str) -> tuple[str | None, list[dict]]:
    """The generated text -> (content, calls with JSON-string arguments, as OpenAI sends them)."""
    if plan.mode == "none":
        return text, []
    full = plan.prefix + text
    content, calls = parse_calls(full, plan.fmt, plan.tools)
    if plan.mode == "named" and any(c["function"]["name"] != plan.name for c in calls):
        return full, []
    if not calls:
        return full, []
    if not plan.parallel:
        calls = calls[:1]
    return content, [{"id": c["id"], "type": "function", "function": {
        "name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
        for c in calls]


def call_deltas(calls: list[dict]) -> list[dict]:
    """Streamed deltas of finished calls, the way OpenAI sends them: the id, type and name with empty
    arguments first, then the arguments (the official client's stream helpers join them by index)."""
    out = []
    for k, c in enumerate(calls):
        out.append({"tool_calls": [{"index": k, "id": c["id"], "type": "function",
                                    "function": {"name": c["function"]["name"], "arguments": ""}}]})
        out.append({"tool_calls": [{"index": k, "function": {"arguments": c["function"]["arguments"]}}]})
    return out


class ToolStream:
    """Streams content as usual, but holds back anything that may be the start of a call until the answer is
    finished and parsed: what was sent as content is always a prefix of the final content."""

    def __init__(self, plan: ToolPlan):
        self.plan, self.text, self.emitted = plan, "", 0
        self.holding = plan.mode in ("required", "named")  # the whole answer is a call
        self.passthrough = plan.mode == "none"

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.passthrough:
            self.emitted = len(self.text)
            return delta
        if self.holding:
            return ""
        fmt, text = self.plan.fmt, self.text
        if not fmt.open:  # bare-JSON formats: an answer that starts with "{" may be a call
            head = text.lstrip()
            if not head:
                return ""
            if head.startswith("{"):
                self.holding = True
                return ""
            self.passthrough = True
            out, self.emitted = text[self.emitted:], len(text)
            return out
        at = text.find(fmt.open)
        if at >= 0:
            self.holding = True
            safe = len(text[:at].rstrip())
        else:
            safe = len(text) - _partial(text, fmt.open)
            safe = len(text[:safe].rstrip())
        out = text[self.emitted:safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return out

    def finish(self, text: str) -> tuple[str, list[dict]]:
        """(the content not sent yet, the calls) once the answer is complete."""
        content, calls = finish(self.plan, text)
        content = content or ""
        return content[self.emitted:] if content.startswith(self.text[:self.emitted]) else "", calls


def _partial(text: str, tag: str) -> int:
    """How many trailing characters of text could be the start of tag."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0
