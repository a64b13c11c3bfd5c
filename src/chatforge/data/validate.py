"""Validation: every problem of a dataset by file, line and class, with counts per class.

Errors make `chatforge check` exit 2 and make training refuse the data (unless --lenient drops those rows);
warnings are reported and nothing else happens.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from chatforge.data.formats import Invalid, position
from chatforge.plural import counted

# class -> (label, severity). The order is the order of the report.
CLASSES: dict[str, tuple[str, str]] = {
    "invalid_utf8": ("invalid UTF-8", "error"),
    "invalid_json": ("invalid JSON", "error"),
    "too_large": ("record too large", "error"),
    "bad_characters": ("invalid characters", "error"),
    "wrong_type": ("wrong type", "error"),
    "missing_messages": ("missing messages", "error"),
    "unknown_key": ("unknown key", "error"),
    "unknown_role": ("unknown role", "error"),
    "empty_content": ("empty content", "error"),
    "no_assistant": ("no assistant turn", "error"),
    "non_alternating": ("non-alternating turns", "error"),
    "unknown_format": ("unknown format", "error"),
    "preference_data": ("preference data given as chat data", "error"),  # pairs / labelled answers to lora, full...
    "invalid_tools": ("invalid tool definitions", "error"),
    "unknown_tool": ("call to a function not in tools", "error"),
    "invalid_arguments": ("invalid tool-call arguments", "error"),
    "orphan_tool_result": ("tool result answering no call", "error"),
    "unanswered_call": ("tool call not answered", "error"),
    "template_error": ("chat template error", "error"),
    "leakage": ("eval row also in training data", "error"),
    "identical_answers": ("chosen and rejected identical", "error"),  # preference data (data/preference.py)
    "empty_answer": ("empty answer", "error"),
    "no_shared_prompt": ("pair with no shared prompt", "error"),
    "label_not_boolean": ("label not a boolean", "error"),
    "too_long": ("longer than max length", "warning"),  # handled by the over-long policy (drop/truncate)
    "duplicate": ("exact duplicate", "warning"),
    # data that parses but is wrong (data/quality.py): warnings, errors under `check --strict`
    "near_duplicate": ("near-duplicate", "warning"),
    "near_leakage": ("eval row nearly the same as a training row", "warning"),
    "contradiction": ("same question, different answer", "warning"),
    "personal_data": ("personal data or secret", "warning"),
    "language_mismatch": ("answer in another language", "warning"),
    "placeholder_answer": ("empty-looking answer", "warning"),
    "truncated_answer": ("answer cut off", "warning"),
}
# training refuses data of which more than this share of the rows would be dropped (invalid, too long); check says so
MAX_DROP_SHARE = 0.1
DROP_HINT = "fix the data, raise --max-length, or use --overlong truncate"


def drop_hint(dropped: dict[str, int], mapping_options: bool = True) -> str:
    """What to do about too many dropped rows: the length options only help when rows were dropped as too long;
    --columns / --format only where they apply (chat data: `mapping_options`)."""
    hint = DROP_HINT if "too_long" in dropped else "fix the rows listed above"
    if "unknown_format" in dropped and mapping_options:
        hint += ", or name your columns with --columns FIELD=COLUMN (or force one with --format)"
    return hint
ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "weight", "name", "tool_calls", "tool_call_id"}


@dataclass
class Problem:
    file: str
    line: int
    cls: str
    message: str
    level: str | None = None  # overrides the class's severity (over-long examples under policy "error")
    dropped: bool | None = None  # is the row left out? default: errors are, warnings are not
    record: int | None = None  # the record's number where its line does not tell it apart (formats.Row.record)

    @property
    def severity(self) -> str:
        return self.level or CLASSES[self.cls][1]

    @property
    def is_dropped(self) -> bool:
        return self.severity == "error" if self.dropped is None else self.dropped

    def __str__(self) -> str:
        return f"{self.where}: {CLASSES[self.cls][0]}: {self.message}"

    @property
    def where(self) -> str:
        return position(self.file, self.line, self.record)


def collapse(problems: list[Problem]) -> list[tuple[Problem, list[int]]]:
    """The problems in order, a run of one mistake (same file, class, severity and message) as one entry with
    all its lines: a file of the wrong layout is one message, not the same one for each of its rows. Rows that
    carry a record number (Problem.record: records sharing a line) are listed by it instead, and a run never
    mixes the two: the numbers of one entry are all lines or all records."""
    out: list[tuple[Problem, list[int]]] = []
    for p in problems:
        last = out[-1][0] if out else None
        if last is not None and _same_mistake(last, p):
            out[-1][1].append(_place(p))
        else:
            out.append((p, [_place(p)]))
    return out


def _same_mistake(a: Problem, b: Problem) -> bool:
    return ((a.file, a.cls, a.severity, a.message, a.record is None)
            == (b.file, b.cls, b.severity, b.message, b.record is None))


def _place(p: Problem) -> int:
    return p.line if p.record is None else p.record


def describe(problem: Problem, lines: list[int]) -> str:
    """One entry of `collapse` as a line: file:line: problem, and for a run the lines (or records) of the
    others."""
    rest = lines[1:]
    if not rest:
        return str(problem)
    unit = "line" if problem.record is None else "record"
    where = (f"{unit}s {rest[0]}-{rest[-1]}" if len(rest) > 1 and rest == list(range(rest[0], rest[0] + len(rest)))
             else (f"{unit} " if len(rest) == 1 else f"{unit}s ") + ", ".join(map(str, rest[:5]))
             + (", ..." if len(rest) > 5 else ""))
    return f"{problem} (the same on {where}: {counted(len(lines), 'row')})"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)

    def add(self, file: str, line: int, cls: str, message: str, *, severity: str | None = None,
            dropped: bool | None = None, record: int | None = None) -> None:
        self.problems.append(Problem(file, line, cls, message, severity, dropped, record))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def counts(self) -> dict[str, int]:
        """{class: number of problems}, in the order of CLASSES."""
        c = Counter(p.cls for p in self.problems)
        return {k: c[k] for k in CLASSES if c[k]}

    def summary(self, problems: list[Problem] | None = None, limit: int = 10) -> str:
        """The first `limit` problems (default: the errors), one per line, then their counts per class."""
        chosen = self.errors if problems is None else problems
        entries = collapse(chosen)
        lines = [describe(p, at) for p, at in entries[:limit]]
        if len(entries) > limit:
            lines.append(f"... and {sum(len(at) for _, at in entries[limit:])} more")
        counts = Counter(p.cls for p in chosen)
        lines.append("counts: " + ", ".join(f"{CLASSES[k][0]}: {counts[k]}" for k in CLASSES if counts[k]))
        return "\n".join(lines)

    @staticmethod
    def drop_refusal(where, *, rows: int, dropped: dict[str, int],
                     max_drop_share: float = MAX_DROP_SHARE) -> str | None:
        """Why training refuses data of which more than max_drop_share of the rows would be dropped, or None."""
        n_dropped = sum(dropped.values())
        if not rows or n_dropped / rows <= max_drop_share:
            return None
        return (f"{where}: {n_dropped} of {counted(rows, 'row')} ({n_dropped / rows:.0%}) would be dropped, more "
                f"than the allowed {max_drop_share:.0%}")

    def refuse_or_drop(self, where, *, rows: int, dropped: dict[str, int], lenient: bool, max_drop_share: float,
                       what: str = "data", mapping_options: bool = True) -> None:
        """Training's policy, for every kind of data. Strict (default): any error refuses the data, listing the
        problems by file:line. lenient: invalid rows are dropped (counted on stderr), but more than
        max_drop_share of the rows dropped (over-long ones included) is still refused. mapping_options: the
        data's reader takes --columns / --format (chat data; preference data does not), which hints may name."""
        import sys

        from chatforge.errors import ChatforgeError

        if self.errors and not lenient:
            raise ChatforgeError(f"{where}: {counted(len(self.errors), 'error')} in the {what}; nothing was trained\n"
                                 + self.summary(), hint="fix them (see `chatforge check`), or pass --lenient "
                                                        "to drop invalid rows")
        n_dropped = sum(dropped.values())
        refusal = self.drop_refusal(where, rows=rows, dropped=dropped, max_drop_share=max_drop_share)
        if n_dropped and not refusal:  # (a refusal says it itself)
            print(f"chatforge: {where}: dropped {n_dropped} of {counted(rows, 'row')} (" + ", ".join(
                f"{CLASSES[k][0]}: {n}" for k, n in dropped.items()) + ")", file=sys.stderr)
        if refusal:
            raise ChatforgeError(refusal + "\n" + self.summary([p for p in self.problems if p.is_dropped]),
                                 hint=drop_hint(dropped, mapping_options))


def check_messages(messages: list) -> None:
    """Raise Invalid for the first problem of a conversation (roles, types, content, turn order)."""
    if not messages:
        raise Invalid("missing_messages", "the conversation has no messages")
    for i, m in enumerate(messages):
        _check_message(i, m)
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles[0] == "system" else roles
    tools = getattr(messages, "tools", None)
    if tools or "tool" in roles or any(m.get("tool_calls") for m in messages):
        _check_tool_conversation(messages, roles, body, tools)
        return
    if "system" in body:
        raise Invalid("non_alternating", f"messages[{roles.index('system', 1)}]: a system message is only "
                                         "allowed first")
    if "assistant" not in body:
        raise Invalid("no_assistant", "the conversation has no assistant message to learn from")
    if not any(m.get("weight", 1) for m in messages if m["role"] == "assistant"):
        raise Invalid("no_assistant", "every assistant message has weight 0: nothing to learn from")
    for i, role in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            at = i + (len(roles) - len(body))
            raise Invalid("non_alternating", f"messages[{at}] is {role!r} where {expected!r} was expected "
                                             "(turns must alternate user, assistant, user, ...)")
    if body[-1] != "assistant":
        raise Invalid("non_alternating", "the conversation ends with a user message that nothing answers")


def _check_tool_conversation(messages: list, roles: list[str], body: list[str], tools) -> None:
    from chatforge.data.toolcalls import check_turns

    if "system" in body:
        raise Invalid("non_alternating", f"messages[{roles.index('system', 1)}]: a system message is only "
                                         "allowed first")
    if "assistant" not in body:
        raise Invalid("no_assistant", "the conversation has no assistant message to learn from")
    if not any(m.get("weight", 1) for m in messages if m["role"] == "assistant"):
        raise Invalid("no_assistant", "every assistant message has weight 0: nothing to learn from")
    check_turns(messages, tools, len(roles) - len(body))


def _check_message(i: int, m) -> None:
    if not isinstance(m, dict):
        raise Invalid("wrong_type", f"messages[{i}] must be an object, not {type(m).__name__}")
    unknown = sorted(set(m) - MESSAGE_KEYS)
    if unknown:
        hint = " (OpenAI's old function_call: use tool_calls)" if "function_call" in unknown else ""
        raise Invalid("unknown_key", f"messages[{i}] has unknown key(s) {', '.join(unknown)}{hint}")
    if "role" not in m or "content" not in m:
        raise Invalid("missing_messages", f"messages[{i}] needs both 'role' and 'content'")
    role, content = m["role"], m["content"]
    if not isinstance(role, str):
        raise Invalid("wrong_type", f"messages[{i}].role must be a string, not {type(role).__name__}")
    if role not in ROLES:
        raise Invalid("unknown_role", f"messages[{i}]: role {role!r} is not supported (use system, user, "
                                      "assistant, tool)")
    if not isinstance(content, str):
        raise Invalid("wrong_type", f"messages[{i}].content must be a string, not {type(content).__name__}")
    if "tool_calls" in m and role != "assistant":
        raise Invalid("wrong_type", f"messages[{i}]: only assistant messages can have tool_calls")
    if not content.strip() and not m.get("tool_calls"):
        raise Invalid("empty_content", f"messages[{i}] ({role}) has empty content")
    check_characters(content, f"messages[{i}]")
    if "weight" in m and (m["weight"] not in (0, 1) or isinstance(m["weight"], bool)):
        raise Invalid("wrong_type", f"messages[{i}].weight must be 0 or 1, not {m['weight']!r}")
    if "weight" in m and role != "assistant":
        raise Invalid("wrong_type", f"messages[{i}]: weight is only allowed on assistant messages")


def check_characters(text: str, where: str) -> None:
    """NUL characters (binary data) and lone surrogates (broken UTF-16 escapes such as "\\ud800": not Unicode;
    the tokenizer cannot take them) are errors."""
    if "\x00" in text:
        raise Invalid("bad_characters", f"{where} contains NUL characters (binary data?)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise Invalid("bad_characters", f"{where} contains a lone surrogate {text[e.start]!r} (a broken "
                                        "\\uXXXX escape): not valid Unicode") from None


def fingerprint(example: list[dict] | str) -> str:
    """A canonical string of an example (roles and contents), for exact-duplicate and leakage checks."""
    if isinstance(example, str):
        return example
    turns = [[m["role"], m["content"]] + ([m["tool_calls"] and [[c["function"]["name"], c["function"]["arguments"]]
                                                               for c in m["tool_calls"]]] if "tool_calls" in m else [])
             for m in example]
    tools = getattr(example, "tools", None)
    return json.dumps(turns + ([tools] if tools else []), ensure_ascii=False, sort_keys=True)
