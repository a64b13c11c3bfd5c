"""Packed attention (one causal kernel per example of a packed row) = transformers' masked sdpa on the row."""

import pytest
import torch

from chatforge.train import attention
from chatforge.train.attention import NAME, _examples, _segments, packed_mask, use_packed_attention


@pytest.fixture(autouse=True, params=["gemm", "flash"])
def backward_kernel(request, monkeypatch):
    """Every test runs with each backward: the matmul one (short examples) and PyTorch's flash kernel (long)."""
    monkeypatch.setattr(attention, "GEMM_BACKWARD_MAX", 10**6 if request.param == "gemm" else 0)
    return request.param


def _random_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    values = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, attn_implementation="sdpa")
    values.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**values))


def _packed_batch():
    # row 0: examples of 5, 9 and 2 tokens; row 1: 11 tokens then 5 of padding (its own block, restarting at 0)
    pos = torch.tensor([list(range(5)) + list(range(9)) + list(range(2)), list(range(11)) + list(range(5))])
    ids = torch.randint(1, 64, pos.shape, generator=torch.Generator().manual_seed(1))
    return ids, pos


def test_segments_cut_where_positions_restart():
    _, pos = _packed_batch()
    assert _segments(pos) == [[(0, 5), (5, 14), (14, 16)], [(0, 11), (11, 16)]]


def _shared_batch():
    """Row 0: a 6-token prompt with answer a (4 tokens), answer b (3 tokens) continuing the prompt (positions from
    6), then c (5 tokens) alone. Returns ids, position ids, the three sequences alone, and where each sequence's
    own tokens are (in the row, in the sequence alone)."""
    gen = torch.Generator().manual_seed(3)
    prompt, a, b, c = (torch.randint(1, 64, (n,), generator=gen) for n in (6, 4, 3, 5))
    ids = torch.cat([prompt, a, b, c])[None]  # (1, 18)
    pos = torch.tensor([list(range(10)) + [6, 7, 8] + list(range(5))])
    alone = [torch.cat([prompt, a]), torch.cat([prompt, b]), c]
    where = [(slice(0, 10), slice(0, 10)), (slice(10, 13), slice(6, 9)), (slice(13, 18), slice(0, 5))]
    return ids, pos, alone, where


def test_examples_know_a_shared_prompt():
    _, pos, _, _ = _shared_batch()
    assert _examples(pos) == [(0, 0, 0, 10), (0, 6, 10, 13), (13, 0, 13, 18)]
    _, packed = _packed_batch()  # no continuation: no prefix (row 1 starts at 16 in the flattened tokens)
    assert _examples(packed) == [(0, 0, 0, 5), (5, 0, 5, 14), (14, 0, 14, 16), (16, 0, 16, 27), (27, 0, 27, 32)]


def _gemma3(window=4):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    return Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=8, sliding_window=window, layer_types=["sliding_attention", "full_attention"],
        attn_implementation="sdpa"))


@pytest.mark.parametrize("make", [_random_llama, _gemma3], ids=["llama", "gemma3-sliding-window"])
def test_a_shared_prompt_equals_each_sequence_alone(make):
    """The layout preference tuning uses (data.preference.collate_sequences): each sequence's logits, and the
    gradients of a loss over every token once, equal those of the sequences run alone through plain sdpa."""
    model = make()
    ids, pos, alone, where = _shared_batch()
    model.zero_grad()
    total, want = 0, []
    for seq, (_, own) in zip(alone, where):
        logits = model(input_ids=seq[None], use_cache=False).logits[0, own]
        total = total + logits.float().logsumexp(-1).sum()
        want.append(logits.detach())
    total.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert use_packed_attention(model)
    model.zero_grad()
    logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
    logits.float().logsumexp(-1).sum().backward()
    for w, (in_row, _) in zip(want, where):
        torch.testing.assert_close(logits[in_row].detach(), w, atol=1e-5, rtol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(model.get_parameter(name).grad, g, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("window", [0, 3])
def test_packed_mask_gives_sdpa_the_ops_attention(window, backward_kernel):
    """Where packed attention hands over to sdpa (another device, dropout...), the mask makes it the same."""
    if backward_kernel == "flash":
        pytest.skip("forward only")
    _, pos, _, _ = _shared_batch()
    pos = torch.cat([pos, torch.tensor([list(range(18)), list(range(3)) + list(range(5, 20))])])
    # row 1: one example; row 2: one that starts at 5 after one of 3 tokens (continues nothing: on its own)
    assert _examples(pos)[-1] == (39, 0, 39, 54)
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(3, 4, 18, 8, generator=gen) for _ in range(3))
    want, _ = attention._packed_op(q, k, v, pos, 0.35, window)
    got = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=packed_mask(pos, window), scale=0.35)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_handing_over_to_sdpa_keeps_the_examples_apart(backward_kernel):
    """Attention dropout goes to sdpa: with the packed mask, not causal over the whole row (a dropout of 1e-12
    drops nothing in practice, so the result must equal the op's)."""
    if backward_kernel == "flash":
        pytest.skip("forward only")
    model = _random_llama()
    ids, pos, _, _ = _shared_batch()
    layer = model.model.layers[0].self_attn
    q, k, v = (torch.randn(1, heads, 18, 8, generator=torch.Generator().manual_seed(i)) for i, heads in
               enumerate((4, 2, 2)))  # 4 query heads, 2 key/value heads
    want, _ = attention.packed_attention(layer, q, k, v, None, position_ids=pos, scaling=0.35)
    got, _ = attention.packed_attention(layer, q, k, v, None, dropout=1e-12, position_ids=pos, scaling=0.35)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _loss_and_grads(model, ids, pos):
    model.zero_grad()
    logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    loss = logits.float().logsumexp(-1).mean()
    loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_packed_attention_equals_masked_sdpa_forward_and_backward():
    model = _random_llama()
    ids, pos = _packed_batch()
    ref_logits, ref_grads = _loss_and_grads(model, ids, pos)
    assert use_packed_attention(model)
    assert model.config._attn_implementation == NAME
    logits, grads = _loss_and_grads(model, ids, pos)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_examples_do_not_see_each_other():
    """Changing one example's tokens changes no other example's logits."""
    model = _random_llama()
    use_packed_attention(model)
    ids, pos = _packed_batch()
    with torch.no_grad():
        before = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        changed = ids.clone()
        changed[0, 5:14] = (changed[0, 5:14] + 7) % 64  # the second example of row 0
        after = model(input_ids=changed, position_ids=pos, use_cache=False).logits
    torch.testing.assert_close(after[0, :5], before[0, :5])
    torch.testing.assert_close(after[0, 14:], before[0, 14:])
    assert not torch.allclose(after[0, 5:14], before[0, 5:14])


def test_sliding_window_layers_match():
    """Gemma-style sliding-window attention: an example longer than the window keeps its window."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                             attn_implementation="sdpa"))
    ids, pos = _packed_batch()
    ref_logits, ref_grads = _loss_and_grads(model, ids, pos)
    assert use_packed_attention(model)
    logits, grads = _loss_and_grads(model, ids, pos)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_a_padding_mask_or_a_cache_goes_to_plain_sdpa():
    """Generation (attention_mask + KV cache) gives the same tokens with packed attention switched on."""
    model = _random_llama()
    ids = torch.randint(1, 64, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    use_packed_attention(model)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("impl", ["flex_attention"])
def test_other_implementations_are_left_alone(impl):
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = _random_llama(attn_implementation="eager")
    model.config._attn_implementation = impl  # as if loaded with it
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == impl


def test_the_custom_op_passes_opcheck():
    """Fake (meta) kernel, autograd registration and schema of the op agree with its CPU kernel."""
    from chatforge.train.attention import _packed_op

    _, pos = _packed_batch()
    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    for window in (0, 4):
        torch.library.opcheck(_packed_op, (q, k, v, pos, 0.35, window))



def test_gemma3_sliding_and_full_layers_match():
    """Gemma 3 (the multilingual model): sliding-window and full layers, one KV head, its own scaling."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention"], attn_implementation="sdpa")
    model = Gemma3ForCausalLM(config)
    ids, pos = _packed_batch()
    ref_logits, ref_grads = _loss_and_grads(model, ids, pos)
    assert use_packed_attention(model)
    logits, grads = _loss_and_grads(model, ids, pos)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_fp32_weights_under_bf16_autocast_match_sdpa():
    """Full fine-tuning in bf16 autocast: fp32 weights, so rotary hands fp32 q/k next to a bf16 v."""
    model = _random_llama()
    ids, pos = _packed_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(input_ids=ids, position_ids=pos, use_cache=False).logits.float()
        use_packed_attention(model)
        out = model(input_ids=ids, position_ids=pos, use_cache=False).logits.float()
        out.logsumexp(-1).mean().backward()
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("window", [0, 5])
def test_the_matmul_backward_equals_the_flash_kernel_in_bf16(monkeypatch, backward_kernel, window):
    """On bf16 inputs, in several chunks (the scratch limit forced small), causal or with a sliding window."""
    if backward_kernel == "flash":
        pytest.skip("one kernel against the other: once is enough")
    monkeypatch.setattr(attention, "_GEMM_CHUNK_BYTES", 3 * 4 * 24 * 24 * 5)  # 5 (example, head) pairs a chunk
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 24, 16, generator=gen).bfloat16() for _ in range(3))  # (n, H, L, D)
    mask = attention._window(24, window, torch.bfloat16, "cpu") if window else None
    o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, mask is None, attn_mask=mask,
                                                                         scale=0.25)
    g = torch.randn(o.shape, generator=gen).bfloat16()
    want = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(g, q, k, v, o, lse, 0.0, mask is None,
                                                                               attn_mask=mask, scale=0.25)
    got = attention._gemm_backward(g, q, k, v, o, lse, 0.25, mask)
    for name, a, b in zip("qkv", got, want):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), atol=3e-2, rtol=2e-2, msg=name)
