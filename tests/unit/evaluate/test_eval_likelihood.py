"""Teacher-forced perplexity / token accuracy of reference answers, against a direct computation."""

import math

import pytest

from chatforge.evaluate.likelihood import answer_likelihood, reference_only

CONVERSATIONS = [
    [{"role": "user", "content": "Can I connect my Halo to a 5 GHz router?"},
     {"role": "assistant", "content": "The Lumora Halo connects only to 2.4 GHz Wi-Fi networks."}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "东西已经拆封了，还能退吗？"},
     {"role": "assistant", "content": "可以，45 天内退货。"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Is support open on Sunday?"}, {"role": "assistant", "content": "No, it is closed."}],
]


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from chatforge.models.load import load_model

    return load_model(str(tiny_model))


def _direct(model, tokenizer, messages):
    """Unbatched: sum of -log p and argmax hits over the positions encode_chat labels."""
    import torch

    from chatforge.data.encode import encode_chat

    enc = encode_chat(tokenizer, reference_only(messages))
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)  # (T, V)
    nll = correct = count = 0
    for t in range(1, len(enc.labels)):
        if enc.labels[t] != -100:
            nll -= logp[t - 1, enc.labels[t]].item()
            correct += int(logp[t - 1].argmax().item() == enc.labels[t])
            count += 1
    return nll, correct, count


def test_batched_likelihood_matches_direct_computation(loaded):
    got = answer_likelihood(loaded.model, loaded.tokenizer, CONVERSATIONS, batch_size=2)
    assert got.shape == (3, 3)
    for row, messages in zip(got, CONVERSATIONS):
        nll, correct, count = _direct(loaded.model, loaded.tokenizer, messages)
        assert row[2] == count > 0
        assert row[1] == correct
        assert row[0] == pytest.approx(nll, rel=1e-4)
    # a random 49k-vocabulary model is close to uniform: perplexity in the tens of thousands
    assert 1e3 < math.exp(got[:, 0].sum() / got[:, 2].sum()) < 1e6


def test_only_the_last_answer_and_its_end_of_turn_are_scored(loaded):
    tok = loaded.tokenizer
    last_only = [CONVERSATIONS[2][2], CONVERSATIONS[2][3]]
    got = answer_likelihood(loaded.model, tok, [CONVERSATIONS[2], last_only], batch_size=2)
    assert got[0, 2] == got[1, 2]  # the earlier answer "Hello! How can I help?" is not counted
    answer_ids = tok("No, it is closed.", add_special_tokens=False)["input_ids"]
    assert got[1, 2] == len(answer_ids) + 1  # the answer's tokens and <|im_end|>


def test_reference_only_marks_earlier_answers_untrained():
    marked = reference_only(CONVERSATIONS[2])
    assert [m.get("weight") for m in marked] == [None, 0, None, None]
    assert "weight" not in CONVERSATIONS[2][1]  # the input is not modified
