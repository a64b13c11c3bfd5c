"""Column mapping: the columns of people's own files (help-desk exports, FAQs, spreadsheets) -> the fields of
chatforge's formats.

    --columns question=title+ask answer=answer system=department     (CLI)
    columns: [question=title+ask, answer=answer, system=department]  (YAML)
    columns={"question": ["title", "ask"], "answer": "answer"}        (Python API, or the strings above)

Each FIELD=COL[+COL...] fills one field of a format (question, answer, system, instruction, input, output,
context, response, prompt, completion, text, messages, conversations, history) from one column, or from
several joined in order with the separator (default: a newline; empty cells are left out). Columns that are
not mapped keep their names, so a mapping only has to name what differs. The mapping is applied to each
record before its format is detected, so detection and `--format` work on the mapped fields. A mapped column
that a record lacks is an error, which names the column the record has in another case ("did you mean
'Title'?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chatforge.data.formats import Invalid, cell_text
from chatforge.errors import ChatforgeError

# Every field some format reads (formats.SIGNATURES plus the optional ones).
FIELDS = ("question", "answer", "system", "instruction", "input", "output", "context", "response", "prompt",
          "completion", "text", "messages", "conversations", "history")
DEFAULT_SEPARATOR = "\\n"  # as typed: the escape sequence of a newline

# Column names (lower-cased) that usually hold each field, for the suggestion in the unknown-format error.
_LIKELY = {
    "question": ("question", "questions", "title", "ask", "query", "q", "user", "input_text", "prompt_text",
                 "subject", "问题", "标题", "提问", "问", "咨询", "用户"),
    "answer": ("answer", "answers", "reply", "response", "a", "assistant", "solution", "resolution", "回答",
               "答案", "回复", "答", "医生回答", "客服"),
    "system": ("department", "category", "topic", "system", "科室", "类别", "分类", "部门"),
}


@dataclass(frozen=True)
class ColumnMap:
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> source columns, in order
    separator: str = "\n"  # the joining text itself (escapes already decoded)

    def sources(self) -> set[str]:
        return {c for cols in self.fields.values() for c in cols}

    def apply(self, rec):
        """A record with the mapped fields filled; raises Invalid naming a missing column."""
        if not isinstance(rec, dict) or not self.fields:
            return rec
        missing = sorted({c for c in self.sources() if c not in rec})
        if missing:
            raise Invalid("missing_messages", f"column(s) {', '.join(map(repr, missing))} of the column mapping "
                                              f"are not in this record (its columns: "
                                              f"{', '.join(map(str, rec)) or 'none'}){_did_you_mean(missing, rec)}")
        out = {k: v for k, v in rec.items() if k not in self.sources() and k not in self.fields}
        for name, cols in self.fields.items():
            if len(cols) == 1:
                out[name] = rec[cols[0]]
                continue
            parts = [_text(rec[c], c) for c in cols]
            out[name] = self.separator.join(p for p in parts if p.strip())
        return out

    def describe(self) -> str:
        """'question = title + ask, answer = answer (joined with "\\n")' - what `check` prints."""
        shown = ", ".join(f"{k} = {' + '.join(v)}" for k, v in self.fields.items())
        if any(len(v) > 1 for v in self.fields.values()):
            shown += f" (joined with \"{encode_separator(self.separator)}\")"
        return shown

    def as_list(self) -> list[str]:
        """The CLI / YAML form: ['question=title+ask', ...]."""
        return [f"{k}={'+'.join(v)}" for k, v in self.fields.items()]


def _did_you_mean(missing: list[str], rec: dict) -> str:
    """"; did you mean 'Title'?" for mapped columns the record has in another case or with other spaces."""
    near = {c: k for c in missing for k in map(str, rec) if k.strip().lower() == c.strip().lower()}
    if not near:
        return ""
    if len(missing) == 1:
        return f"; did you mean {near[missing[0]]!r}?"
    return "; did you mean " + ", ".join(f"{k!r} for {c!r}" for c, k in near.items()) + "?"


def _text(v, column: str) -> str:
    v = cell_text(v)
    if v is None:
        return ""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise Invalid("wrong_type", f"column {column!r} must hold text to be joined, not {type(v).__name__}")


def decode_separator(s: str) -> str:
    r"""'\n' and '\t' as typed on a command line -> the characters (other text stays as it is)."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], s)


def encode_separator(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def parse_columns(spec, separator: str | None = None) -> ColumnMap | None:
    """A ColumnMap from the CLI/YAML list of 'FIELD=COL+COL' strings, one such string (space-separated
    items), a {field: column or [columns]} dict, or a ColumnMap; None for no mapping. Bad specs are a
    ChatforgeError naming the item."""
    if isinstance(spec, ColumnMap):
        return spec
    if not spec:
        return None
    sep = decode_separator(DEFAULT_SEPARATOR if separator is None else separator)
    items: list[tuple[str, list[str]]] = []
    if isinstance(spec, dict):
        for k, v in spec.items():
            cols = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else None
            if cols is None or not all(isinstance(c, str) for c in cols):
                raise ChatforgeError(f"--columns {k}: expected a column name or a list of them, got {v!r}")
            items.append((str(k), cols))
    else:
        strings = spec.split() if isinstance(spec, str) else [str(s) for s in spec]
        for s in strings:
            name, eq, cols = s.partition("=")
            if not eq or not name.strip() or not cols.strip():
                raise ChatforgeError(f"--columns {s!r}: expected FIELD=COLUMN or FIELD=COL1+COL2, "
                                     "e.g. question=title+ask answer=answer")
            items.append((name.strip(), [c.strip() for c in cols.split("+")]))
    fields: dict[str, tuple[str, ...]] = {}
    for name, cols in items:
        if name not in FIELDS:
            raise ChatforgeError(f"--columns {name}=...: {name!r} is not a field of any format; fields: "
                                 f"{', '.join(FIELDS)}")
        if name in fields:
            raise ChatforgeError(f"--columns: {name} is mapped twice")
        if not cols or any(not c for c in cols):
            raise ChatforgeError(f"--columns {name}=...: an empty column name")
        fields[name] = tuple(cols)
    return ColumnMap(fields, sep)


def suggest(columns) -> str | None:
    """A --columns suggestion for a record with these column names, or None when nothing looks familiar."""
    cols = [str(c) for c in columns]
    found: dict[str, list[str]] = {}
    for c in cols:
        for fld, names in _LIKELY.items():
            if c.strip().lower() in names:
                found.setdefault(fld, []).append(c)
                break
    if "answer" not in found or "question" not in found:
        return None
    found["answer"] = found["answer"][:1]
    found["system"] = found.get("system", [])[:1]
    return " ".join(f"{k}={'+'.join(found[k])}" for k in _LIKELY if found.get(k))
