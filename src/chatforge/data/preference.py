"""Preference data: read, validate and encode pairs (chosen vs rejected) and thumbs (completion + label).

Formats (detected per file from the first record's keys):

    openai_preference  {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content"}],
                        "non_preferred_output": [{"role": "assistant", "content"}]}     (OpenAI fine-tuning DPO)
    trl_paired         {"prompt"?, "chosen", "rejected"}: each a string (standard) or a list of messages
                       (conversational). Without "prompt" (implicit prompt) the prompt is what chosen and rejected
                       share: their common leading messages (or, for strings, their common leading text).
    trl_unpaired       {"prompt", "completion", "label": true|false}                   (TRL's KTO format)

A standard (string) prompt is the user's message and an answer the assistant's, rendered with the chat template
exactly like chat data (as the `completion` SFT format does); a message's content may be OpenAI's list of text
parts (formats.content_text). Every pair becomes two conversations that share their prompt, each encoded by
`chatforge.data.encode.encode_chat` (the only place labels are made) with every earlier assistant turn at
weight 0: only the answer's tokens (and the end-of-turn token closing it) are scored.

Keys that differ from a format's field only in case or surrounding spaces ("Prompt", "Chosen") are read as that
field, as in chat data (formats.canonical_keys).

Problems, each by file:line with its class (validate.CLASSES): identical_answers (chosen == rejected),
empty_answer, no_shared_prompt, label_not_boolean, plus the chat classes for the prompt (roles, turn order...).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chatforge.data.encode import IGNORE, Encoded, TemplateError, apply_overlong, encode_chat
from chatforge.data.formats import Invalid, canonical_keys, content_text, position, read_rows, text_messages
from chatforge.data.validate import MAX_DROP_SHARE, Report, check_messages
from chatforge.errors import ChatforgeError
from chatforge.plural import counted

PREFERENCE_FORMATS = ("openai_preference", "trl_paired", "trl_unpaired")
SIGNATURES = {"openai_preference": ("input", "preferred_output", "non_preferred_output"),
              "trl_paired": ("chosen", "rejected"), "trl_unpaired": ("completion", "label")}
KINDS = {"openai_preference": "pairs", "trl_paired": "pairs", "trl_unpaired": "unpaired"}
# Every top-level key a preference format reads, matched in any case like the chat formats' (canonical_keys).
KEYS = frozenset(k for keys in SIGNATURES.values() for k in keys) | {"prompt"}
LAYOUTS = {"openai_preference": "input/preferred_output/non_preferred_output", "trl_paired": "prompt/chosen/rejected",
           "trl_unpaired": "prompt/completion/label"}


@dataclass
class Preference:
    """One record: a prompt (messages ending with a user turn) and either two answers or one with a label."""

    prompt: list[dict]
    chosen: str | None = None  # pairs
    rejected: str | None = None
    completion: str | None = None  # unpaired
    label: bool | None = None

    @property
    def answers(self) -> list[str]:
        return [self.chosen, self.rejected] if self.completion is None else [self.completion]

    def conversation(self, answer: str) -> list[dict]:
        """The prompt + this answer, earlier assistant turns untrained: what is encoded and scored."""
        return [dict(m, weight=0) if m["role"] == "assistant" else dict(m) for m in self.prompt] + [
            {"role": "assistant", "content": answer}]

    def fingerprint(self) -> str:
        return json.dumps([[[m["role"], m["content"]] for m in self.prompt], self.answers, self.label],
                          ensure_ascii=False)


@dataclass
class EncodedPair:
    chosen: Encoded
    rejected: Encoded

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


@dataclass
class EncodedUnpaired:
    example: Encoded
    label: bool

    def __len__(self) -> int:
        return len(self.example)


@dataclass
class PreparedPreferences:
    kind: str  # "pairs" | "unpaired"
    examples: list  # EncodedPair | EncodedUnpaired
    records: list[Preference]  # the records that were encoded, in the same order
    stats: dict
    dropped: dict[str, int]
    max_length: int = 2048
    formats: dict[str, str] = field(default_factory=dict)
    rows: int = 0


# ---- detection and parsing ---------------------------------------------------------------------------------
def detect_preference(value) -> str | None:
    """The preference format whose keys this record has, or None (not preference data)."""
    if not isinstance(value, dict):
        return None
    value = canonical_keys(value, KEYS)
    for fmt, keys in SIGNATURES.items():
        if all(k in value for k in keys):
            return fmt
    return None


def not_chat_data(fmt: str) -> str:
    """Why a record of preference format fmt cannot train a chat method (lora, full...), and what trains it."""
    pairs = KINDS[fmt] == "pairs"
    return (f"this is preference data ({'pairs' if pairs else 'answers labelled good or bad'}: {LAYOUTS[fmt]}), "
            f"not chat data: train it with `chatforge train --method {'dpo' if pairs else 'kto'}`")


def is_preference_data(path) -> bool:
    """Does the first readable record of path look like preference data?"""
    for row in read_rows(path):
        if row.problem is None and isinstance(row.value, dict):
            return detect_preference(row.value) is not None
    return False


def _messages(value, what: str) -> list[dict]:
    """A string -> one user message; a list of messages as given (checked later with the chat rules)."""
    if isinstance(value, str):
        if not value.strip():  # (not "messages[0] (user) has empty content": the user wrote no messages)
            raise Invalid("empty_content", f"{what!r} is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise Invalid("wrong_type", f"{what!r} must be a string or a list of messages, not {type(value).__name__}")
    return value


def _answer(value, what: str) -> str:
    """A string, or a list holding exactly one assistant message -> its content."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        m = value[0]
        if m.get("role") != "assistant":
            raise Invalid("unknown_role", f"{what!r} must be an assistant message, not role {m.get('role')!r}")
        content = content_text(m.get("content"), f"{what}[0].content")  # OpenAI's text parts: their text
        if not isinstance(content, str):
            raise Invalid("wrong_type", f"{what!r}: the answer's content must be a string")
        return content
    raise Invalid("wrong_type", f"{what!r} must be a string or a list of one assistant message")


def _split_implicit(chosen, rejected) -> tuple[list[dict], str, str]:
    """Implicit prompt: the shared leading part of chosen and rejected is the prompt."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        if n and n < min(len(chosen), len(rejected)) and not chosen[n - 1].isspace():
            cut = max(chosen.rfind(" ", 0, n), chosen.rfind("\n", 0, n))  # split between words
            n = cut + 1 if cut >= 0 else n
        prompt = chosen[:n]
        if not prompt.strip():
            raise Invalid("no_shared_prompt", "chosen and rejected share no prompt (no common leading text; "
                                              "give a 'prompt' field)")
        return [{"role": "user", "content": prompt.strip()}], chosen[n:], rejected[n:]
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise Invalid("wrong_type", "without 'prompt', 'chosen' and 'rejected' must both be strings or both "
                                    "lists of messages")
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0 or not any(isinstance(m, dict) and m.get("role") == "user" for m in chosen[:n]):
        raise Invalid("no_shared_prompt", "chosen and rejected share no prompt (their conversations do not start "
                                          "with the same user turn; give a 'prompt' field)")
    rest_c, rest_r = chosen[n:], rejected[n:]
    if not rest_c or not rest_r:
        raise Invalid("identical_answers" if not rest_c and not rest_r else "empty_answer",
                      "chosen and rejected are the same conversation" if not rest_c and not rest_r
                      else "one of the answers is missing (one conversation is the start of the other)")
    return chosen[:n], _answer(rest_c, "chosen"), _answer(rest_r, "rejected")


def to_preference(fmt: str, rec) -> Preference:
    """A record of a preference format -> Preference (validated). Raises Invalid."""
    if not isinstance(rec, dict):
        raise Invalid("wrong_type", f"a record must be a JSON object, not {type(rec).__name__}")
    rec = canonical_keys(rec, KEYS)
    missing = [k for k in SIGNATURES[fmt] if k not in rec]
    if missing:
        raise Invalid("missing_messages", f"missing {', '.join(map(repr, missing))} (format {fmt}, found keys: "
                                          f"{', '.join(sorted(map(str, rec))) or 'none'})")
    if fmt == "openai_preference":
        inp = rec["input"]
        if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list):
            raise Invalid("wrong_type", "'input' must be an object with a 'messages' list")
        if inp.get("tools"):
            raise Invalid("unknown_key", "'input.tools': tool calls are not supported yet")
        pref = Preference(inp["messages"], _answer(rec["preferred_output"], "preferred_output"),
                          _answer(rec["non_preferred_output"], "non_preferred_output"))
    elif fmt == "trl_paired":
        if "prompt" in rec:
            pref = Preference(_messages(rec["prompt"], "prompt"), _answer(rec["chosen"], "chosen"),
                              _answer(rec["rejected"], "rejected"))
        else:
            pref = Preference(*_split_implicit(rec["chosen"], rec["rejected"]))
    else:
        if "prompt" not in rec:
            raise Invalid("no_shared_prompt", "the record has no 'prompt'")
        label = _label(rec["label"])
        pref = Preference(_messages(rec["prompt"], "prompt"), completion=_answer(rec["completion"], "completion"),
                          label=label)
    pref.prompt = text_messages(pref.prompt, "input.messages" if fmt == "openai_preference" else "prompt")
    _check(pref)
    return pref


# A CSV or TSV cell is text: its label is "true" / "false" (or 1 / 0), the booleans of the other formats
_LABELS = {"true": True, "false": False, "1": True, "0": False}


def _label(label) -> bool:
    if isinstance(label, bool):
        return label
    if isinstance(label, (str, int)) and str(label).strip().lower() in _LABELS:
        return _LABELS[str(label).strip().lower()]
    raise Invalid("label_not_boolean", f"'label' must be true or false (in a CSV: true / false or 1 / 0), "
                                       f"not {label!r}")


def _check(pref: Preference) -> None:
    if not pref.prompt:
        raise Invalid("no_shared_prompt", "the prompt is empty")
    names = ["chosen", "rejected"] if pref.completion is None else ["completion"]
    for name, answer in zip(names, pref.answers):
        if not answer.strip():
            raise Invalid("empty_answer", f"the {name} answer is empty")
    if pref.completion is None and pref.chosen.strip() == pref.rejected.strip():
        raise Invalid("identical_answers", "chosen and rejected are the same answer: nothing to prefer")
    last = pref.prompt[-1]
    if isinstance(last, dict) and last.get("role") != "user":
        raise Invalid("non_alternating", "the prompt must end with a user message (the one the answers reply to)")
    check_messages(pref.conversation(pref.answers[0]))


# ---- the pipeline ------------------------------------------------------------------------------------------
@dataclass
class _Source:
    file: str
    line: int
    pref: Preference
    record: int | None = None  # formats.Row.record

    @property
    def where(self) -> str:
        return position(self.file, self.line, self.record)


def _load(path, report: Report) -> tuple[list[_Source], dict[str, str], int]:
    rows = read_rows(path)
    formats: dict[str, str] = {}
    sources = []
    for row in rows:
        if row.problem:
            report.add(row.file, row.line, *row.problem, record=row.record)
            continue
        fmt = formats.get(row.file) or detect_preference(row.value)
        if fmt is None:
            keys = ", ".join(sorted(map(str, row.value))) if isinstance(row.value, dict) else type(row.value).__name__
            *layouts, last = LAYOUTS.values()
            report.add(row.file, row.line, "unknown_format", f"not a preference record ({keys}); expected "
                       f"{', '.join(layouts)} or {last}", record=row.record)
            continue
        formats.setdefault(row.file, fmt)
        try:
            sources.append(_Source(row.file, row.line, to_preference(fmt, row.value), row.record))
        except Invalid as e:
            report.add(row.file, row.line, e.cls, e.message, record=row.record)
    kinds = {KINDS[f] for f in formats.values()}
    if len(kinds) > 1:
        raise ChatforgeError("the data mixes pairs and unpaired (labelled) records: " + ", ".join(
            f"{file} ({fmt})" for file, fmt in formats.items()), hint="train pairs with --method dpo and "
                                                                      "labelled answers with --method kto")
    return sources, formats, len(rows)


def _encode(tokenizer, pref: Preference, max_length: int, overlong: str) -> tuple[list[Encoded] | None, int]:
    """Each answer's conversation -> Encoded; (None, longest) when the policy drops the record."""
    full = [encode_chat(tokenizer, pref.conversation(a)) for a in pref.answers]
    longest = max(len(e) for e in full)
    if longest <= max_length:
        return full, longest
    if overlong == "error":
        return None, longest
    kept = [apply_overlong(e, max_length, "truncate" if overlong == "truncate" else "drop") for e in full]
    return (kept if all(k is not None for k in kept) else None), longest


def analyse_preferences(path, tokenizer, *, max_length: int = 2048, overlong: str | None = None,
                        eval_path=None) -> tuple[PreparedPreferences, Report]:
    """Read, validate and encode preference data without refusing anything (`chatforge check`)."""
    report = Report()
    sources, formats, n_rows = _load(path, report)
    kind = KINDS[next(iter(formats.values()))] if formats else "pairs"
    first: dict[str, _Source] = {}
    for s in sources:
        key = s.pref.fingerprint()
        if key in first:
            report.add(s.file, s.line, "duplicate", f"same as {first[key].where}", record=s.record)
        else:
            first.setdefault(key, s)
    leaked = set()  # by identity, not file:line: the records of a one-line JSON array all share its line 1
    if eval_path is not None:
        eval_report = Report()
        held = {s.pref.fingerprint(): s for s in _load(eval_path, eval_report)[0]}
        for p in eval_report.problems:
            p.dropped = False
            report.problems.append(p)
        for s in sources:
            hit = held.get(s.pref.fingerprint())
            if hit:
                report.add(s.file, s.line, "leakage", f"also in the eval data at {hit.where}", record=s.record)
                leaked.add(id(s))
    overlong = overlong or "drop"
    examples, records = [], []
    for s in sources:
        if id(s) in leaked:
            continue
        try:
            encoded, longest = _encode(tokenizer, s.pref, max_length, overlong)
        except TemplateError as e:
            report.add(s.file, s.line, "template_error", e.message, record=s.record)
            continue
        if longest > max_length:
            report.add(s.file, s.line, "too_long", f"{longest} tokens > max length {max_length} "
                       f"({'truncated' if encoded else 'dropped'})",
                       severity="error" if overlong == "error" else None, dropped=encoded is None,
                       record=s.record)
        if encoded is None:
            continue
        examples.append(EncodedPair(*encoded) if kind == "pairs" else EncodedUnpaired(encoded[0], s.pref.label))
        records.append(s.pref)
    dropped = dict(Counter(p.cls for p in report.problems if p.is_dropped))
    prepared = PreparedPreferences(kind, examples, records, {}, dropped, max_length, formats, n_rows)
    prepared.stats = preference_stats(prepared)
    return prepared, report


def prepare_preferences(path, tokenizer, *, max_length: int = 2048, overlong: str | None = None,
                        lenient: bool = False, max_drop_share: float = MAX_DROP_SHARE,
                        eval_path=None) -> PreparedPreferences:
    """analyse_preferences, refusing invalid data like `chatforge.data.prepare` (strict unless lenient)."""
    prepared, report = analyse_preferences(path, tokenizer, max_length=max_length, overlong=overlong,
                                           eval_path=eval_path)
    report.refuse_or_drop(path, rows=prepared.rows, dropped=prepared.dropped, lenient=lenient,
                          max_drop_share=max_drop_share, what="preference data", mapping_options=False)
    if not prepared.examples:
        raise ChatforgeError(f"{path}: no usable preference records")
    return prepared


def preference_stats(prepared: PreparedPreferences) -> dict:
    from chatforge.data.stats import percentile

    seqs = [e for ex in prepared.examples for e in ((ex.chosen, ex.rejected) if prepared.kind == "pairs"
                                                     else (ex.example,))]
    lengths = sorted(len(e) for e in seqs)
    stats = {"kind": prepared.kind, "examples": len(prepared.examples), "sequences": len(seqs),
             "tokens_total": sum(lengths), "tokens_trained": sum(e.trained for e in seqs),
             "length": {"min": lengths[0] if lengths else 0, "p50": percentile(lengths, 50),
                        "p90": percentile(lengths, 90), "max": lengths[-1] if lengths else 0},
             "max_length": prepared.max_length}
    if prepared.kind == "unpaired":
        stats["desirable"] = sum(1 for ex in prepared.examples if ex.label)
        stats["undesirable"] = len(prepared.examples) - stats["desirable"]
    return stats


# ---- batches -----------------------------------------------------------------------------------------------
def answer_start(example: Encoded) -> int:
    """Index of the first trained token (where the answer starts; everything before is the prompt)."""
    return next(i for i, t in enumerate(example.labels) if t != IGNORE)


def mismatched(prompt_of: Encoded, answer_of: Encoded) -> Encoded:
    """One example's prompt followed by another's answer (KTO's KL estimate). Both come from encode_chat, so the
    split is where the answer's labels start; the labels are the answer's own."""
    a, b = answer_start(prompt_of), answer_start(answer_of)
    return Encoded(prompt_of.input_ids[:a] + answer_of.input_ids[b:],
                   [IGNORE] * a + answer_of.labels[b:])


def shared_prefix(a: Encoded, b: Encoded) -> int:
    """How many leading tokens two sequences can share: their common prefix (same tokens, same labels), less its
    last token, which each keeps (its output predicts the sequence's next token, where the two differ). A pair's
    prompt, and the start of the answers when the rejected one is an edit of the chosen one."""
    n = min(len(a), len(b))
    k = next((i for i in range(n) if a.input_ids[i] != b.input_ids[i] or a.labels[i] != b.labels[i]), n)
    return max(k - 1, 0)


def _layout(seqs: list[Encoded], pair: tuple[int, ...], k: int) -> tuple[Encoded, list[int], list[int]]:
    """One sequence, or a pair as one run of tokens with its first k (shared) once: the first sequence whole,
    the second from token k on with position ids from k, which chatforge.train.attention reads as "continues
    the first k tokens of the last sequence that started at 0".
    -> (the run, the index in seqs that each token's label belongs to, the second sequence it also belongs to
    or -1: the labels of tokens 1..k are both sequences', the same token after the same context)."""
    first = seqs[pair[0]]
    ids, labels, pos = list(first.input_ids), [IGNORE] + first.labels[1:], list(range(len(first)))
    who = [pair[0]] * len(first)
    also = [pair[1] if 1 <= j <= k and len(pair) > 1 else -1 for j in range(len(first))]
    if len(pair) > 1:
        e = seqs[pair[1]]
        ids += e.input_ids[k:]
        labels += [IGNORE] + e.labels[k + 1:]  # a run's first token is never the previous token's target
        pos += list(range(k, len(e)))
        who += [pair[1]] * (len(e) - k)
        also += [-1] * (len(e) - k)
    return Encoded(ids, labels, pos), who, also


def collate_sequences(seqs: list[Encoded], pad_id: int, max_length: int, pack: bool = True,
                      length: int = 0, share: list[tuple[int, int]] = ()) -> dict:
    """Sequences -> one batch whose trained positions know their sequence: {"input_ids", "labels",
    "position_ids"} (R, T) as data.pack.collate makes them, "sequence" (R, T) int64, the index in `seqs`
    of the label at each position (-1 where there is none), and "also" (R, T), a second sequence the label
    belongs to too (-1 where none: with `share` only).

    pack=True puts several sequences in each row of max_length (best fit; position ids restart per sequence,
    so no sequence attends to another): far less padding than one padded row per sequence. Rows are padded
    to the longest one, or to `length` when that is longer (data.pack.collate: one width for a compiled model).

    share (with pack): pairs of sequences that start alike (a pair's chosen and rejected answer, which share
    the prompt and often the answer's first words). A pair that fits in one row is laid out with its common
    start once (`_layout`), for a model whose attention reads such position ids (chatforge.train.attention):
    a 33-token prompt and two 30-token answers is 64 tokens to run instead of 126. Each sequence's summed
    log-prob (its labels via "sequence" and "also") is the same as when it stands alone.
    """
    import torch

    from chatforge.data.pack import collate

    paired = {i for pair in share for i in pair} if pack else set()
    units = [_layout(seqs, (i,), 0) for i in range(len(seqs)) if i not in paired]
    for a, b in share if pack else ():
        run = _layout(seqs, (a, b), shared_prefix(seqs[a], seqs[b]))
        units += [run] if len(run[0]) <= max_length else [_layout(seqs, (a,), 0), _layout(seqs, (b,), 0)]
    rows: list[list[int]] = []
    if pack:
        free: list[int] = []
        for u in sorted(range(len(units)), key=lambda u: -len(units[u][0])):
            n = len(units[u][0])
            fits = [r for r in range(len(rows)) if free[r] >= n]
            r = min(fits, key=lambda r: free[r]) if fits else None
            if r is None:
                rows.append([])
                free.append(max(max_length, n))
                r = len(rows) - 1
            rows[r].append(u)
            free[r] -= n
    else:
        rows = [[u] for u in range(len(units))]
    joined, owners = [], []
    for row in rows:
        parts = [units[u] for u in row]
        joined.append(Encoded(*(sum((getattr(e, f) for e, _, _ in parts), []) for f in
                                ("input_ids", "labels", "position_ids"))))
        owners.append([sum((part[i] for part in parts), []) for i in (1, 2)])
    batch = collate(joined, pad_id, length=length)
    untrained = batch["labels"] == IGNORE
    for key, i in (("sequence", 0), ("also", 1)):
        owner = torch.full_like(batch["labels"], -1)
        for r, lists in enumerate(owners):
            owner[r, :len(lists[i])] = torch.tensor(lists[i])
        batch[key] = owner.masked_fill(untrained, -1)
    return batch


def records_from_file(path) -> list[Preference]:
    """The valid preference records of a file (for evaluation); invalid ones are an error naming file:line."""
    report = Report()
    sources, _, _ = _load(path, report)
    if report.errors:
        raise ChatforgeError(f"{path}: {counted(len(report.errors), 'invalid preference record')}\n"
                             + report.summary(),
                             hint=f"see `chatforge check {path}`")
    return [s.pref for s in sources]

