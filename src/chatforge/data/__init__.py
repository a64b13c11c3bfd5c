"""The data layer: read any common format -> validate every row -> encode with exact loss masks -> pack.

    prepared = prepare("data/train.jsonl", tokenizer, max_length=2048)   # strict: refuses invalid data
    rows = pack(prepared.examples, 2048); batch = collate(rows[:8], tokenizer.pad_token_id)

`analyse` is the same pipeline without refusing: `chatforge check` prints its report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chatforge.data.columns import ColumnMap, parse_columns, suggest
from chatforge.data.encode import Encoded, TemplateError, apply_overlong, encode_chat, encode_text
from chatforge.data.formats import (FORMATS, Invalid, Row, canonical_keys, detect_format, position, read_rows,
                                    to_example)
from chatforge.data.validate import MAX_DROP_SHARE, Report, check_characters, check_messages, fingerprint
from chatforge.errors import ChatforgeError

OVERLONG = ("truncate", "drop", "error")


@dataclass
class Prepared:
    kind: str  # "chat" or "text"
    examples: list[Encoded]
    stats: dict
    dropped: dict[str, int]  # class -> rows not used (invalid rows, over-long examples)
    records: list  # chat: the conversations (lists of messages) that were encoded; text: the documents
    max_length: int = 2048
    formats: dict[str, str] = field(default_factory=dict)  # file -> detected format
    rows: int = 0  # records read, valid or not
    columns: ColumnMap | None = None  # the column mapping applied to every record
    content_tokens: int | None = None  # chat: the tokens of the messages' own text (no template), per character


@dataclass
class _Source:
    """A valid example and where it came from."""

    file: str
    line: int
    example: list[dict] | str
    record: int | None = None  # formats.Row.record

    @property
    def where(self) -> str:
        return position(self.file, self.line, self.record)


def _load(path, fmt: str | None, report: Report, columns: ColumnMap | None = None, format_option: bool = True
          ) -> tuple[list[_Source], dict[str, str], int]:
    """Read, map columns, detect the format per file (or use fmt), normalize and validate every row.
    format_option: the calling command has --format, which the unknown-format message may then suggest."""
    rows = read_rows(path)
    formats: dict[str, str] = {}
    sources = []
    for row in rows:
        if row.problem:
            report.add(row.file, row.line, *row.problem, record=row.record)
            continue
        try:
            sources.append(_Source(row.file, row.line, _example(row, fmt, formats, columns, format_option),
                                   row.record))
        except Invalid as e:
            report.add(row.file, row.line, e.cls, e.message, record=row.record)
    return sources, formats, len(rows)


def _example(row: Row, fmt: str | None, formats: dict[str, str], columns: ColumnMap | None = None,
             format_option: bool = True) -> list[dict] | str:
    value = columns.apply(row.value) if columns else row.value
    fmt = fmt or formats.get(row.file) or _detect(value)
    if fmt is None:
        raise Invalid("unknown_format", _unknown_format(row.value, columns, format_option))
    formats.setdefault(row.file, fmt)
    example = to_example(fmt, value)
    if isinstance(example, str):
        if not example.strip():
            raise Invalid("empty_content", "empty text")
        check_characters(example, "the text")
    else:
        check_messages(example)
    return example


def _detect(value) -> str | None:
    """The chat format of a record (detect_format); a preference record (pairs, labelled answers) is an error
    that says so and names the method that trains it."""
    from chatforge.data.preference import KEYS, detect_preference, not_chat_data

    preference = detect_preference(value)
    if preference == "trl_unpaired" and not isinstance(canonical_keys(value, KEYS).get("label"), bool):
        preference = None  # KTO labels are true/false: a "label" column of categories is a completion's data
    if preference:
        raise Invalid("preference_data", not_chat_data(preference))
    return detect_format(value)


def _unknown_format(value, columns: ColumnMap | None, format_option: bool = True) -> str:
    """The record's own columns, what was expected, and a --columns mapping that would read it (and --format,
    where the command has it)."""
    if not isinstance(value, dict):
        return f"cannot tell the format from a {type(value).__name__} record; expected a JSON object"
    own = ", ".join(map(str, value)) or "none"
    msg = (f"cannot tell the format from this record (its columns: {own}"
           + (f"; mapped with --columns {' '.join(columns.as_list())}" if columns else "") + "); expected messages, "
           "conversations, instruction/output, instruction/response, prompt/completion, question/answer or text "
           f"({'force one with --format, or ' if format_option else ''}name your columns with --columns "
           "FIELD=COLUMN")
    guess = suggest(value)
    return msg + (f", e.g. --columns {guess})" if guess else ")")


def _kind(formats: dict[str, str]) -> str:
    kinds = {"text" if f == "text" else "chat" for f in formats.values()}
    if len(kinds) > 1:
        raise ChatforgeError("the data mixes raw text and chat files: " + ", ".join(
            f"{file} ({fmt})" for file, fmt in formats.items()), hint="train them separately")
    return kinds.pop() if kinds else "chat"


def _mark_duplicates(sources: list[_Source], report: Report) -> None:
    first: dict[str, _Source] = {}
    for s in sources:
        key = fingerprint(s.example)
        if key in first:
            report.add(s.file, s.line, "duplicate", f"same as {first[key].where}", record=s.record)
        else:
            first[key] = s


def _mark_leakage(sources: list[_Source], eval_path, fmt: str | None, report: Report,
                  columns: ColumnMap | None = None) -> tuple[list[_Source], set[int]]:
    """Eval rows that also appear in the training data make eval scores meaningless: an error on the
    training row (so --lenient drops it from training, not from the eval set). Returns the eval rows and the
    ids of the training sources that leak (not their file:line: the records of a one-line JSON array share it)."""
    eval_report = Report()
    eval_sources, _, _ = _load(eval_path, fmt, eval_report, columns)
    for p in eval_report.problems:  # reported (check fails, strict training refuses), not training drops
        p.dropped = False
        report.problems.append(p)
    seen = {fingerprint(s.example): s for s in eval_sources}
    leaked = set()
    for s in sources:
        hit = seen.get(fingerprint(s.example))
        if hit:
            report.add(s.file, s.line, "leakage", f"also in the eval data at {hit.where}", record=s.record)
            leaked.add(id(s))
    return eval_sources, leaked


def _encode_chats(tokenizer, sources, max_length: int, overlong: str, report: Report):
    examples, records = [], []
    for s in sources:
        try:
            full = encode_chat(tokenizer, s.example)
        except TemplateError as e:
            report.add(s.file, s.line, "template_error", e.message, record=s.record)
            continue
        if len(full) > max_length:
            kept = apply_overlong(full, max_length, "truncate" if overlong == "truncate" else "drop")
            what = "truncated" if kept is not None else "dropped"
            if overlong == "truncate" and kept is None:
                what = "dropped: truncation would leave no trained token"
            report.add(s.file, s.line, "too_long", f"{len(full)} tokens > max length {max_length} ({what})",
                       severity="error" if overlong == "error" else None, dropped=kept is None, record=s.record)
            full = None if overlong == "error" else kept
        if full is not None:
            examples.append(full)
            records.append(s.example)
    return examples, records


def _encode_texts(tokenizer, sources, max_length: int, overlong: str, report: Report):
    """Documents -> blocks of max_length tokens. truncate (default): long documents run on into the next
    blocks, nothing is lost; drop: documents longer than a block are left out; error: they are errors."""
    docs = []
    lengths = tokenizer([s.example for s in sources], add_special_tokens=False)["input_ids"] if sources else []
    for s, ids in zip(sources, lengths):
        if len(ids) + 1 > max_length and overlong != "truncate":
            report.add(s.file, s.line, "too_long", f"document of {len(ids)} tokens > block size {max_length}"
                       f" ({'dropped' if overlong == 'drop' else 'refused'})",
                       severity="error" if overlong == "error" else None, dropped=True, record=s.record)
            continue
        docs.append(s.example)
    return encode_text(tokenizer, docs, max_length), docs


def check_options(*, max_length: int, overlong: str | None = None, format: str | None = None, columns=None,
                  column_separator: str | None = None):
    """The data options' own rules, before any file is read (also `chatforge train`'s and the studio's checks of
    a request); returns the parsed column mapping."""
    if overlong is not None and overlong not in OVERLONG:
        raise ChatforgeError(f"--overlong must be one of {', '.join(OVERLONG)}, not {overlong!r}")
    if max_length < 2:
        raise ChatforgeError(f"--max-length must be at least 2, got {max_length}")
    if format is not None and format not in FORMATS:  # train's --format and the Python API take any string
        raise ChatforgeError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    return parse_columns(columns, column_separator)


def analyse(path, tokenizer, *, format: str | None = None, max_length: int = 2048, overlong: str | None = None,
            eval_path=None, columns=None, column_separator: str | None = None, quality: bool = True,
            strict: bool = False, format_option: bool = True) -> tuple[Prepared, Report]:
    """Read, validate and encode without refusing anything: invalid rows are reported and left out.
    `columns` maps the file's own column names to format fields (see chatforge.data.columns).
    format_option=False: the calling command has no --format option (`chatforge eval`), so no message
    suggests it.
    quality: also look for data that parses but is wrong (data/quality.py: near-duplicates, contradictions,
    personal data, ...), as warnings, or errors with strict=True."""
    columns = check_options(max_length=max_length, overlong=overlong, format=format, columns=columns,
                            column_separator=column_separator)
    report = Report()
    sources, formats, n_rows = _load(path, format, report, columns, format_option)
    kind = _kind(formats)
    _mark_duplicates(sources, report)
    eval_sources, leaked = (_mark_leakage(sources, eval_path, format, report, columns) if eval_path is not None
                            else (None, set()))
    if quality:
        from chatforge.data.quality import check_quality

        check_quality([(s.file, s.line, s.example, s.record) for s in sources], report,
                      [(s.file, s.line, s.example, s.record) for s in eval_sources] if eval_sources else None,
                      strict=strict)
    # rows that failed to read or validate never became sources; of the rest only leaking rows are dropped here
    # (by identity: the records of a one-line JSON array all share its line 1); quality findings never are
    sources = [s for s in sources if id(s) not in leaked]
    overlong = overlong or ("truncate" if kind == "text" else "drop")
    encode = _encode_texts if kind == "text" else _encode_chats
    examples, records = encode(tokenizer, sources, max_length, overlong, report)
    dropped = dict(Counter(p.cls for p in report.problems if p.is_dropped))
    prepared = Prepared(kind, examples, {}, dropped, records, max_length, formats, n_rows, columns)
    if kind == "chat":  # tokens per character: the text's own, not the template's (a default system prompt...)
        texts = [m["content"] for r in records for m in r]
        prepared.content_tokens = sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"])) \
            if texts else 0
    from chatforge.data.stats import dataset_stats

    prepared.stats = dataset_stats(prepared)
    return prepared, report


def prepare(path, tokenizer, *, format: str | None = None, max_length: int = 2048, overlong: str | None = None,
            lenient: bool = False, max_drop_share: float = MAX_DROP_SHARE, eval_path=None, columns=None,
            column_separator: str | None = None) -> Prepared:
    """Read + validate + encode a file or directory for training.

    Strict (default): any invalid row is a ChatforgeError listing the problems by file:line, with counts per
    class. lenient=True drops invalid rows (counted in Prepared.dropped and printed to stderr), but still
    refuses when more than max_drop_share of the rows were dropped (over-long drops included).
    """
    prepared, report = analyse(path, tokenizer, format=format, max_length=max_length, overlong=overlong,
                               eval_path=eval_path, columns=columns, column_separator=column_separator,
                               quality=False)  # quality findings are for `check`
    where = Path(path)
    _refuse_preference_data(report, prepared)
    report.refuse_or_drop(where, rows=prepared.rows, dropped=prepared.dropped, lenient=lenient,
                          max_drop_share=max_drop_share)
    if not prepared.examples:
        raise ChatforgeError(f"{where}: no usable examples")
    return prepared


def _refuse_preference_data(report: Report, prepared: Prepared) -> None:
    """Only preference data given to a chat method: one plain error at its first record, not a list of rows."""
    first = next((p for p in report.errors if p.cls == "preference_data"), None)
    if first and not prepared.examples:
        raise ChatforgeError(f"{first.where}: {first.message}",
                             hint="--method lora, full and freeze train on chat data (messages, conversations, "
                                  "question/answer, ...)")
