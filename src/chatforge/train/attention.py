"""Attention over packed rows at the cost of their examples: sum(len_i^2) instead of T^2.

A packed row holds several examples end to end, each with position ids restarting at 0 (data/pack.py). With
plain `sdpa`, transformers turns those position ids into a (B, 1, T, T) block-diagonal causal mask: the kernel
then computes all T^2 scores of the row, and with a mask PyTorch's CPU kernels cannot skip the masked blocks,
so at T = 1024 with ~3 examples per row two thirds of the attention work (and of its backward) is thrown away.

`packed_attention` is registered with transformers' public AttentionInterface under the name "chatforge_packed".
Since no mask function is registered under that name, transformers builds no mask at all for it (which saves
the mask, too), and passes each attention call the position ids. The row is cut where the position ids
restart, and each example runs through `scaled_dot_product_attention(is_causal=True)` on its own: the fused
causal kernel, on exactly the len_i^2 / 2 scores that matter. The outputs and gradients are the same as the masked row's
(tests/unit/train/test_attention.py). On a CPU it is one custom op built from PyTorch's own CPU flash-attention
kernels (forward and backward), so torch.compile keeps it inside the layer's graph; other devices keep sdpa. Anything else (a mask given, a KV cache, no position ids) goes to
transformers' own sdpa.

Sliding-window layers (Gemma 3) get an explicit window mask for the examples longer than the window.
"""

from __future__ import annotations

import torch

NAME = "chatforge_packed"


def _segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """(B, T) position ids -> per row the (start, end) of each example: a new one wherever they do not go up by 1."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    t = position_ids.shape[1]
    out = []
    for row in starts.cpu():
        s = row.nonzero()[:, 0].tolist()
        out.append(list(zip(s, s[1:] + [t])))
    return out


def _window(n: int, sliding_window: int, dtype, device) -> torch.Tensor:
    """(n, n) additive mask (the kernel takes the query's dtype): 0 where causal and at most sliding_window - 1
    tokens back (transformers' sliding-window rule), -inf elsewhere."""
    i = torch.arange(n, device=device)
    allowed = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - sliding_window)
    return torch.zeros((n, n), dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))


def _each_example(position_ids: torch.Tensor, sliding_window: int, dtype):
    """(b, s, e, mask or None) for every example of every row."""
    for b, segments in enumerate(_segments(position_ids)):
        for s, e in segments:
            long = sliding_window > 0 and e - s > sliding_window
            yield b, s, e, _window(e - s, sliding_window, dtype, position_ids.device) if long else None


# One opaque op for the whole row (a custom op: torch.compile keeps it in the layer's graph, no graph break),
# built from PyTorch's CPU flash-attention kernels, the ones F.scaled_dot_product_attention dispatches to.
@torch.library.custom_op("chatforge::packed_attention", mutates_args=())
def _packed_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, position_ids: torch.Tensor,
               scale: float, sliding_window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """query/key/value (B, H, T, D) -> output (B, H, T, D), log-sum-exp (B, H, T) fp32 (for the backward)."""
    out = torch.empty_like(query)
    lse = query.new_empty(query.shape[:3], dtype=torch.float32)
    for b, s, e, mask in _each_example(position_ids, sliding_window, query.dtype):
        o, l = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e], 0.0, mask is None,
            attn_mask=mask, scale=scale)
        out[b:b + 1, :, s:e] = o
        lse[b:b + 1, :, s:e] = l
    return out, lse


@_packed_op.register_fake
def _(query, key, value, position_ids, scale, sliding_window):
    return torch.empty_like(query), query.new_empty(query.shape[:3], dtype=torch.float32)


@torch.library.custom_op("chatforge::packed_attention_backward", mutates_args=())
def _packed_backward_op(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        out: torch.Tensor, lse: torch.Tensor, position_ids: torch.Tensor, scale: float,
                        sliding_window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gq, gk, gv = torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)
    for b, s, e, mask in _each_example(position_ids, sliding_window, query.dtype):
        seg = (slice(b, b + 1), slice(None), slice(s, e))
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad[seg].contiguous(), query[seg], key[seg], value[seg], out[seg], lse[seg], 0.0, mask is None,
            attn_mask=mask, scale=scale)
        gq[seg], gk[seg], gv[seg] = dq, dk, dv
    return gq, gk, gv


@_packed_backward_op.register_fake
def _(grad, query, key, value, out, lse, position_ids, scale, sliding_window):
    return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


def _setup_context(ctx, inputs, output):
    query, key, value, position_ids, scale, sliding_window = inputs
    ctx.save_for_backward(query, key, value, position_ids, *output)
    ctx.scale, ctx.sliding_window = scale, sliding_window


def _backward(ctx, grad_out, grad_lse):
    query, key, value, position_ids, out, lse = ctx.saved_tensors
    gq, gk, gv = _packed_backward_op(grad_out, query, key, value, out, lse, position_ids, ctx.scale,
                                     ctx.sliding_window)
    return gq, gk, gv, None, None, None


_packed_op.register_autograd(_backward, setup_context=_setup_context)


def _packed(query, key, value, position_ids, scaling, sliding_window) -> torch.Tensor:
    """query (B, Hq, T, D), key/value (B, Hq, T, D) (GQA already expanded) -> (B, T, Hq, D)."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out, _ = _packed_op(query, key, value, position_ids, float(scale), int(sliding_window or 0))
    return out.transpose(1, 2).contiguous()


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     position_ids=None, sliding_window=None, **kwargs):
    """transformers' attention-function signature: (module, q, k, v, mask, ...) -> (output (B, T, H, D), None)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    plain = (attention_mask is not None or query.device.type != "cpu" or position_ids is None or dropout > 0 or query.shape[2] != key.shape[2]
             or query.shape[2] == 1 or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None
             or not getattr(module, "is_causal", True))
    if plain:
        if sliding_window is not None:
            kwargs["sliding_window"] = sliding_window
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      position_ids=position_ids, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    return _packed(query, key, value, position_ids, scaling, sliding_window), None


def use_packed_attention(model) -> bool:
    """Switch a transformers model (or a PEFT model around one) to packed attention, when it uses sdpa or eager
    attention through the AttentionInterface; returns whether it did."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if not getattr(base, "_can_set_attn_implementation", lambda: False)():
        return False
    base.set_attn_implementation(NAME)
    return base.config._attn_implementation == NAME
