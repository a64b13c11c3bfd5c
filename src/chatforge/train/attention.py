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


def _buckets(position_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group the examples of all rows by length, for one kernel call per group (a call costs a fixed ~1-2 ms on a
    CPU, more when the machine is busy: one per example would eat the gain). Each group is padded to its longest
    example, and an example joins a group while its length is at least 1/sqrt(2) of the longest (the padded work
    stays under 2x its own; examples of <= 64 tokens all share one group).
    Returns per group (index (n, L) into the flattened (B*T) tokens, valid (n, L) bool: not padding)."""
    t = position_ids.shape[1]
    examples = sorted(((e - s, b * t + s) for b, row in enumerate(_segments(position_ids)) for s, e in row),
                      reverse=True)
    groups: list[list[tuple[int, int]]] = []
    for length, start in examples:
        if groups and (2 * length * length >= groups[-1][0][0] ** 2 or groups[-1][0][0] <= 64):
            groups[-1].append((length, start))
        else:
            groups.append([(length, start)])
    out = []
    for group in groups:
        lengths = torch.tensor([n for n, _ in group], device=position_ids.device)
        starts = torch.tensor([s for _, s in group], device=position_ids.device)
        offsets = torch.arange(group[0][0], device=position_ids.device)  # (L,)
        valid = offsets[None, :] < lengths[:, None]  # (n, L)
        out.append((torch.where(valid, starts[:, None] + offsets[None, :], 0), valid))
    return out


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B*T, H, ...) tokens -> (n, H, L, ...) padded examples, the kernels' layout."""
    return x[index].transpose(1, 2)


# One opaque op for all rows (a custom op: torch.compile keeps it in the layer's graph, no graph break), built
# from PyTorch's CPU flash-attention kernels, the ones F.scaled_dot_product_attention dispatches to. Padding at
# the end of an example is exact under a causal kernel: no real query looks at a later (padded) key, and the
# padded queries' gradients are zeroed before the backward kernel.
@torch.library.custom_op("chatforge::packed_attn", mutates_args=())
def _packed_op(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, position_ids: torch.Tensor,
               scale: float, sliding_window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """query/key/value (B, H, T, D) -> output (B, H, T, D), log-sum-exp (B, H, T) fp32 (for the backward)."""
    b, h, t, d = query.shape
    q, k, v = (x.transpose(1, 2).reshape(b * t, h, d) for x in (query, key, value))  # (B*T, H, D)
    out = torch.empty_like(q)
    lse = q.new_empty((b * t, h), dtype=torch.float32)
    for index, valid in _buckets(position_ids):
        mask = _window(index.shape[1], sliding_window, q.dtype, q.device) if 0 < sliding_window < index.shape[1] \
            else None
        o, l = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            _gather(q, index), _gather(k, index), _gather(v, index), 0.0, mask is None, attn_mask=mask, scale=scale)
        real = index[valid]  # (N,) the tokens, each once
        out[real] = o.transpose(1, 2)[valid]
        lse[real] = l.transpose(1, 2)[valid]
    return out.view(b, t, h, d).transpose(1, 2), lse.view(b, t, h).transpose(1, 2).contiguous()


def _like_out(x: torch.Tensor) -> torch.Tensor:
    """The ops' output layout: (B, H, T, D) with T-major strides (the (B, T, H, D) that o_proj reads next)."""
    b, h, t, d = x.shape
    return x.new_empty((b, t, h, d)).transpose(1, 2)


@_packed_op.register_fake
def _(query, key, value, position_ids, scale, sliding_window):
    return _like_out(query), query.new_empty(query.shape[:3], dtype=torch.float32)


# Up to this example length the backward runs as plain matrix products (_gemm_backward): PyTorch's CPU flash
# backward costs about the same per token at any length, so on short examples (preference pairs, short Q&A) it
# is 1.2-3.5x slower than recomputing the (L, L) probabilities and multiplying; past ~256 tokens flash wins
# (it never holds an (L, L) matrix). Measured per call on 4096 tokens, 9 heads of 64, bf16, 2 cores.
GEMM_BACKWARD_MAX = 256
_GEMM_CHUNK_BYTES = 64 << 20  # the (c, L, L) fp32 scratch of one chunk of (example, head) pairs


def _gemm_backward(g, q, k, v, o, lse, scale: float, mask):
    """Attention backward from the forward's log-sum-exp, as matmuls. g/q/k/v/o (n, H, L, D), lse (n, H, L)
    fp32, mask None (causal) or an additive (L, L) mask -> dq, dk, dv (n, H, L, D), the flash kernel's result:
        P = exp(q k^T * scale [+ mask] - lse)   (causal: 0 above the diagonal)
        dV = P^T g;  dS = P * (g v^T - rowsum(g * o));  dQ = dS k * scale;  dK = dS^T q * scale
    The products run in the inputs' dtype (bf16 on AMX), P and dS are formed in fp32."""
    n, h, length, d = q.shape
    g, q, k, v, o = (x.reshape(n * h, length, d) for x in (g, q, k, v, o))  # (nH, L, D)
    lse = lse.reshape(n * h, length, 1)
    delta = (g.float() * o.float()).sum(-1, keepdim=True)  # (nH, L, 1)
    above = None if mask is not None else \
        torch.ones(length, length, dtype=torch.bool, device=q.device).triu_(1)  # causal: keys after the query
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    step = max(1, _GEMM_CHUNK_BYTES // (3 * 4 * length * length))
    for a in range(0, n * h, step):
        z = slice(a, a + step)
        p = torch.matmul(q[z], k[z].transpose(1, 2)).float().mul_(scale)  # (c, L, L) scores
        if mask is not None:
            p += mask
        p = p.sub_(lse[z]).exp_()
        if above is not None:
            p.masked_fill_(above, 0)
        dv[z] = torch.matmul(p.to(q.dtype).transpose(1, 2), g[z])
        ds = p.mul_(torch.matmul(g[z], v[z].transpose(1, 2)).float().sub_(delta[z])).to(q.dtype)  # (c, L, L)
        dq[z] = torch.matmul(ds, k[z]).mul_(scale)
        dk[z] = torch.matmul(ds.transpose(1, 2), q[z]).mul_(scale)
    return dq.view(n, h, length, d), dk.view(n, h, length, d), dv.view(n, h, length, d)


@torch.library.custom_op("chatforge::packed_attn_backward", mutates_args=())
def _packed_backward_op(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        out: torch.Tensor, lse: torch.Tensor, position_ids: torch.Tensor, scale: float,
                        sliding_window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, h, t, d = query.shape
    flat = [x.transpose(1, 2).reshape(b * t, h, d) for x in (grad, query, key, value, out)]  # (B*T, H, D)
    lse = lse.transpose(1, 2).reshape(b * t, h)
    grads = [torch.empty_like(flat[1]) for _ in range(3)]
    for index, valid in _buckets(position_ids):
        mask = _window(index.shape[1], sliding_window, query.dtype, query.device) \
            if 0 < sliding_window < index.shape[1] else None
        g, q, k, v, o = (_gather(x, index) for x in flat)  # (n, H, L, D)
        g = g.masked_fill(~valid[:, None, :, None], 0)  # padded queries: no gradient to the real keys
        l = lse[index].transpose(1, 2).contiguous()  # (n, H, L)
        if index.shape[1] <= GEMM_BACKWARD_MAX:
            dq, dk, dv = _gemm_backward(g, q, k, v, o, l, scale, mask)
        else:
            dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                g, q, k, v, o, l, 0.0, mask is None, attn_mask=mask, scale=scale)
        real = index[valid]
        for full, part in zip(grads, (dq, dk, dv)):
            full[real] = part.transpose(1, 2)[valid]
    return tuple(x.view(b, t, h, d).transpose(1, 2).contiguous() for x in grads)  # (compile wants them dense)


@_packed_backward_op.register_fake
def _(grad, query, key, value, out, lse, position_ids, scale, sliding_window):
    return torch.empty_like(query, memory_format=torch.contiguous_format), \
        torch.empty_like(key, memory_format=torch.contiguous_format), \
        torch.empty_like(value, memory_format=torch.contiguous_format)


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
    # sdpa runs in autocast's dtype (under bf16 autocast q and k can come out of rotary in fp32 while v is
    # bf16, e.g. full fine-tuning with fp32 weights); a custom op is not autocast, so cast as sdpa would
    device = query.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else \
        torch.promote_types(torch.promote_types(query.dtype, key.dtype), value.dtype)
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
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
