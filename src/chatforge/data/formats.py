"""Reading data files into rows, detecting their format, and turning every format into one shape.

Files: .jsonl, .json (an array of records, or JSON Lines: either, whatever the extension), .csv (comma,
semicolon or tab separated), .tsv (tab separated), .parquet, .txt, or a directory of them (UTF-8, with or
without BOM; UTF-16 with its BOM). Every row keeps its file and line so that each problem can name them, and
in a JSON array whose records share lines (all on one line) its record number too (Row.record, `position`).

Formats (auto-detected from the first record's keys; `format=` forces one):

    openai      {"messages": [{"role", "content", "weight"?}, ...], "tools"?}   (tool calls: data/toolcalls.py)
                 (a content may be OpenAI's list of parts [{"type": "text", "text"}, ...]: only text parts;
                 role "developer", OpenAI's newer name for system, is read as "system")
    sharegpt    {"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation", "value"}, ...],
                 "system"?, "tools"?}   (a value may be a list of text parts, like an OpenAI content)
    alpaca      {"instruction", "input"?, "output", "system"?, "history"?: [[q, a], ...]}
    dolly       {"instruction", "context"?, "response", "system"?}   (Databricks Dolly; "category" is ignored)
    completion  {"prompt", "completion", "system"?}: strings, or lists of messages (TRL's conversational
                 prompt-completion: only the completion's answers are trained), "tools"?
    qa          {"question", "answer", "system"?}           (e.g. MedQuAD)
    text        {"text"} records or .txt files (one document per file): continued pretraining

Keys that differ from a format's field only in case or surrounding spaces ("Question", " Answer ") are read as
that field. Chat formats become a list of {"role", "content"[, "weight"]} messages; text becomes a string.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatforge.errors import ChatforgeError, json_error

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
FORMATS = ("openai", "sharegpt", "alpaca", "dolly", "completion", "qa", "text")
# The keys that identify each format, in detection order.
SIGNATURES = {"openai": ("messages",), "sharegpt": ("conversations",), "alpaca": ("instruction", "output"),
              "dolly": ("instruction", "response"), "completion": ("prompt", "completion"),
              "qa": ("question", "answer"), "text": ("text",)}
# Every top-level key some format reads: a record's key that differs from one only in case or spaces is it.
KEYS = frozenset(k for keys in SIGNATURES.values() for k in keys) | {"system", "input", "history", "context",
                                                                      "tools"}
TEXT_PART = "text"  # the one content part type read (as chatforge serve accepts); images, audio, files are not
MAX_RECORD_BYTES = 8 << 20  # one record (a JSONL line, a JSON array element): 8 MiB is ~2M tokens already
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
SHAREGPT_TOOL_ROLES = ("function_call", "observation")
OPENAI_ROLES = {"developer": "system"}  # OpenAI's newer name for the system message


@dataclass
class Row:
    """One record as read: its parsed value, or the problem that stopped it from being read."""

    file: str
    line: int
    value: Any = None
    problem: tuple[str, str] | None = None  # (class, message), see validate.CLASSES
    record: int | None = None  # 1-based index in a JSON array whose records share lines (None: the line tells)

    @property
    def where(self) -> str:
        return position(self.file, self.line, self.record)


def position(file: str, line: int, record: int | None = None) -> str:
    """Where a record is, as every message names it: file:line, and its record number where lines do not tell
    records apart (a JSON array on one line, as json.dumps and pandas' to_json write it)."""
    return f"{file}:{line}" + (f" (record {record})" if record is not None else "")


class Invalid(Exception):
    """A record that cannot be used; carries a validation class (validate.CLASSES) and a message."""

    def __init__(self, cls: str, message: str):
        super().__init__(message)
        self.cls, self.message = cls, message


def data_files(path: str | Path) -> list[Path]:
    """The data files of a path: the file itself, or every supported file under a directory (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise ChatforgeError(f"{p}: no data files in this directory (looked for {', '.join(SUFFIXES)})")
        return files
    if not p.exists():
        raise ChatforgeError(f"{p}: no such file or directory")
    if not p.is_file():  # a FIFO or a device (/dev/zero) would block or never end
        raise ChatforgeError(f"{p}: not a regular file")
    if p.suffix.lower() not in SUFFIXES:
        raise ChatforgeError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; use {', '.join(SUFFIXES)}")
    return [p]


def read_rows(path: str | Path) -> list[Row]:
    """Every record of every data file under path, in order. A path with no record at all is one error (there
    is nothing to report line by line); an empty file among others is that file's problem."""
    rows: list[Row] = []
    files, empty = data_files(path), []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise ChatforgeError(f"{f}: cannot read ({e.strerror})") from None
        kind = f.suffix.lower()
        data, bad = (data, None) if kind == ".parquet" else _to_utf8(str(f), data)
        reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".tsv": _tsv, ".parquet": _parquet, ".txt": _txt}
        got = [bad] if bad else reader[kind](str(f), data)
        if not got:
            why = f"no examples in this file ({_why_empty(kind, data)})"
            empty.append(f"{f}: {why}")
            got = [Row(str(f), 1, problem=("missing_messages", why))]
        rows.extend(got)
    if len(empty) == len(files):
        raise ChatforgeError(empty[0] if len(files) == 1 else f"{path}: no examples in any of its {len(files)} "
                             "data files (all empty)", hint="add examples: one record per line in .jsonl, a "
                                                            "header row then one row per example in .csv")
    return rows


def _why_empty(kind: str, data: bytes) -> str:
    if not data.removeprefix(codecs.BOM_UTF8).strip():
        return "it is empty"
    return "only a header row" if kind in (".csv", ".tsv") else "no records"


# Notepad and Excel ("Unicode text") save UTF-16 with a byte order mark, which says how to read the file.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # UTF-32 LE's BOM starts like UTF-16's
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _to_utf8(name: str, data: bytes) -> tuple[bytes, Row | None]:
    """A UTF-16/32 file (told by its BOM) re-encoded as UTF-8, so that every reader sees UTF-8; else unchanged."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec).encode("utf-8"), None
            except UnicodeDecodeError as e:
                line = data[:e.start].decode(codec, "replace").count("\n") + 1
                return data, Row(name, line, problem=("invalid_utf8", f"not valid {codec.upper()} (as its byte order "
                                                                      "mark says); save the file as UTF-8"))
    return data, None


def _decode(name: str, data: bytes) -> tuple[str | None, Row | None]:
    """Whole-file UTF-8 decode (BOM dropped); on failure, a Row naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return None, Row(name, line, problem=("invalid_utf8", f"not valid UTF-8 (byte 0x{data[e.start]:02x}); "
                                                              "save the file as UTF-8"))


def _jsonl(name: str, data: bytes) -> list[Row]:
    """JSON Lines; but a file that is one JSON array (json.dumps(rows, indent=2) saved as .jsonl) is read as the
    array it is, not as hundreds of broken lines."""
    start = _LEADING.match(data).end()
    if data[start:start + 1] == b"[":
        return _json(name, data)
    return _lines(name, data)


_LEADING = re.compile(rb"(?:\xef\xbb\xbf)?\s*")  # a BOM, blank lines (regexes: no copy of a large file)
_NOT_SPACE = re.compile(rb"\S")


def _is_json_lines(data: bytes) -> bool:
    """JSON Lines: several lines, the first of them a JSON value by itself. One JSON document is not: pretty-printed,
    its first line ('[' or '{') is no value; on one line, there is no other line."""
    start = _LEADING.match(data).end()
    end = data.find(b"\n", start)
    if end < 0 or not _NOT_SPACE.search(data, end):
        return False
    try:
        json.loads(data[start:end])
        return True
    except (ValueError, RecursionError):  # JSONDecodeError and bad UTF-8 are ValueErrors
        return False


def _lines(name: str, data: bytes) -> list[Row]:
    """One Row per non-blank line."""
    rows = []
    for i, raw in enumerate(data.split(b"\n"), 1):
        if i == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        if not raw.strip():
            continue
        if len(raw) > MAX_RECORD_BYTES:
            rows.append(Row(name, i, problem=("too_large", f"a record of {len(raw) / 2**20:.0f} MiB (at most "
                                                           f"{MAX_RECORD_BYTES >> 20} MiB)")))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            rows.append(Row(name, i, problem=("invalid_utf8", f"not valid UTF-8 at column {e.start + 1}")))
            continue
        try:
            rows.append(Row(name, i, json.loads(text)))
        except json.JSONDecodeError as e:
            rows.append(Row(name, i, problem=("invalid_json", json_error(e))))
        except RecursionError:
            rows.append(Row(name, i, problem=("invalid_json", "nested too deeply")))
    return rows


def _json(name: str, data: bytes) -> list[Row]:
    """A JSON array, one Row per element with the line where it starts; a single object, or JSON Lines, also
    work (whatever the file's extension: .json and .jsonl are confused all the time)."""
    if _is_json_lines(data):
        return _lines(name, data)
    text, bad = _decode(name, data)
    if bad:
        return [bad]
    start = _skip(text, 0)
    if text[start:start + 1] != "[":
        try:
            return [Row(name, text.count("\n", 0, start) + 1, json.loads(text))]
        except json.JSONDecodeError:
            return _lines(name, data)
        except RecursionError:
            return [Row(name, 1, problem=("invalid_json", "nested too deeply"))]
    return _numbered(_array(name, text, start))


def _array(name: str, text: str, start: int) -> list[Row]:
    """The elements of the JSON array at text[start] ('['), each numbered (Row.record): a problem in element n
    is record n, a missing ',' after it record n too; text after the array is no record."""
    dec = json.JSONDecoder()
    rows, i, line, counted = [], start + 1, 1, 0
    while True:
        i = _skip(text, i)
        if i < len(text) and text[i] == "]":
            end = _skip(text, i + 1)
            if end < len(text):  # not silently dropped: it may be the rest of the data
                rows.append(Row(name, text.count("\n", 0, end) + 1, problem=(
                    "invalid_json", "text after the end of the JSON array; it was not read")))
            return rows
        line, counted = line + text.count("\n", counted, i), i  # incremental: no O(n^2) on big files
        record = len(rows) + 1
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            return rows + [Row(name, e.lineno, problem=("invalid_json", f"{json_error(e)}; the rest of the file "
                                                                          "was not read"), record=record)]
        except RecursionError:
            return rows + [Row(name, line + text.count("\n", counted, i), problem=(
                "invalid_json", "nested too deeply; the rest of the file was not read"), record=record)]
        rows.append(Row(name, line, value, record=record))
        i = _skip(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
        elif not (i < len(text) and text[i] == "]"):
            return rows + [Row(name, text.count("\n", 0, i) + 1,
                               problem=("invalid_json", "expected ',' or ']' after a record"), record=record)]


def _numbered(rows: list[Row]) -> list[Row]:
    """Record numbers kept only where some line holds more than one record: a pretty-printed array's rows stay
    file:line, as users (and their editors) read them."""
    records: dict[int, set[int]] = {}
    for r in rows:
        if r.record is not None:
            records.setdefault(r.line, set()).add(r.record)
    if all(len(on_line) == 1 for on_line in records.values()):
        for r in rows:
            r.record = None
    return rows


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _csv(name: str, data: bytes, delimiter: str | None = None) -> list[Row]:
    """One Row per CSV row (header = keys). JSON-looking cells (e.g. a messages column) are parsed. The
    delimiter is told from the header unless given."""
    text, bad = _decode(name, data)
    if bad:
        return [bad]
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter or _delimiter(text),
                            strict=True)  # strict: broken quoting is an error
    rows, line = [], 1
    try:
        if reader.fieldnames:  # reads the header; "question, answer" names the column "answer" (--columns strips too)
            reader.fieldnames = [f.strip() for f in reader.fieldnames]
        while True:
            line = reader.line_num + 1  # where the record starts (a quoted cell may span lines)
            rec = next(reader, None)
            if rec is None:
                return rows
            width = _row_width(rec, len(reader.fieldnames))
            if width is not None:  # never read as something else: cells would be silently cut or shifted
                rows.append(Row(name, line, problem=("invalid_json", f"invalid CSV (this row has {width} field"
                                                     f"{'s' * (width != 1)}, the header {len(reader.fieldnames)}: "
                                                     f"{', '.join(reader.fieldnames)}; a cell with a "
                                                     f"{reader.reader.dialect.delimiter!r} or a line break in it "
                                                     "must be quoted)")))
                continue
            rows.append(Row(name, line, {k: _cell(v) for k, v in rec.items() if k is not None}))
    except csv.Error as e:
        return rows + [Row(name, line, problem=("invalid_json", f"invalid CSV ({e})"))]


def _tsv(name: str, data: bytes) -> list[Row]:
    """A .tsv file: a CSV file whose separator is always the tab."""
    return _csv(name, data, "\t")


def _row_width(rec: dict, header: int) -> int | None:
    """The number of fields of a row that does not have the header's (None when it has): DictReader puts extra
    fields under None and fills missing ones with None. Trailing empty extra fields lose nothing and pass."""
    extra = rec.get(None) or []
    if any(str(v).strip() for v in extra):
        return header + len(extra)
    missing = sum(v is None for k, v in rec.items() if k is not None)
    return header - missing if missing else None


def _delimiter(text: str) -> str:
    """The separator that splits the header into the most columns: ',' wins ties; ';' is what Excel writes
    where the decimal separator is a comma, tab what "Unicode text" and many exports write. (csv.Sniffer
    guesses from the whole sample, quotes and cell text included, and guesses wrong on short files.)"""
    header = text[:64 << 10]
    best, most = ",", 0
    for sep in (",", ";", "\t"):
        try:
            n = len(next(csv.reader(io.StringIO(header, newline=""), delimiter=sep), []))
        except csv.Error:
            continue
        if n > most:
            best, most = sep, n
    return best


class _ListCell(list):
    """A CSV cell that parsed as a JSON array: a messages column, or just an answer that looks like one."""

    text = ""


class _DictCell(dict):
    """A CSV cell that parsed as a JSON object: a record of its own, or an answer that is JSON."""

    text = ""


def _cell(v):
    """JSON-looking cells are parsed (a messages or tools column); the cell's own text stays with them, for a
    field that must be text (an answer "[1, 2, 3]", a JSON answer)."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            parsed = json.loads(v)
        except (json.JSONDecodeError, RecursionError):
            return v
        cell = (_ListCell if isinstance(parsed, list) else _DictCell)(parsed)
        cell.text = v
        return cell
    return v


def cell_text(v):
    """The text of a CSV cell that was parsed as JSON; any other value unchanged."""
    return v.text if isinstance(v, (_ListCell, _DictCell)) else v


def _parquet(name: str, data: bytes) -> list[Row]:
    """One Row per table row; the 'line' of a Parquet row is its 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        return [Row(name, 1, problem=("invalid_json", f"not a readable Parquet file ({e})"))]
    return [Row(name, i, rec) for i, rec in enumerate(table.to_pylist(), 1)]


def _txt(name: str, data: bytes) -> list[Row]:
    """A .txt file is one document for continued pretraining."""
    text, bad = _decode(name, data)
    if bad:
        return [bad]
    return [Row(name, 1, {"text": text})] if text.strip() else []  # no examples: read_rows says so


def canonical_keys(value: Any, keys: frozenset[str] = KEYS) -> Any:
    """A record whose keys differ from a field of `keys` (default: the chat formats' KEYS; preference data
    passes its own) only in case or surrounding spaces ("Question", " answer ") renamed to it. A key that is
    the field exactly wins; a field that two keys could be is left alone (nothing is guessed). Anything else
    unchanged."""
    if not isinstance(value, dict):
        return value
    near: dict[str, list] = {}
    for k in value:
        name = k.strip().lower() if isinstance(k, str) else None
        if name in keys and name not in value:
            near.setdefault(name, []).append(k)
    renames = {keys[0]: name for name, keys in near.items() if len(keys) == 1}
    return {renames.get(k, k): v for k, v in value.items()} if renames else value


def detect_format(value: Any) -> str | None:
    """The format whose identifying keys this record has (in any case: canonical_keys), or None."""
    if not isinstance(value, dict):
        return None
    value = canonical_keys(value)
    for fmt, keys in SIGNATURES.items():
        if all(k in value for k in keys):
            return fmt
    return None


def to_example(fmt: str, rec: Any) -> list[dict] | str:
    """A record of format fmt -> chat messages (or the text, for 'text'). Raises Invalid."""
    if not isinstance(rec, dict):
        raise Invalid("wrong_type", f"a record must be a JSON object, not {type(rec).__name__}")
    rec = canonical_keys(rec)
    missing = [k for k in SIGNATURES[fmt] if k not in rec]
    if missing:
        raise Invalid("missing_messages", f"missing {', '.join(map(repr, missing))} (format {fmt}, found keys: "
                                          f"{', '.join(sorted(map(str, rec))) or 'none'})")
    return {"openai": _openai, "sharegpt": _sharegpt, "alpaca": _alpaca, "dolly": _dolly,
            "completion": _completion, "qa": _qa, "text": _text}[fmt](rec)


def _str(rec: dict, key: str, optional: bool = False) -> str:
    v = cell_text(rec.get(key))
    if v is None and optional:
        return ""
    if v is None:  # a null (an empty Parquet or spreadsheet cell), not a wrong type
        raise Invalid("empty_content", f"{key!r} is empty (null)")
    if not isinstance(v, str):
        raise Invalid("wrong_type", f"{key!r} must be a string, not {type(v).__name__}")
    return v


def content_text(content: Any, where: str) -> Any:
    """A message's content as text: OpenAI's list of content parts ([{"type": "text", "text": "..."}, ...])
    becomes its parts' text joined with newlines (as `chatforge serve` joins them). A part that is not text (an
    image_url, input_audio, file...) is an error, never silently dropped. Any other value is returned as it
    is (check_messages names a wrong type)."""
    if not isinstance(content, list):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != TEXT_PART:
            what = (f"a part of type {kind!r}" if isinstance(kind, str) else "a part with no 'type'") \
                if isinstance(part, dict) else f"a {type(part).__name__}, not a content part"
            raise Invalid("wrong_type", f"{where}[{j}] is {what}: only text parts ({{\"type\": \"text\", "
                                        "\"text\": ...}) are supported")
        if not isinstance(part.get("text"), str):
            raise Invalid("wrong_type", f"{where}[{j}].text must be a string, not {type(part.get('text')).__name__}")
        texts.append(part["text"])
    return "\n".join(texts)


def text_messages(messages: list, where: str = "messages") -> list:
    """OpenAI-style messages made plain: every list-of-parts content made text (content_text), a "developer"
    role (OpenAI's newer name for system) made "system"; other messages as they are."""
    return [_plain_message(m, f"{where}[{i}]") for i, m in enumerate(messages)]


def _plain_message(m, where: str):
    if not isinstance(m, dict):
        return m
    if isinstance(m.get("content"), list):
        m = dict(m, content=content_text(m["content"], f"{where}.content"))
    if isinstance(m.get("role"), str) and m["role"] in OPENAI_ROLES:
        m = dict(m, role=OPENAI_ROLES[m["role"]])
    return m


def _chat(rec: dict, msgs: list) -> list[dict]:
    from chatforge.data.toolcalls import openai_chat  # tools, tool_calls, tool messages

    return openai_chat(rec, msgs)


def _openai(rec: dict) -> list[dict]:
    msgs = rec["messages"]
    if not isinstance(msgs, list):
        raise Invalid("wrong_type", f"'messages' must be a list, not {type(msgs).__name__}")
    return _chat(rec, text_messages(msgs))


def _sharegpt(rec: dict) -> list[dict]:
    from chatforge.data import toolcalls

    turns = rec["conversations"]
    if not isinstance(turns, list):
        raise Invalid("wrong_type", f"'conversations' must be a list, not {type(turns).__name__}")
    msgs = [{"role": "system", "content": _str(rec, "system")}] if rec.get("system") else []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise Invalid("wrong_type", f"conversations[{i}] must be an object, not {type(t).__name__}")
        unknown = sorted(set(t) - {"from", "value", "weight"})
        if unknown:
            raise Invalid("unknown_key", f"conversations[{i}] has unknown key(s) {', '.join(unknown)}")
        role = t.get("from")
        if role not in SHAREGPT_ROLES and role not in SHAREGPT_TOOL_ROLES:
            raise Invalid("unknown_role", f"conversations[{i}]: role {role!r} is not supported (ShareGPT roles: "
                                          "human, gpt, system, function_call, observation)")
        # a value may be OpenAI's list of text parts, as a message's content may (a call's value is its JSON)
        value = t.get("value") if role == "function_call" else content_text(t.get("value"),
                                                                             f"conversations[{i}].value")
        if role in SHAREGPT_TOOL_ROLES:  # LLaMA-Factory's tool turns
            msgs.append(toolcalls.sharegpt_turn(role, value, i))
            continue
        msgs.append({"role": SHAREGPT_ROLES[role], "content": value,
                     **({"weight": t["weight"]} if "weight" in t else {})})
    tools = toolcalls.sharegpt_tools(rec)
    return toolcalls.Chat(msgs, tools) if tools or any(m["role"] == "tool" or "tool_calls" in m for m in msgs) \
        else msgs


def _alpaca(rec: dict) -> list[dict]:
    instruction, extra = _str(rec, "instruction"), _str(rec, "input", optional=True)
    msgs = [{"role": "system", "content": _str(rec, "system")}] if rec.get("system") else []
    history = rec.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 for h in history):
        raise Invalid("wrong_type", "'history' must be a list of [question, answer] pairs")
    for q, a in history:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": _with_input(instruction, extra)},
                   {"role": "assistant", "content": _str(rec, "output")}]


def _with_input(instruction: str, extra: str) -> str:
    """An instruction and its input (Alpaca's input, Dolly's context): one user message."""
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def _dolly(rec: dict) -> list[dict]:
    prompt = _with_input(_str(rec, "instruction"), _str(rec, "context", optional=True))
    return _system(rec) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _str(rec, "response")}]


def _system(rec: dict) -> list[dict]:
    """An optional "system" field (e.g. a mapped department column) -> a leading system message."""
    return [{"role": "system", "content": _str(rec, "system")}] if rec.get("system") else []


def _completion(rec: dict) -> list[dict]:
    """Strings: one user and one assistant message. TRL's conversational layout (lists of messages): the prompt's
    messages then the completion's, of which only the completion's answers are trained (as TRL trains it)."""
    prompt, completion = _turns(rec, "prompt", "user"), _turns(rec, "completion", "assistant")
    if not (_is_messages(rec["prompt"]) or _is_messages(rec["completion"])):
        return _system(rec) + prompt + completion
    prompt = [dict(m, weight=0) if isinstance(m, dict) and m.get("role") == "assistant" and "weight" not in m
              else m for m in prompt]
    return _chat(rec, _system(rec) + prompt + completion)


def _is_messages(v) -> bool:
    """A list of messages; a CSV cell that parsed as a JSON array of anything but objects is text."""
    return isinstance(v, list) and (not isinstance(v, _ListCell) or bool(v) and all(isinstance(m, dict) for m in v))


def _turns(rec: dict, key: str, role: str) -> list:
    """A prompt or completion as messages: a string is one message of role; a list of messages as it is."""
    v = rec[key]
    if _is_messages(v):
        return text_messages(v, key)
    if v is not None and not isinstance(cell_text(v), str):
        raise Invalid("wrong_type", f"{key!r} must be a string or a list of messages, not {type(v).__name__}")
    return [{"role": role, "content": _str(rec, key)}]


def _qa(rec: dict) -> list[dict]:
    return _system(rec) + [{"role": "user", "content": _str(rec, "question")},
                           {"role": "assistant", "content": _str(rec, "answer")}]


def _text(rec: dict) -> str:
    return _str(rec, "text")
