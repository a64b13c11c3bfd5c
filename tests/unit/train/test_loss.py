"""The fused LM head + cross entropy (chatforge.train.loss) against PyTorch's own, value and gradients."""

import pytest
import torch
import torch.nn.functional as F

from chatforge.train import loss as L


@pytest.fixture
def small_chunks(monkeypatch):
    """50-word vocabulary, 3 rows per chunk: 7 rows make chunks of 3, 3 and a ragged 1."""
    monkeypatch.setattr(L, "CHUNK_LOGITS", 150)


def _problem(n=7, h=16, v=50, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g, requires_grad=True)
    b = torch.randn(v, generator=g, requires_grad=True) if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, b, targets


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t is not None])


def test_value_and_gradients_equal_pytorch_cross_entropy(small_chunks):
    hidden, weight, bias, targets = _problem()
    ours = L.linear_cross_entropy(hidden, weight, bias, targets)
    ref = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum")
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    # a scaled loss (the trainer divides by the tokens of the step) scales every gradient
    for a, b in zip(_grads(ours * 0.25, hidden, weight, bias), _grads(ref * 0.25, hidden, weight, bias)):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_frozen_weight_gets_no_gradient_and_hidden_gets_the_right_one(small_chunks):
    hidden, weight, _, targets = _problem(bias=False)
    weight.requires_grad_(False)
    ours = L.linear_cross_entropy(hidden, weight, None, targets)
    ours.backward()
    ref_hidden = hidden.detach().clone().requires_grad_()
    F.cross_entropy(F.linear(ref_hidden, weight), targets, reduction="sum").backward()
    assert weight.grad is None
    assert torch.allclose(hidden.grad, ref_hidden.grad, atol=1e-6)


def test_bf16_matmuls_match_autocast_reference(small_chunks):
    """dtype=bf16: the matmuls run in bf16 as under autocast, the softmax in fp32."""
    hidden, weight, _, targets = _problem(n=9, h=32, v=50, bias=False)
    weight = weight.detach().to(torch.bfloat16)
    ours = L.linear_cross_entropy(hidden, weight, None, targets, torch.bfloat16)
    (g_ours,) = torch.autograd.grad(ours, hidden)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(hidden, weight)
    ref = F.cross_entropy(logits.float(), targets, reduction="sum")
    (g_ref,) = torch.autograd.grad(ref, hidden)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)
    assert g_ours.dtype == hidden.dtype
    assert torch.allclose(g_ours, g_ref, rtol=2e-2, atol=2e-2)


def test_token_scores_per_row(small_chunks):
    hidden, weight, bias, targets = _problem()
    targets[0] = F.linear(hidden, weight, bias)[0].argmax()  # at least one right guess
    loss, correct = L.token_scores(hidden, weight, bias, targets)
    logits = F.linear(hidden, weight, bias)
    assert torch.allclose(loss, F.cross_entropy(logits, targets, reduction="none"), atol=1e-5)
    assert torch.equal(correct, logits.argmax(-1) == targets) and correct[0]


def test_no_trained_rows_give_zero_loss_and_zero_gradients():
    hidden, weight, _, _ = _problem(bias=False)
    empty = hidden[:0]
    loss = L.linear_cross_entropy(empty, weight, None, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0 and not hidden.grad.any()
    scores = L.token_scores(empty, weight, None, torch.zeros(0, dtype=torch.long))
    assert [s.numel() for s in scores] == [0, 0]


def test_head_bypass_returns_hidden_states_and_restores_the_head(tiny_model):
    from chatforge.models.load import load_model

    model = load_model(str(tiny_model), dtype="float32").model
    ids = torch.tensor([[1, 2, 3, 4]])
    head = L.HeadBypass(model)
    assert head.matches(model, "cpu")
    hidden = head(model, input_ids=ids, use_cache=False)
    assert hidden.shape == (1, 4, model.config.hidden_size)
    logits = model(input_ids=ids).logits  # the head is back
    assert torch.allclose(logits, F.linear(hidden, head.weight), atol=1e-5)


def test_head_bypass_refuses_a_model_that_changes_logits_after_the_head():
    """Gemma 2 soft-caps its logits after the head: fusing would train a different loss, so it is not used."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5)
    model = Gemma2ForCausalLM(config)
    assert not L.HeadBypass(model).matches(model, "cpu")
    config.final_logit_softcapping = None
    assert L.HeadBypass(model).matches(model, "cpu")
