"""Models with sliding-window layers (Gemma 3) decode over plain cache layers (Engine.new_cache), so their rows
merge and their prefixes are reused, and they compute what the model computes with its own sliding cache."""

import json

import pytest

torch = pytest.importorskip("torch")

from chatforge.infer import Engine, SamplingParams  # noqa: E402
from chatforge.models.load import load_model  # noqa: E402

WINDOW = 16  # shorter than the prompts, so the window really cuts


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    from chatforge.models.tiny import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3-window") / "m", arch="gemma3")
    config = json.loads((path / "config.json").read_text())
    config.update(sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"])
    (path / "config.json").write_text(json.dumps(config))
    return load_model(str(path), dtype="float32")


def _own_cache_greedy(model, prompt: list[int], n: int) -> list[int]:
    """transformers' own generate (its DynamicCache(config): a sliding layer keeps only the last window)."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=-1,
                             pad_token_id=0)
    return out[0, len(prompt):].tolist()


PROMPTS = [list(range(100 + i, 140 + 7 * i)) for i in range(3)]  # 40-54 tokens, > WINDOW


def test_sliding_window_models_get_plain_cache_layers(gemma, tiny_model):
    engine = Engine(gemma, prefix_cache_tokens=0)
    cache = engine.new_cache()
    assert type(cache).__name__ == "DynamicCache"
    assert Engine(load_model(str(tiny_model)), prefix_cache_tokens=0).new_cache() is None  # Llama: the model's own
    batch = engine.new_batch()
    batch.admit([0], [PROMPTS[0]], [SamplingParams(max_tokens=4)])
    assert batch.can_admit()  # rows can join while it runs
    assert all(type(layer).__name__ == "DynamicLayer" for layer in batch.cache.layers)


def test_plain_layers_compute_what_the_models_sliding_cache_computes(gemma):
    engine = Engine(gemma, prefix_cache_tokens=0)
    params = SamplingParams(max_tokens=12)
    alone = [engine.generate([p], [params])[0].token_ids for p in PROMPTS]
    reference = [_own_cache_greedy(gemma.model, p, 12) for p in PROMPTS]
    assert [a[:len(r)] for a, r in zip(alone, reference)] == reference
    assert [c.token_ids for c in engine.generate(PROMPTS, [params] * 3)] == alone  # batched = alone


def test_a_follow_up_reuses_the_prefix_on_a_sliding_window_model(gemma):
    engine = Engine(gemma)
    plain = Engine(gemma, prefix_cache_tokens=0)
    params = SamplingParams(max_tokens=6)
    first = engine.generate([PROMPTS[0]], [params])[0]
    follow = PROMPTS[0] + first.token_ids + list(range(300, 310))
    again = engine.generate([follow], [params])[0]
    assert again.cached_tokens >= len(PROMPTS[0])
    assert again.token_ids == plain.generate([follow], [params])[0].token_ids
