"""Just enough of Go's text/template to check chatforge's Ollama templates without Ollama: text and actions with
{{- -}} trimming; `if` / `else if` / `else` / `end`; `range X` and `range $i, $v := X`; values `.`, `.A.B`,
`$`, `$.A`, `$v.A`, `(expr).A`, strings and integers; the functions eq, ne, and, or, not, index, json.

Data follows Ollama: {"Messages": [{"Role", "Content", "ToolCalls": [{"Function": {"Name", "Arguments"}}]}],
"Tools": [...]}. `json` is Python's json.dumps (see chatforge.export.ollama on Ollama's own encoder).
"""

from __future__ import annotations

import json
import re

_ACTION = re.compile(r"({{-?\s*.*?\s*-?}})", re.S)
_TOKEN = re.compile(r'\)(?:\.\w+)+|"(?:[^"\\]|\\.)*"|\(|\)|[^\s()]+')


def _parse(template: str):
    parts = _ACTION.split(template)
    for i, p in enumerate(parts):  # trimming markers eat the whitespace of the neighbouring text
        if p.startswith("{{-") and i > 0:
            parts[i - 1] = parts[i - 1].rstrip()
        if p.endswith("-}}") and i + 1 < len(parts):
            parts[i + 1] = parts[i + 1].lstrip()
    items = [("text", p) if not p.startswith("{{") else ("tag", p[2:-2].strip("-").strip()) for p in parts]
    pos = 0

    def block(stops):
        nonlocal pos
        nodes = []
        while pos < len(items):
            kind, v = items[pos]
            if kind == "tag" and (v in stops or any(v.startswith(s + " ") for s in stops)):
                return nodes
            pos += 1
            if kind == "text":
                nodes.append(("text", v))
            elif v.startswith("if "):
                branches, cond = [], v[3:]
                while True:
                    body = block(("else", "end"))
                    branches.append((cond, body))
                    _, tag = items[pos]
                    pos += 1
                    if tag == "end":
                        nodes.append(("if", branches, []))
                        break
                    if tag.startswith("else if "):
                        cond = tag[8:]
                        continue
                    other = block(("end",))
                    pos += 1
                    nodes.append(("if", branches, other))
                    break
            elif v.startswith("range "):
                spec = v[6:]
                names = []
                if ":=" in spec:
                    lhs, spec = spec.split(":=")
                    names = [n.strip() for n in lhs.split(",")]
                body = block(("end",))
                pos += 1
                nodes.append(("range", names, spec.strip(), body))
            else:
                nodes.append(("expr", v))
        return nodes

    return block(())


def _field(value, path: str):
    for name in filter(None, path.split(".")):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _truth(v) -> bool:
    return bool(v)


def _eval(tokens: list[str], dot, scope):
    """Evaluate a command: a function applied to arguments, or a single value."""
    args, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t == "(":
            depth, j = 1, i + 1
            while depth:
                if tokens[j] == "(":
                    depth += 1
                elif tokens[j] == ")" or tokens[j].startswith(")."):
                    depth -= 1
                j += 1
            value = _eval(tokens[i + 1:j - 1], dot, scope)
            if tokens[j - 1].startswith(")."):
                value = _field(value, tokens[j - 1][1:])
            args.append(_Evaluated(value))
            i = j
            continue
        args.append(t)
        i += 1
    funcs = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not _truth(a),
             "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
             "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
             "index": lambda a, k: a[k], "json": lambda a: json.dumps(a, ensure_ascii=False)}
    if isinstance(args[0], str) and args[0] in funcs:
        return funcs[args[0]](*[_value(a, dot, scope) for a in args[1:]])
    return _value(args[0], dot, scope)


class _Evaluated:
    def __init__(self, value):
        self.value = value


def _value(t, dot, scope):
    if isinstance(t, _Evaluated):
        return t.value
    if t.startswith('"'):
        return json.loads(t)
    if t.isdigit():
        return int(t)
    if t.startswith("$"):
        name, _, path = t[1:].partition(".")
        return _field(scope["$" + name] if name else scope["$"], path)
    if t.startswith("."):
        return _field(dot, t)
    raise ValueError(f"unsupported template token {t!r}")


def _run(nodes, dot, scope, out):
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            v = _eval(_TOKEN.findall(node[1]), dot, scope)
            out.append("" if v is None else str(v))
        elif node[0] == "if":
            for cond, body in node[1]:
                if _truth(_eval(_TOKEN.findall(cond), dot, scope)):
                    _run(body, dot, scope, out)
                    break
            else:
                _run(node[2], dot, scope, out)
        else:
            _, names, spec, body = node
            for i, item in enumerate(_eval(_TOKEN.findall(spec), dot, scope) or []):
                inner = dict(scope)
                if len(names) == 2:
                    inner[names[0]], inner[names[1]] = i, item
                elif len(names) == 1:
                    inner[names[0]] = item
                _run(body, item, inner, out)


def render_go(template: str, data: dict) -> str:
    out: list[str] = []
    _run(_parse(template), data, {"$": data}, out)
    return "".join(out)


def ollama_data(messages: list[dict], tools: list[dict] | None = None) -> dict:
    """chatforge messages -> what Ollama hands its templates."""
    msgs = [{"Role": m["role"], "Content": m.get("content") or "",
             "ToolCalls": [{"Function": {"Name": c["function"]["name"], "Arguments": c["function"]["arguments"]}}
                           for c in m.get("tool_calls") or []]} for m in messages]
    return {"Messages": msgs, "Tools": tools or []}
