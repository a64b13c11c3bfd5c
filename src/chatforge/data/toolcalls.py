"""Tool-calling conversations in the data layer: reading them (OpenAI and ShareGPT layouts) and checking them.

    openai    {"messages": [..., {"role": "assistant", "content": null, "tool_calls": [{"id", "type": "function",
               "function": {"name", "arguments": "<JSON string>"}}]}, {"role": "tool", "tool_call_id", "content"}],
               "tools": [{"type": "function", "function": {"name", "description", "parameters"}}]}
    sharegpt  {"conversations": [{"from": "human"}, {"from": "function_call", "value": "{\\"name\\", \\"arguments\\"}"},
               {"from": "observation", "value": "<result>"}, {"from": "gpt"}], "tools": "<JSON list>"}
               (LLaMA-Factory's layout; a function_call value may also be a JSON list of calls)

Both become a `Chat`: the list of messages (chatforge.models.tools shapes, arguments parsed into dicts) that
also carries the conversation's `tools`. Turn order (`check_turns`): user, then assistant; an assistant that
calls tools is followed by one tool message per call (in order, or matched by tool_call_id) and then by another
assistant turn; a call may go unanswered only in the conversation's last message.
"""

from __future__ import annotations

import json

from chatforge.data.formats import Invalid
from chatforge.errors import json_error
from chatforge.models.tools import ToolsError, check_arguments, make_call, normalize_tools


class Chat(list):
    """A conversation (a list of messages) with the tool definitions it may call (None: no tools)."""

    def __init__(self, messages=(), tools: list[dict] | None = None):
        super().__init__(messages)
        self.tools = tools or None


def tools_of(messages) -> list[dict] | None:
    return getattr(messages, "tools", None)


def _tools(rec: dict, key: str = "tools") -> list[dict] | None:
    if rec.get(key) in (None, "", []):
        return None
    try:
        return normalize_tools(rec[key], key)
    except ToolsError as e:
        raise Invalid("invalid_tools", str(e)) from None


def _arguments(raw, where: str) -> dict:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            raise Invalid("invalid_arguments", f"{where}: not valid JSON ({json_error(e)})") from None
    if not isinstance(raw, dict):
        raise Invalid("invalid_arguments", f"{where}: must be a JSON object, not {type(raw).__name__}")
    return raw


def openai_chat(rec: dict, messages: list) -> list:
    """OpenAI messages with tool calls: arguments parsed, null content of a calling assistant made "". A
    conversation with neither tools nor tool messages is returned as it is."""
    tools = _tools(rec)
    if tools is None and not any(isinstance(m, dict) and ("tool_calls" in m or m.get("role") == "tool")
                                 for m in messages):
        return messages
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "tool_calls" not in m:
            out.append(m)
            continue
        calls = m["tool_calls"]
        if not isinstance(calls, list) or not calls:
            raise Invalid("wrong_type", f"messages[{i}].tool_calls must be a non-empty list")
        parsed = []
        for j, c in enumerate(calls):
            at = f"messages[{i}].tool_calls[{j}]"
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise Invalid("wrong_type", f"{at} must be {{\"type\": \"function\", \"function\": {{\"name\", "
                                            "\"arguments\"}}}")
            parsed.append(make_call(fn["name"], _arguments(fn.get("arguments", {}), f"{at}.function.arguments"),
                                    c.get("id") if isinstance(c.get("id"), str) else f"call_{i}_{j}"))
        out.append(dict(m, content=m.get("content") or "", tool_calls=parsed))
    return Chat(out, tools)


def sharegpt_call(value, i: int) -> list[dict]:
    """A ShareGPT function_call value (JSON {"name", "arguments"} or a list of them) -> tool calls."""
    where = f"conversations[{i}]"
    try:
        obj = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as e:
        raise Invalid("invalid_arguments", f"{where}: the function call is not valid JSON "
                                           f"({json_error(e)})") from None
    objs = obj if isinstance(obj, list) else [obj]
    calls = []
    for j, o in enumerate(objs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise Invalid("invalid_arguments", f"{where}: a function call must be {{\"name\": ..., \"arguments\": "
                                               "{...}}")
        calls.append(make_call(o["name"], _arguments(o.get("arguments", {}), f"{where}.arguments"),
                               f"call_{i}_{j}"))
    return calls


def sharegpt_turn(role: str, value, i: int) -> dict:
    """A ShareGPT function_call turn -> an assistant message that calls; an observation -> a tool result."""
    if role == "function_call":
        return {"role": "assistant", "content": "", "tool_calls": sharegpt_call(value, i)}
    return {"role": "tool", "content": value}


def sharegpt_tools(rec: dict) -> list[dict] | None:
    return _tools(rec)


# ---- turn order and calls ------------------------------------------------------------------------------------
def check_turns(messages: list[dict], tools: list[dict] | None, first: int) -> None:
    """Raise Invalid for the first problem of a tool conversation's turns (messages[first:] is the body after
    an optional system message)."""
    pending: list[dict] = []  # calls of the last assistant turn not yet answered
    prev = None  # None (start), "user", "assistant" (an answer), "call" (an assistant that calls), "tool"
    for i in range(first, len(messages)):
        m, role = messages[i], messages[i]["role"]
        if role == "tool":
            if not pending:
                raise Invalid("orphan_tool_result", f"messages[{i}]: a tool result that answers no call")
            cid = m.get("tool_call_id")
            hit = next((c for c in pending if c["id"] == cid), None) if cid else pending[0]
            if hit is None:
                raise Invalid("orphan_tool_result", f"messages[{i}]: tool_call_id {cid!r} answers no pending call "
                                                    f"(pending: {', '.join(c['id'] for c in pending)})")
            pending.remove(hit)
        elif pending:
            names = ", ".join(c["function"]["name"] for c in pending)
            raise Invalid("unanswered_call", f"messages[{i}] ({role}) comes before the result of the call(s) to "
                                             f"{names}; a call may go unanswered only in the last message")
        elif role == "user" and prev not in (None, "assistant"):
            raise Invalid("non_alternating", f"messages[{i}] is 'user' where 'assistant' was expected")
        elif role == "assistant":
            if prev not in ("user", "tool"):
                raise Invalid("non_alternating", f"messages[{i}] is 'assistant' where 'user' was expected "
                                                 "(turns must alternate user, assistant, user, ...)")
            for j, c in enumerate(m.get("tool_calls") or []):
                try:
                    check_arguments(tools or [], c["function"]["name"], c["function"]["arguments"],
                                    f"messages[{i}].tool_calls[{j}]")
                except ToolsError as e:
                    raise Invalid("unknown_tool" if e.where.endswith("]") else "invalid_arguments", str(e)) from None
            pending = list(m.get("tool_calls") or [])
        prev = ("call" if m.get("tool_calls") else "assistant") if role == "assistant" else role
    if prev == "tool":
        raise Invalid("non_alternating", "the conversation ends with a tool result that no assistant turn answers")
    if prev == "user":
        raise Invalid("non_alternating", "the conversation ends with a user message that nothing answers")
