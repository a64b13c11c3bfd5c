"""Incremental detokenizing and stop strings: streamed pieces are whole characters, add up to the full decode,
and each token costs a short decode however long the answer is."""

import pytest

from chatforge.infer.sequence import Sequence
from chatforge.infer.sampling import SamplingParams
from chatforge.infer.text import IncrementalDetokenizer, StopFilter, holdback

TEXTS = ["维生素D缺乏会导致骨质疏松吗？是的，长期缺乏会。", "Great job 🎉🎉 the Halo 👍🏽 works! 😀 ok",
         "Mixed 中文 and English, café naïve — 日本語も 🧪.", "  leading spaces and\nnew lines\n\n  end "]


class CountingTokenizer:
    """The real tokenizer, recording how many ids each decode call got."""

    def __init__(self, tok):
        self.tok, self.sizes = tok, []

    def decode(self, ids, **kw):
        self.sizes.append(len(ids))
        return self.tok.decode(ids, **kw)


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_are_whole_characters_and_add_up_to_the_full_decode(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) / 4  # multi-byte characters really are split over tokens here
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(t) for t in ids] + [detok.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)


def test_a_character_split_over_tokens_waits_until_complete(tokenizer):
    ids = tokenizer("🎉", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    detok = IncrementalDetokenizer(tokenizer)
    assert [detok.push(t) for t in ids] == [""] * (len(ids) - 1) + ["🎉"]


def test_cost_per_token_is_constant(tokenizer):
    ids = tokenizer(" ".join(TEXTS) * 12, add_special_tokens=False)["input_ids"]
    assert len(ids) > 500
    counting = CountingTokenizer(tokenizer)
    detok = IncrementalDetokenizer(counting)
    text = "".join(detok.push(t) for t in ids) + detok.flush()
    assert text == tokenizer.decode(ids)
    assert max(counting.sizes) <= 8  # a short window, never the whole answer


def test_stop_strings_spanning_pieces_are_cut_and_never_shown():
    f = StopFilter(("STOP", "\n\n"))
    shown = [f.feed(p) for p in ["Hello S", "T", "OP and more"]]
    assert shown == ["Hello ", "", ""] and f.stopped and f.matched == "STOP"
    f = StopFilter(("STOP", "\n\n"))
    assert f.feed("a\n\nb STOP") == "a" and f.matched == "\n\n"  # the one that comes first in the text
    f = StopFilter(("STOP",))
    assert [f.feed("a S"), f.feed("TA"), f.flush()] == ["a ", "STA", ""]  # a false start is shown once refuted
    assert holdback("hello wor", ("world",)) == 3 and holdback("hello", ("xyz",)) == 0


def test_a_stop_string_inside_chinese_text(tokenizer):
    text = "第一步：关闭电源。第二步：按住按钮。"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = Sequence([1, 2], SamplingParams(max_tokens=100, stop=("第二步",)), tokenizer, {0}, 49152, "cpu")
    streamed = ""
    for t in ids:
        streamed += seq.push(t, room=100)
        if seq.finished:
            break
    assert seq.finished.finish_reason == "stop"
    assert streamed == seq.finished.text == "第一步：关闭电源。"
