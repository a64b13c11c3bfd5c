"""Data that parses but is wrong: near-duplicates, near-leakage, contradictions, personal data and secrets,
answers in another language, empty-looking answers and answers cut off mid-sentence.

    check_quality(examples, report, eval_examples=None, strict=False)

`examples` are (file, line, example[, record]) tuples of rows that already passed validation
(validate.check_messages); record: formats.Row.record, the record's number where its line does not tell it apart.
Every finding is a named class of validate.CLASSES: a warning, or an error under strict=True
(`chatforge check --strict`). Values of personal data are never printed: only a masked form.

Near-duplicates use MinHash over shingles (datasketch): word 3-grams, or character 3-grams for text that is
mostly Chinese/Japanese/Korean (no spaces between words). The Jaccard similarity is an estimate (128 hashes:
about +-0.05), which is why thresholds are well away from the decision that matters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from chatforge.data.formats import position
from chatforge.data.toolcalls import tools_of

NEAR_DUPLICATE = 0.8  # estimated Jaccard of the whole example's shingles
SAME_QUESTION = 0.9  # questions at least this similar are "the same question"
SAME_ANSWER = 0.5  # ... and their answers at most this similar are a contradiction
NUM_PERM = 128
SHINGLE = 3
EXAMPLES_PER_FINDING = 3  # how many other rows one message names

QUALITY_CLASSES = ("near_duplicate", "near_leakage", "contradiction", "personal_data", "language_mismatch",
                   "placeholder_answer", "truncated_answer")


@dataclass
class Item:
    """One example, seen as prompt (everything before the last answer) + answers."""

    file: str
    line: int
    prompt: str  # the user turns (system prompt left out: it is often the same everywhere)
    answers: list[tuple[int, str]]  # (message index, content) of every assistant message
    pairs: list[tuple[str, str]]  # (question, answer) per assistant turn
    context: str = ""  # what else the answers depend on: system prompts, tool definitions and tool results
    record: int | None = None  # formats.Row.record

    @property
    def where(self) -> str:
        return position(self.file, self.line, self.record)

    @property
    def text(self) -> str:
        return self.prompt + "\n" + "\n".join(a for _, a in self.answers)


def items(sources) -> list[Item]:
    """(file, line, example[, record]) -> Items; raw-text examples (str) have no questions or answers."""
    out = []
    for file, line, ex, *numbered in sources:
        record = numbered[0] if numbered else None
        if isinstance(ex, str):
            out.append(Item(file, line, "", [(0, ex)], [], record=record))
            continue
        answers, pairs, question = [], [], ""
        for i, m in enumerate(ex):
            if m["role"] == "user":
                question = m["content"]
            elif m["role"] == "assistant":
                answers.append((i, m["content"]))
                pairs.append((question, m["content"]))
        prompt = "\n".join(m["content"] for m in ex if m["role"] == "user")
        context = [m["content"] for m in ex if m["role"] in ("system", "tool")]
        if tools_of(ex):
            context.append(json.dumps(tools_of(ex), sort_keys=True, ensure_ascii=False))
        out.append(Item(file, line, prompt, answers, pairs, "\n".join(context), record))
    return out


def check_quality(sources, report, eval_sources=None, *, strict: bool = False) -> None:
    """Add every quality finding of `sources` (and of their overlap with `eval_sources`) to `report`."""
    level = "error" if strict else "warning"

    def add(item: Item, cls: str, message: str) -> None:
        # Reported, never dropped: these rows may be right; the user decides.
        report.add(item.file, item.line, cls, message, severity=level, dropped=False, record=item.record)

    train = items(sources)
    chat = [it for it in train if it.pairs]
    for it in chat:
        _check_answers(it, add)
    _near_duplicates(train, add)
    _contradictions(chat, add)
    if eval_sources:
        _near_leakage(train, items(eval_sources), add)


# --- near-duplicates, leakage, contradictions (MinHash) -------------------------------------------------

_WORD = re.compile(r"\w+")


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F


def shingles(text: str) -> set[bytes]:
    """Word 3-grams (lowercased, punctuation ignored), or character 3-grams when most letters are CJK."""
    text = unicodedata.normalize("NFKC", text).lower()
    words = _WORD.findall(text)
    letters = "".join(words)
    if letters and sum(map(_is_cjk, letters)) * 2 > len(letters):
        units = [c for c in letters]  # CJK: characters are the words
        sep = ""
    else:
        units, sep = words, " "
    if len(units) <= SHINGLE:
        return {sep.join(units).encode()} if units else set()
    return {sep.join(units[i:i + SHINGLE]).encode() for i in range(len(units) - SHINGLE + 1)}


def _minhashes(texts: list[str]):
    from datasketch import MinHash

    sets = [shingles(t) or {b""} for t in texts]
    return MinHash.bulk([list(s) for s in sets], num_perm=NUM_PERM), sets


def _lsh(threshold: float):
    """An LSH index that finds (nearly) every pair at `threshold`: banded for a lower threshold, with false
    negatives weighted over false positives (every candidate is verified with its Jaccard estimate anyway)."""
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=max(0.3, threshold - 0.2), num_perm=NUM_PERM, weights=(0.2, 0.8))


def _similar_groups(texts: list[str], threshold: float):
    """For each text i, the earlier texts j < i with estimated Jaccard >= threshold: yields (i, [(j, sim)])."""
    hashes, sets = _minhashes(texts)
    lsh = _lsh(threshold)
    for i, m in enumerate(hashes):
        if not sets[i] - {b""}:
            continue
        hits = []
        for j in lsh.query(m):
            sim = m.jaccard(hashes[j])
            if sim >= threshold:
                hits.append((j, sim))
        if hits:
            yield i, sorted(hits)
        lsh.insert(i, m)


def _names(hits, its: list[Item]) -> str:
    shown = ", ".join(f"{its[j].where} (~{sim:.0%})" for j, sim in hits[:EXAMPLES_PER_FINDING])
    return shown + (f" and {len(hits) - EXAMPLES_PER_FINDING} more" if len(hits) > EXAMPLES_PER_FINDING else "")


def _near_duplicates(its: list[Item], add) -> None:
    texts = [_norm(it.text) for it in its]
    for i, hits in _similar_groups(texts, NEAR_DUPLICATE):
        hits = [(j, s) for j, s in hits if texts[j] != texts[i]]  # exact duplicates have their own class
        if hits:
            add(its[i], "near_duplicate", f"nearly the same as {_names(hits, its)}")


def _contradictions(its: list[Item], add) -> None:
    """The same (or nearly the same) question with a different answer: the model learns both, or neither. Only
    in the same context: another system prompt, other tools or other tool results may rightly change the answer."""
    questions = [_norm(it.prompt) for it in its]
    answers = [_norm("\n".join(a for _, a in it.answers)) for it in its]
    a_hashes, _ = _minhashes(answers)
    for i, hits in _similar_groups(questions, SAME_QUESTION):
        differ = [(j, s) for j, s in hits if its[j].context == its[i].context
                  and answers[j] != answers[i] and a_hashes[i].jaccard(a_hashes[j]) < SAME_ANSWER]
        if differ:
            add(its[i], "contradiction", f"same question as {_names(differ, its)} but a different answer")


def _near_leakage(train: list[Item], held: list[Item], add) -> None:
    """Held-out rows that are nearly (not exactly: that is `leakage`) a training row, or ask nearly the same
    question: the eval then measures memory, not generalisation. Reported on the training row."""
    from datasketch import MinHashLSH

    def index(texts):
        hashes, sets = _minhashes(texts)
        lsh = _lsh(min(NEAR_DUPLICATE, SAME_QUESTION))
        for j, (m, s) in enumerate(zip(hashes, sets)):
            if s - {b""}:
                lsh.insert(j, m)
        return lsh, hashes

    held_texts = [_norm(it.text) for it in held]
    held_q = [_norm(it.prompt) for it in held]
    lsh_text, h_text = index(held_texts)
    lsh_q, h_q = index(held_q) if any(held_q) else (None, None)
    train_text, _ = _minhashes([_norm(it.text) for it in train])
    train_q, _ = _minhashes([_norm(it.prompt) for it in train])
    for it, mt, mq in zip(train, train_text, train_q):
        hits = {}
        for j in lsh_text.query(mt):
            sim = mt.jaccard(h_text[j])
            if sim >= NEAR_DUPLICATE and held_texts[j] != _norm(it.text):
                hits[j] = sim
        if lsh_q is not None and it.prompt:
            for j in lsh_q.query(mq):
                sim = mq.jaccard(h_q[j])
                if sim >= SAME_QUESTION and held_texts[j] != _norm(it.text):
                    hits[j] = max(hits.get(j, 0.0), sim)
        if hits:
            add(it, "near_leakage", f"nearly the same as held-out {_names(sorted(hits.items()), held)}")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


# --- per answer: personal data, language, placeholders, cut-off --------------------------------------------

def _check_answers(it: Item, add) -> None:
    seen = set()  # one finding per value and row: a sample address used three times is one thing to fix
    for (index, answer), (question, _) in zip(it.answers, it.pairs):
        at = f"messages[{index}]" if len(it.answers) > 1 else "the answer"
        for kind, value in find_personal_data(answer):
            if (kind, value) not in seen:
                seen.add((kind, value))
                add(it, "personal_data", f"{kind} {mask(value)} in {at}")
        if is_placeholder(answer):
            add(it, "placeholder_answer", f"{at} is only {answer.strip()[:40]!r}")
            continue
        if looks_truncated(answer):
            add(it, "truncated_answer", f"{at} has a ``` code block that is never closed" if _unclosed_code(answer)
                else f"{at} ends mid-sentence: ...{_tail(answer)!r}")
        q, a = script(question), script(answer)
        if q and a and q != a:
            add(it, "language_mismatch", f"the question is in {q} script, {at} in {a}")


def _tail(text: str, n: int = 30) -> str:
    text = " ".join(text.split())
    return text[-n:]


def mask(value: str) -> str:
    """Enough to find it in the file, not enough to read it: first 2 and last 2 characters."""
    v = value.strip()
    if len(v) <= 6:
        return v[:1] + "*" * (len(v) - 1)
    return v[:2] + "*" * (len(v) - 4) + v[-2:]


# E-mail: a reserved example domain (RFC 2606) is an illustration, not personal data.
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_EXAMPLE_DOMAINS = re.compile(r"@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|[\w-]+\.(?:test|example|invalid|"
                              r"localhost))$", re.I)
# Phone: international (+CC ...), North American (555) 123-4567 / 555-123-4567, Chinese mobile 1[3-9]x9.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}"
                    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|(?<!\d)0\d{2,4}[\s.-]\d{3,4}[\s.-]\d{3,4}"
                    r"|\d{3}[.-]\d{3}[.-]\d{4}|1-\d{3}-\d{3}-\d{4}"
                    r"|(?<!\d)1[3-9]\d{9})(?![\w-])")
# An organisation's contact is not personal data: role mailboxes (support@...) and toll-free numbers.
_ROLE_MAILBOX = re.compile(r"^(?:help|support|info|contact|sales|service|services|customerservice|care|admin|"
                           r"hello|office|press|media|team|feedback|webmaster|privacy|security|abuse|"
                           r"no-?reply|enquiries|inquiries|billing|jobs|careers)[@+.]", re.I)
_TOLL_FREE = re.compile(r"^(?:\+?\d{1,3}[\s.-]?)?\(?(?:800|808|888|877|866|855|844|833|400)\)?[\s.-]?\d")
# A fictional North American number (555 as its exchange or area code) stands in for one in an example: NANPA
# reserves 555-0100 to 555-0199 for fiction, and the other 555 lines only ever served directory and information
# services (555-1212), never a subscriber, which is why films, books and examples use them ("555-1234"); area
# code 555 was never assigned (so "(555) 123-4567" is no number at all). Only numbers written the North American
# way (+1, 1-, (NPA) or NPA-NXX-XXXX, the area code starting 2-9): 030 555 1234 is Berlin and 15551234567 a
# Chinese mobile.
_NANP = re.compile(r"(?:\+1[\s.-]?|1[\s.-])?\(?([2-9]\d{2})\)?[\s.-]?(\d{3})[\s.-]?\d{4}")
# Not the digits of a decimal number (0.9381531715393066): a card number stands alone.
_CARD = re.compile(r"(?<![\d-])(?<!\d[.,])(?:\d[ -]?){12,18}\d(?![\d-])(?![.,]\d)")
# Payment test card numbers (published by Stripe, Braintree/PayPal, Adyen; no bank issues them) and made-up ones:
# digits that are one group repeated (4242 4242 4242 4242, 1234 1234 1234 1234) or hold a run of 8 or more of
# one digit (4111 1111 1111 1111, 5555 5555 5555 4444, 4000 0000 0000 0002). Real card numbers are random enough
# that neither happens by chance (a run of 8 among 16 random digits: about 1 in a million).
_TEST_CARDS = frozenset({
    "4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556", "4222222222222",  # Visa
    "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222",  # Mastercard
    "378282246310005", "371449635398431", "378734493671000",  # American Express
    "6011111111111117", "6011000990139424", "30569309025904", "38520000023237", "36227206271667",  # Discover, Diners
    "3530111333300000", "3566002020360505", "6200000000000005"})  # JCB, UnionPay
_MADE_UP_DIGITS = re.compile(r"^(\d+?)\1+$|(\d)\2{7}")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_CN_ID = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
                    r"(?![\dA-Za-z])")
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?(?![A-Z0-9])")
_KEYS = [
    ("OpenAI API key", re.compile(r"(?<![\w-])sk-(?:proj-)?[A-Za-z0-9_-]{20,}")),
    ("AWS access key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    ("GitHub token", re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("Hugging Face token", re.compile(r"(?<!\w)hf_[A-Za-z0-9]{30,}")),
    ("Google API key", re.compile(r"(?<!\w)AIza[0-9A-Za-z_-]{35}")),
    ("Slack token", re.compile(r"(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("secret", re.compile(r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|password|passwd)\b"
                          r"\s*[:=]\s*['\"]?([A-Za-z0-9_\-/+.=]{11,}[A-Za-z0-9_\-/+=])")),  # not a full stop
]
# A value that stands in for one in an example or a code sample (password="yourpassword", YOUR_API_KEY_HERE,
# yourname@yourdomain.com, sk-xxxxxxxxxxxxxxxx): there is nothing to protect.
_PLACEHOLDER_VALUE = re.compile(r"(?:^|[@._-])your|x{6,}|\*{6,}|placeholder|changeme|@domain\.", re.I)


def luhn(digits: str) -> bool:
    """The Luhn checksum of payment card numbers."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def is_test_card(digits: str) -> bool:
    """A published test card number or a made-up one (see _TEST_CARDS): nothing to protect."""
    return digits in _TEST_CARDS or bool(_MADE_UP_DIGITS.search(digits))


def is_fictional_phone(number: str) -> bool:
    """A North American number with exchange or area code 555 (see _NANP): a number for fiction and examples."""
    m = _NANP.fullmatch(number)
    return bool(m) and "555" in m.groups()


def cn_id_ok(s: str) -> bool:
    """The ISO 7064 MOD 11-2 check character of a Chinese resident identity number."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(c) * w for c, w in zip(s[:17], weights))
    return "10X98765432"[total % 11] == s[17].upper()


def iban_ok(s: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN."""
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_personal_data(text: str) -> list[tuple[str, str]]:
    """[(kind, value)] of e-mail addresses, phone numbers, ID/card numbers (checksums verified) and secrets."""
    found: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []

    def take(kind: str, m: re.Match, group: int = 0, fictional: bool = False) -> None:
        """fictional (a test card number): its span is claimed, so no other pattern reads a part of it (the
        0000 0000 0002 of 4000 0000 0000 0002 as a phone number), but nothing is reported."""
        span = m.span(group)
        if _PLACEHOLDER_VALUE.search(m.group(group)):
            return
        if not any(a < span[1] and span[0] < b for a, b in taken):
            taken.append(span)
            if not fictional:
                found.append((kind, m.group(group)))

    for kind, rx in _KEYS:
        for m in rx.finditer(text):
            take(kind, m, 1 if rx.groups else 0)
    for m in _EMAIL.finditer(text):
        if not (_EXAMPLE_DOMAINS.search(m.group()) or _ROLE_MAILBOX.match(m.group())):
            take("e-mail address", m)
    for m in _CN_ID.finditer(text):
        if cn_id_ok(m.group()):
            take("ID number", m)
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn(digits):
            take("card number", m, fictional=is_test_card(digits))
    for m in _IBAN.finditer(text):
        if iban_ok(m.group()):
            take("bank account (IBAN)", m)
    for m in _SSN.finditer(text):
        take("social security number", m)
    for m in _PHONE.finditer(text):
        if (10 <= sum(c.isdigit() for c in m.group()) <= 15 and not _TOLL_FREE.match(m.group())
                and not is_fictional_phone(m.group())):
            take("phone number", m)
    return found


_PLACEHOLDERS = {"n/a", "na", "n.a.", "none", "null", "nil", "nan", "undefined", "todo", "tbd", "tba", "fixme",
                 "xxx", "...", "…", "-", "--", "?", "??", "placeholder", "no answer", "answer", "answer here",
                 "lorem ipsum", "empty", "same as above", "see above", "待定", "无", "暂无", "略", "同上", "待补充",
                 "未知", "待完善"}
_PLACEHOLDER_START = re.compile(r"^\s*(?:todo|tbd|fixme|lorem ipsum)\b[\s:.!-]*", re.I)


def is_placeholder(answer: str) -> bool:
    """An answer that only stands in for one: N/A, TODO, '...', lorem ipsum, 待定."""
    a = answer.strip()
    core = a.strip(" \t\n.!。:：-_*[]()<>\"'").lower()
    if a.lower() in _PLACEHOLDERS or core in _PLACEHOLDERS:
        return True
    return len(a) < 80 and bool(_PLACEHOLDER_START.match(a))


# The last character of a finished answer: sentence ends, closing brackets/quotes, emoji, ...
_ENDS = set(".!?。！？…\"'”’)]}>»」』）】*`~_|%") | {"\u200b"}
_DANGLING = set(",;:、，；：(-–—/&+=（《「")
_CONNECTORS = {"and", "or", "but", "the", "a", "an", "of", "to", "in", "for", "with", "is", "are", "was", "that",
               "which", "because", "if", "as", "by", "on", "at", "from", "such", "than", "then", "so", "their",
               "its", "this", "these", "can", "may", "will", "be", "not", "including", "like", "when", "while"}
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|[a-z][.)])\s")


def looks_truncated(answer: str) -> bool:
    """Cut off mid-sentence: an unclosed code block, a dangling comma/colon/hyphen, a last word such as
    'and'/'the', or a bracket opened in the last sentence and never closed. Conservative on purpose: answers
    that end without a full stop (lists flattened into prose, a URL, a heading) are not flagged."""
    a = answer.rstrip()
    if not a:
        return False
    if _unclosed_code(a):
        return True
    if "://" in a.split()[-1]:  # ends with a URL (which may end in '/')
        return False
    if a[-1] in _DANGLING and not _ends_code(a):
        return True
    if a[-1] in _ENDS or not (a[-1].isalnum() or _is_cjk(a[-1])):
        return False
    last_line = a.rsplit("\n", 1)[-1].strip()
    if _LIST_ITEM.match(last_line) or last_line.startswith(("#", "|")) or "://" in last_line[-60:]:
        return False
    words = last_line.split()
    if len(words) >= 4 and words[-1].lower() in _CONNECTORS and words[-1] != "A":  # a final "A": a note, option
        return True
    sentence = re.split(r"[.!?。！？]\s", last_line)[-1]
    return sentence.count("(") > sentence.count(")") or sentence.count("（") > sentence.count("）")


def _unclosed_code(answer: str) -> bool:
    return answer.count("```") % 2 == 1


_CODE = re.compile(r"[=(){}\[\]<>\"'`]")


def _ends_code(answer: str) -> bool:
    """The last character ends code, not a sentence: a statement's ';' (SQL, C, JavaScript) on a line with code
    punctuation or indented, or a '+' right after a token (C++, a regex's \\w+)."""
    line = answer.rsplit("\n", 1)[-1]
    if answer[-1] == ";":
        return bool(_CODE.search(line)) or line[:1] in " \t"
    return answer[-1] == "+" and not answer[-2:-1].isspace()


# Scripts by Unicode block, for "the answer is in another language than the question". Languages that share a
# script (English/French) are not told apart; Chinese and Japanese are (kana), as are Latin and Cyrillic.
_SCRIPTS = [("Latin", 0x0041, 0x024F), ("Greek", 0x0370, 0x03FF), ("Cyrillic", 0x0400, 0x04FF),
            ("Hebrew", 0x0590, 0x05FF), ("Arabic", 0x0600, 0x06FF), ("Devanagari", 0x0900, 0x097F),
            ("Thai", 0x0E00, 0x0E7F), ("Hangul", 0x1100, 0x11FF), ("Kana", 0x3040, 0x30FF),
            ("Han", 0x3400, 0x4DBF), ("Han", 0x4E00, 0x9FFF), ("Hangul", 0xAC00, 0xD7AF), ("Han", 0xF900, 0xFAFF),
            ("Han", 0x20000, 0x2FA1F)]
MIN_LETTERS = 12


def script(text: str) -> str | None:
    """The dominant writing system of a text (>= 60% of its letters), or None when too short or mixed.
    Japanese (Han + Kana) counts as Kana when any kana is present in quantity."""
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        o = ord(ch)
        for name, lo, hi in _SCRIPTS:
            if lo <= o <= hi:
                counts[name] = counts.get(name, 0) + 1
                break
    total = sum(counts.values())
    dense = sum(counts.get(k, 0) for k in ("Han", "Kana", "Hangul"))
    counts = {k: n * 4 if k in ("Han", "Kana", "Hangul") else n for k, n in counts.items()}  # ~a word each
    total += 3 * dense
    if total < MIN_LETTERS:
        return None
    if counts.get("Kana", 0) >= 0.1 * total:
        counts["Kana"] = counts.get("Kana", 0) + counts.pop("Han", 0)
    name, n = max(counts.items(), key=lambda kv: kv[1])
    return name if n >= 0.6 * total else None
