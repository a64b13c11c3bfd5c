"""The compiled single-stream decode step (Engine(compile=True)) computes what the eager one does."""

import pytest

from chatforge.infer import Engine, SamplingParams
from chatforge.models.load import load_model

pytestmark = pytest.mark.slow  # one inductor compile of the tiny model (~20 s on a busy 2-core CPU)

MSGS = [[{"role": "user", "content": "Hello there"}],
        [{"role": "user", "content": "Tell me about lighthouses and the sea, please, in some detail."}]]


def test_compiled_decode_gives_the_eager_greedy_tokens_and_compiles_once(tiny_model):
    import torch
    from torch._dynamo.utils import counters

    eager = Engine(load_model(str(tiny_model), dtype="float32"), prefix_cache_tokens=0)
    compiled = Engine(load_model(str(tiny_model), dtype="float32"), compile=True)  # with the prefix cache
    params = SamplingParams(max_tokens=24)
    convs = MSGS + MSGS[1:]  # the repeated prompt is all in the prefix cache: its last token is a (1, 1) step
    want = [eager.chat(m, params).token_ids for m in convs]
    torch._dynamo.reset()
    counters.clear()
    got = [compiled.chat(m, params).token_ids for m in convs]  # prompt lengths x 24 cache lengths each
    assert compiled._compiled is not None and compiled.prefix_cache.hits >= 1  # the compiled path ran...
    assert got == want  # ...and chose the eager model's tokens
    assert counters["stats"]["unique_graphs"] == 1  # one graph for every cache length, not one per step


def test_batched_steps_stay_eager(tiny_model):
    engine = Engine(load_model(str(tiny_model), dtype="float32"), prefix_cache_tokens=0, compile=True)
    out = engine.chat_batch(MSGS, SamplingParams(max_tokens=4))
    assert len(out) == 2 and engine._compiled is None  # B = 2 never builds the compiled graph


def test_a_failing_compile_is_one_clear_error(tiny_model):
    from chatforge.errors import ChatforgeError

    engine = Engine(load_model(str(tiny_model), dtype="float32"), prefix_cache_tokens=0, compile=True)

    def broken(**kwargs):  # what inductor raises on a machine without a working C++ compiler
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nlong trace ...")

    engine._compiled = broken
    with pytest.raises(ChatforgeError) as e:
        engine.chat(MSGS[0], SamplingParams(max_tokens=8))
    assert "torch.compile of the decode step failed" in e.value.message and "long trace" not in e.value.message
    assert "without --compile" in e.value.hint
