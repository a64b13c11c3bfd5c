"""Sampling settings, checked once, and what each does to the next-token choice (logits given directly)."""

import pytest
import torch

from chatforge.errors import ChatforgeError
from chatforge.infer.sampling import SamplerState, SamplingParams, sample

V = 6


def _state(prompt=(), **kw):
    return SamplerState(SamplingParams(**kw), list(prompt), V, "cpu")


def _draws(logits, n=200, **kw):
    st = _state(seed=0, **kw)
    return {int(sample(logits[None].clone(), [st])[0]) for _ in range(n)}


LOGITS = torch.tensor([4.0, 3.9, 3.8, 1.0, 0.5, -1.0])


def test_greedy_picks_the_top_token_and_penalties_change_it():
    assert int(sample(LOGITS[None].clone(), [_state()])[0]) == 0
    assert int(sample(LOGITS[None].clone(), [_state(prompt=[0], repetition_penalty=1.5)])[0]) == 1
    st = _state(frequency_penalty=0.1)
    st.add(0)
    st.add(0)
    assert int(sample(LOGITS[None].clone(), [st])[0]) == 1  # 4.0 - 2 x 0.1 < 3.9
    st = _state(presence_penalty=0.15)
    st.add(0)
    assert int(sample(LOGITS[None].clone(), [st])[0]) == 1


def test_top_k_top_p_and_min_p_limit_the_candidates():
    assert _draws(LOGITS, temperature=1.0) >= {0, 1, 2, 3}
    assert _draws(LOGITS, temperature=1.0, top_k=2) == {0, 1}
    assert _draws(LOGITS, temperature=1.0, top_p=0.3) <= {0, 1}
    assert _draws(LOGITS, temperature=1.0, min_p=0.5) == {0, 1, 2}


def test_a_seed_repeats_and_rows_sample_independently():
    logits = torch.zeros(2, V)
    a = [int(x) for x in (sample(logits.clone(), [_state(temperature=1.0, seed=5), _state(temperature=1.0, seed=9)]))]
    b = [int(x) for x in (sample(logits.clone(), [_state(temperature=1.0, seed=5), _state(temperature=1.0, seed=9)]))]
    assert a == b


@pytest.mark.parametrize("bad, field", [({"top_k": -1}, "top_k"), ({"min_p": 1.5}, "min_p"),
                                        ({"temperature": -0.1}, "temperature"), ({"top_p": 0}, "top_p"),
                                        ({"repetition_penalty": 0}, "repetition_penalty"),
                                        ({"frequency_penalty": 3}, "frequency_penalty"), ({"max_tokens": 0}, "max_tokens"),
                                        ({"stop": ["</s>", ""]}, "stop strings must be non-empty")])
def test_out_of_range_settings_are_one_clear_error(bad, field):
    with pytest.raises(ChatforgeError, match=field):
        SamplingParams(**bad)
