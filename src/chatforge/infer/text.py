"""Token ids -> text, incrementally: each step decodes only the newest tokens, so a token costs the same at
the 5th and at the 500th position, and a streamed piece never holds half of a multi-byte character.

Byte-level BPE splits a Chinese character or an emoji over several tokens, and SentencePiece-style tokenizers
drop the leading space of the first token decoded: so each step decodes a short window that starts a few
tokens back (`prefix`), and emits what the window gained beyond the text it already gave:

    ids:    ... [prefix ......... read) [new]
    text  = decode(ids[prefix:])  -  decode(ids[prefix:read])      (held back while it ends in U+FFFD)

Stop strings can span tokens: `StopFilter` holds back the tail that could be the start of one, and cuts the
answer where one appears; it too looks only at the held-back tail plus the new piece.
"""

from __future__ import annotations

_REPLACEMENT = "\ufffd"  # what decode gives for an incomplete UTF-8 sequence


class IncrementalDetokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # the window's start (a few tokens before `read`, for context)
        self.read = 0  # ids before this have been turned into text

    def push(self, token: int) -> str:
        """Add one token; return the text it completes ("" while a character is still incomplete)."""
        self.ids.append(token)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        now = decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith(_REPLACEMENT):
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(before):]
        return ""

    def flush(self) -> str:
        """The text of tokens still held back (the end of the answer); a cut-off last character is dropped."""
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        now = decode(self.ids[self.prefix:], skip_special_tokens=True)
        self.prefix = self.read = len(self.ids)
        return now[len(before):].rstrip(_REPLACEMENT) if len(now) > len(before) else ""


def first_stop(text: str, stops) -> int | None:
    """Where the first stop string starts in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def holdback(text: str, stops) -> int:
    """How many trailing characters could be the start of a stop string (not shown until we know)."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class StopFilter:
    """Pieces of text in, the visible part out: nothing from the first stop string on."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.pending = ""  # text that may be the start of a stop string (shorter than the longest one)
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        window = self.pending + piece
        cut = first_stop(window, self.stops)
        if cut is not None:
            self.pending, self.stopped = "", True
            self.matched = next(s for s in self.stops if window.find(s) == cut)
            return window[:cut]
        keep = holdback(window, self.stops)
        self.pending = window[len(window) - keep:] if keep else ""
        return window[:len(window) - keep]

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
