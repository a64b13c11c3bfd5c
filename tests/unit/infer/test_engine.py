"""The shared generation engine on a tiny model: stopping, batching, streaming, sampling, stop strings."""

import re

import pytest

from chatforge.errors import ChatforgeError
from chatforge.infer import Engine, SamplingParams
from chatforge.infer.text import holdback as _holdback
from chatforge.models.load import load_model

MSG = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(load_model(str(tiny_model)))


def _force_token(engine, token_id, after_steps):
    """Make the model emit `token_id` at decode step `after_steps` (and a fixed token before): a model-boundary mock."""
    import torch

    real_forward = engine.model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        logits = torch.full_like(out.logits, -1e4)
        logits[..., 300] = 0  # an ordinary token
        if calls["n"] >= after_steps:
            logits[..., token_id] = 1e4
        calls["n"] += 1
        out.logits = logits
        return out

    return forward


def test_greedy_is_deterministic_and_respects_max_tokens(engine):
    a = engine.chat(MSG, SamplingParams(max_tokens=7))
    b = engine.chat(MSG, SamplingParams(max_tokens=7))
    assert a.text == b.text and a.token_ids == b.token_ids
    if a.finish_reason == "length":
        assert a.completion_tokens == 7


def test_stops_at_end_of_turn_and_never_runs_on(engine, monkeypatch):
    im_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    monkeypatch.setattr(engine.model, "forward", _force_token(engine, im_end, after_steps=3))
    c = engine.chat(MSG, SamplingParams(max_tokens=50))
    assert c.finish_reason == "stop"
    assert len(c.token_ids) == 3 and im_end not in c.token_ids
    assert "<|im_end|>" not in c.text and "<|im_start|>" not in c.text


def test_length_finish_when_no_end_of_turn(engine, monkeypatch):
    monkeypatch.setattr(engine.model, "forward", _force_token(engine, 0, after_steps=10**6))
    c = engine.chat(MSG, SamplingParams(max_tokens=5))
    assert c.finish_reason == "length" and c.completion_tokens == 5


def test_batched_equals_one_by_one(engine):
    convs = [[{"role": "user", "content": q}] for q in ["Hi", "What is the warranty of the Halo thermostat?", "ok"]]
    params = SamplingParams(max_tokens=6)
    batched = engine.chat_batch(convs, params)
    single = [engine.chat(c, params) for c in convs]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]


def test_stream_concatenates_to_the_full_answer(engine):
    params = SamplingParams(max_tokens=8)
    pieces = list(engine.stream_chat(MSG, params))
    final = pieces[-1]
    assert "".join(p for p in pieces[:-1]) == final.text == engine.chat(MSG, params).text


def test_seeded_sampling_is_repeatable(engine):
    p = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=123)
    assert engine.chat(MSG, p).token_ids == engine.chat(MSG, p).token_ids


def test_stop_string_cuts_the_answer(engine):
    full = engine.chat(MSG, SamplingParams(max_tokens=10)).text
    if len(full) < 4:
        pytest.skip("tiny model answered too briefly to place a stop string")
    stop = full[2:4]
    c = engine.chat(MSG, SamplingParams(max_tokens=10, stop=(stop,)))
    assert c.finish_reason == "stop" and c.text == full[:full.find(stop)]


def test_holdback_keeps_possible_stop_prefix():
    assert _holdback("hello wor", ("world",)) == 3
    assert _holdback("hello", ("xyz",)) == 0


def test_prompt_longer_than_context_is_a_clear_error(engine):
    with pytest.raises(ChatforgeError, match="does not fit the model's context"):
        engine.generate([[1] * (engine.context_length + 1)], [SamplingParams(max_tokens=2)])


@pytest.mark.parametrize("messages, says", [
    ("Hello", "non-empty list"),
    ([], "non-empty list"),
    (["Hello"], "messages[0] must be a dict"),
    ([{"role": "human", "content": "Hello"}], "messages[0].role is 'human'"),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": ["Hello"]}],
     "messages[1].content must be a string"),
])
def test_malformed_messages_are_a_clear_error_not_a_silently_odd_prompt(engine, messages, says):
    # SmolLM-style templates render any role and str() any content: without the check a typo changes the answer
    with pytest.raises(ChatforgeError, match=re.escape(says)):
        engine.chat(messages)


def test_cancelled_sequence_stops(engine):
    prompts = [engine.encode_chat(MSG)] * 2
    finished = set()
    for updates in engine.run(prompts, [SamplingParams(max_tokens=6)] * 2, cancelled=lambda i: i == 1):
        finished |= {u.index for u in updates if u.done}
    assert 1 not in finished and 0 in finished


def test_more_prompts_than_the_batch_holds_join_as_rows_free_and_match_alone(tiny_model):
    engine = Engine(load_model(str(tiny_model)), max_batch_size=2, prefix_cache_tokens=0)
    convs = [[{"role": "user", "content": q}] for q in ["Hi", "Tell me about the Halo", "ok", "Why?", "Reset it"]]
    params = [SamplingParams(max_tokens=n) for n in (3, 9, 5, 2, 7)]
    prompts = [engine.encode_chat(c) for c in convs]
    together = engine.generate(prompts, params)
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]


SYSTEM = {"role": "system", "content": "You are Lumora Home's customer support assistant. Answer briefly."}


def test_a_follow_up_turn_reuses_the_conversation_so_far(tiny_model):
    engine = Engine(load_model(str(tiny_model)))
    plain = Engine(load_model(str(tiny_model)), prefix_cache_tokens=0)
    first = [SYSTEM, {"role": "user", "content": "How do I reset the Halo?"}]
    params = SamplingParams(max_tokens=8)
    answer = engine.chat(first, params)
    assert answer.cached_tokens == 0
    follow = first + [{"role": "assistant", "content": answer.text}, {"role": "user", "content": "And then?"}]
    again = engine.chat(follow, params)
    import os

    # everything the first turn computed that the follow-up prompt starts with (the tiny model's answer may
    # re-tokenize differently, so not always the whole answer)
    shared = len(os.path.commonprefix([engine.encode_chat(first) + answer.token_ids, engine.encode_chat(follow)]))
    assert again.cached_tokens == shared >= len(engine.encode_chat(first)) - 1
    assert again.token_ids == plain.chat(follow, params).token_ids  # and the answer is the same
    other = engine.chat([SYSTEM, {"role": "user", "content": "Something else"}], params)  # shares the system prompt
    assert other.cached_tokens >= 16
    assert other.token_ids == plain.chat([SYSTEM, {"role": "user", "content": "Something else"}], params).token_ids


def test_generation_uses_the_current_cache_api_without_deprecation_warnings(engine):
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    root = logging.getLogger("transformers")
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warnings.warn (FutureWarning ...) fails the test
            engine.chat_batch([MSG, [{"role": "user", "content": "and another, longer one"}]], SamplingParams(max_tokens=4))
    finally:
        root.removeHandler(handler)
        hf_logging.set_verbosity(before)
    assert not [r for r in records if "deprecated" in r]
