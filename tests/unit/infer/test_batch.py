"""Continuous batching (chatforge.infer.Batch) on tiny real models: sequences that join or leave a running batch get
exactly the tokens they get alone."""

import pytest

from chatforge.infer import Engine, SamplingParams
from chatforge.models.load import load_model
from chatforge.infer import Batch

TEXTS = ["Once upon a time", "The weather in Paris is", "a", "Lumora Home sells thermostats and lights for homes"]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def engine(request, tiny_model, tiny_gpt2):
    return Engine(load_model(str(tiny_model if request.param == "llama" else tiny_gpt2)))


def _collect(updates, texts, done):
    for u in updates:
        texts[u.index] = texts.get(u.index, "") + u.delta
        if u.done is not None:
            done[u.index] = u.done


def test_sequences_joining_a_running_batch_get_what_they_get_alone(engine):
    prompts = [engine.encode_text(t) for t in TEXTS]
    params = [SamplingParams(max_tokens=12), SamplingParams(max_tokens=5),
              SamplingParams(max_tokens=9, temperature=1.0, top_p=0.9, seed=3), SamplingParams(max_tokens=7)]
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    batch, texts, done = engine.new_batch(), {}, {}
    _collect(batch.admit([0], prompts[:1], params[:1]), texts, done)
    for _ in range(2):
        _collect(batch.step(), texts, done)
    _collect(batch.admit([1, 2], prompts[1:3], params[1:3]), texts, done)  # two join, with another length
    _collect(batch.step(), texts, done)
    _collect(batch.admit([3], prompts[3:], params[3:]), texts, done)  # the longest prompt joins last
    assert batch.size == 4
    while batch.size:
        _collect(batch.step(), texts, done)
        # rows that left take their cache columns with them: no column is padding for every row
        assert batch.attention is None or batch.attention.shape[1] == int(batch.attention.sum(-1).max())
    for i, c in enumerate(alone):
        assert done[i].token_ids == c.token_ids and done[i].finish_reason == c.finish_reason
        assert texts[i] == done[i].text == c.text
        assert done[i].prompt_tokens == len(prompts[i]) and done[i].completion_tokens == c.completion_tokens


def test_a_cancelled_row_leaves_and_the_others_are_unaffected(engine):
    prompts = [engine.encode_text(t) for t in TEXTS[:3]]
    params = [SamplingParams(max_tokens=8)] * 3
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    batch, texts, done, cancelled = engine.new_batch(), {}, {}, set()
    _collect(batch.admit([10, 11, 12], prompts, params, cancelled.__contains__), texts, done)
    _collect(batch.step(cancelled.__contains__), texts, done)
    cancelled.add(11)
    _collect(batch.step(cancelled.__contains__), texts, done)
    assert batch.ids == [10, 12]
    while batch.size:
        _collect(batch.step(cancelled.__contains__), texts, done)
    assert 11 not in done
    assert done[10].token_ids == alone[0].token_ids and done[12].token_ids == alone[2].token_ids
    assert batch.cache is None and batch.seqs == {}  # an empty batch holds no memory


def test_a_sequence_that_finishes_at_its_first_token_never_joins(engine):
    prompt = engine.encode_text(TEXTS[0])
    batch, texts, done = engine.new_batch(), {}, {}
    _collect(batch.admit([0], [prompt], [SamplingParams(max_tokens=1)]), texts, done)
    assert done[0].completion_tokens == 1 and batch.size == 0 and batch.cache is None


def test_evict_drops_a_row_and_the_others_go_on(engine):
    prompts = [engine.encode_text(t) for t in TEXTS[:3]]
    params = [SamplingParams(max_tokens=6)] * 3
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    batch, texts, done = engine.new_batch(), {}, {}
    _collect(batch.admit([0, 1, 2], prompts, params), texts, done)
    batch.evict([1])
    assert batch.ids == [0, 2]
    while batch.size:
        _collect(batch.step(), texts, done)
    assert 1 not in done and done[0].token_ids == alone[0].token_ids and done[2].token_ids == alone[2].token_ids


def test_prompts_with_and_without_a_cached_prefix_prefill_together_exactly(tiny_model):
    from chatforge.infer import Engine

    cached = Engine(load_model(str(tiny_model), dtype="float32"))
    plain = Engine(load_model(str(tiny_model), dtype="float32"), prefix_cache_tokens=0)
    shared = "Lumora Home sells thermostats, lights and vacuum robots; answer questions about them. " * 2
    first = cached.encode_text(shared + "Question one?")
    cached.generate([first], [SamplingParams(max_tokens=4)])  # leaves its keys/values in the prefix cache
    prompts = [cached.encode_text(shared + "Question two, a bit longer?"), cached.encode_text("Unrelated text"),
               cached.encode_text(shared + "3?")]
    params = [SamplingParams(max_tokens=6)] * 3
    batch, texts, done = cached.new_batch(), {}, {}
    _collect(batch.admit([0, 1, 2], prompts, params), texts, done)
    while batch.size:
        _collect(batch.step(), texts, done)
    assert [done[i].cached_tokens > 16 for i in range(3)] == [True, False, True]
    assert [done[i].token_ids for i in range(3)] == [plain.generate([p], [sp])[0].token_ids
                                                    for p, sp in zip(prompts, params)]


def test_a_failed_admission_leaves_the_running_rows_as_they_were(engine, monkeypatch):
    # the server then fails only the new request (serve/scheduler.py); the running one finishes as if alone
    from chatforge.infer import AdmitFailed

    good, bad = engine.encode_text(TEXTS[0]), engine.encode_text(TEXTS[1])
    params = SamplingParams(max_tokens=8)
    alone = engine.generate([good], [params])[0]
    batch, texts, done = engine.new_batch(), {}, {}
    _collect(batch.admit([0], [good], [params]), texts, done)
    _collect(batch.step(), texts, done)
    new_sequence = engine.new_sequence

    def failing(prompt, sp, cached=0):
        if prompt == bad:
            raise RuntimeError("this one cannot be sampled")
        return new_sequence(prompt, sp, cached=cached)

    monkeypatch.setattr(engine, "new_sequence", failing)
    with pytest.raises(AdmitFailed, match="this one cannot be sampled"):
        batch.admit([1, 2], [good, bad], [params, params])
    assert batch.ids == [0] and set(batch.seqs) == {0}
    while batch.size:
        _collect(batch.step(), texts, done)
    assert done[0].token_ids == alone.token_ids and texts[0] == alone.text


def test_a_row_whose_sampling_fails_mid_answer_leaves_alone_with_its_error(engine, monkeypatch):
    # a row's own settings or NaN logits: that request fails (serve answers it with an error), the others finish
    # exactly as they would alone; one caller waiting for all (Engine.generate) gets the error
    from chatforge.infer import sampling

    prompts = [engine.encode_text(t) for t in TEXTS[:3]]
    params = [SamplingParams(max_tokens=8, temperature=0.8, seed=s) for s in (1, 13, 2)]
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    calls, sample_row = {"n": 0}, sampling._sample_row

    def failing(row, st):
        if st.params.seed == 13:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return sample_row(row, st)

    monkeypatch.setattr(sampling, "_sample_row", failing)
    batch, texts, done, errors = engine.new_batch(), {}, {}, {}
    updates = batch.admit([0, 1, 2], prompts, params)
    while True:
        errors.update((u.index, u.error) for u in updates if u.error is not None)
        _collect(updates, texts, done)
        if not batch.size:
            break
        updates = batch.step()
    assert set(errors) == {1} and "probability tensor" in str(errors[1]) and 1 not in done
    for i in (0, 2):
        assert done[i].token_ids == alone[i].token_ids and texts[i] == alone[i].text
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="probability tensor"):
        engine.generate(prompts, params)
