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

An example whose position ids start above 0 continues a start laid out once before it (`_examples`: preference
tuning runs a pair's prompt, and its answers' common first words, once for both answers). Where the call goes
to sdpa instead, `packed_mask` gives it the same attention (without a mask sdpa would be causal over the whole
row, across examples).
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


def _continuations(position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one rule for a shared start: an example that starts at position p > 0 continues the first p tokens of
    its row's last example that started at 0 (when that one has at least p tokens; else it stands alone):
        position_ids [0 1 2 3 4 | 3 4 5]     [prompt, answer 1] then answer 2, which also sees tokens 0-2
    (B, T) position ids -> per token (B, T) int64, on their device: where (index in the row) its example
    starts, where that root example starts (-1: none), and how many of the root's tokens it continues (0: none).
    Tensor operations only (`packed_mask` runs it on the GPU)."""
    pos = position_ids
    b, t = pos.shape
    i = torch.arange(t, device=pos.device).expand(b, t)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    own = torch.where(starts, i, 0).cummax(1).values  # (B, T) where each token's example starts
    first = pos.gather(1, own)  # the position its example starts at
    root = torch.where(starts & (pos == 0), i, -1).cummax(1).values  # the row's last example that started at 0
    after = torch.where(starts, i, t)  # the next example's start after each token's own start:
    after = torch.cat([after[:, 1:], after.new_full((b, 1), t)], 1).flip(1).cummin(1).values.flip(1)
    root_len = after.gather(1, root.clamp(min=0)) - root
    prefix = torch.where((first > 0) & (root >= 0) & (first <= root_len), first, 0)
    return own, root, prefix


def _examples(position_ids: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """(B, T) position ids -> every example of every row as (prefix start, prefix length, start, end), offsets
    in the flattened (B*T) tokens. An example continuing a shared start (`_continuations`: a pair's prompt, laid
    out once by data.preference.collate_sequences) has that start as its prefix: it attends to those tokens, it
    does not recompute them; any other example has none (its prefix start is its start)."""
    t = position_ids.shape[1]
    pos = position_ids.cpu()
    _, root, prefix = _continuations(pos)
    out = []
    for b, row in enumerate(_segments(pos)):
        r, p = root[b].tolist(), prefix[b].tolist()  # (once per row: indexing a tensor costs ~5 us a time)
        for start, end in row:
            out.append((b * t + (r[start] if p[start] else start), p[start], b * t + start, b * t + end))
    return out


def _window(n: int, sliding_window: int, dtype, device) -> torch.Tensor:
    """(n, n) additive mask (the kernel takes the query's dtype): 0 where causal and at most sliding_window - 1
    tokens back (transformers' sliding-window rule), -inf elsewhere."""
    i = torch.arange(n, device=device)
    allowed = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - sliding_window)
    return torch.zeros((n, n), dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))


def _buckets(position_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Group the examples of all rows by length, for one kernel call per group (a call costs a fixed ~1-2 ms on a
    CPU, more when the machine is busy: one per example would eat the gain). Each group is padded to its longest
    example, and an example joins a group while its length is at least 1/sqrt(2) of the longest (the padded work
    stays under 2x its own; examples of <= 64 tokens all share one group). An example's length counts its shared
    prefix (`_examples`), which runs through the kernel again as keys and values, and as queries whose outputs
    are dropped.
    Returns per group (index (n, L) into the flattened (B*T) tokens, valid (n, L) bool: not padding,
    own (n, L) bool: the example's own tokens, whose outputs it writes: valid and not the shared prefix)."""
    examples = sorted(((plen + end - start, pstart, plen, start) for pstart, plen, start, end in
                       _examples(position_ids)), reverse=True)
    groups: list[list[tuple[int, int, int, int]]] = []
    for example in examples:
        if groups and (2 * example[0] ** 2 >= groups[-1][0][0] ** 2 or groups[-1][0][0] <= 64):
            groups[-1].append(example)
        else:
            groups.append([example])
    out = []
    for group in groups:
        lengths, pstart, plen, start = (torch.tensor(col, device=position_ids.device) for col in zip(*group))
        offsets = torch.arange(group[0][0], device=position_ids.device)[None, :]  # (1, L)
        valid = offsets < lengths[:, None]  # (n, L)
        prefix = offsets < plen[:, None]
        index = torch.where(prefix, pstart[:, None] + offsets, start[:, None] + offsets - plen[:, None])
        out.append((torch.where(valid, index, 0), valid, valid & ~prefix))
    return out


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B*T, H, ...) tokens -> (n, H, L, ...) padded examples, the kernels' layout. (index_select: about 3x
    quicker than x[index] on a CPU, and the same.)"""
    n, length = index.shape
    return x.index_select(0, index.reshape(-1)).view(n, length, *x.shape[1:]).transpose(1, 2)


def _scatter(full: torch.Tensor, index: torch.Tensor, keep: torch.Tensor, part: torch.Tensor, add: bool = False):
    """part (n, H, L, ...) -> into full (B*T + 1, H, ...) at index where keep (n, L); the rest (padding, a
    repeated prefix) goes to full's last row, a spare one. Copies, or adds (add=True; the index may repeat)."""
    target = torch.where(keep, index, full.shape[0] - 1).reshape(-1)
    rows = part.transpose(1, 2).reshape(-1, *full.shape[1:])
    (full.index_add_ if add else full.index_copy_)(0, target, rows)


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
    out = q.new_empty((b * t + 1, h, d))  # + a spare row (_scatter)
    lse = q.new_empty((b * t + 1, h), dtype=torch.float32)
    for index, _, own in _buckets(position_ids):
        mask = _window(index.shape[1], sliding_window, q.dtype, q.device) if 0 < sliding_window < index.shape[1] \
            else None
        o, l = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            _gather(q, index), _gather(k, index), _gather(v, index), 0.0, mask is None, attn_mask=mask, scale=scale)
        _scatter(out, index, own, o)  # each token once: a shared prefix by the example it starts
        _scatter(lse, index, own, l)
    return out[:-1].view(b, t, h, d).transpose(1, 2), lse[:-1].view(b, t, h).transpose(1, 2).contiguous()


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
    # + a spare row (_scatter); dk, dv summed: a shared prefix's keys get the gradient of every example that sees it
    dq, dk, dv = flat[1].new_empty((b * t + 1, h, d)), flat[1].new_zeros((b * t + 1, h, d)), \
        flat[1].new_zeros((b * t + 1, h, d))
    for index, valid, own in _buckets(position_ids):
        mask = _window(index.shape[1], sliding_window, query.dtype, query.device) \
            if 0 < sliding_window < index.shape[1] else None
        g, q, k, v, o = (_gather(x, index) for x in flat)  # (n, H, L, D)
        # padded queries and a shared prefix's repeated queries (outputs dropped): no gradient to any key
        g = g.masked_fill(~own[:, None, :, None], 0)
        l = _gather(lse, index).contiguous()  # (n, H, L)
        if index.shape[1] <= GEMM_BACKWARD_MAX:
            parts = _gemm_backward(g, q, k, v, o, l, scale, mask)
        else:
            parts = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                g, q, k, v, o, l, 0.0, mask is None, attn_mask=mask, scale=scale)
        _scatter(dq, index, own, parts[0])  # a repeated prefix query's dq is 0 (its g is)
        _scatter(dk, index, valid, parts[1], add=True)
        _scatter(dv, index, valid, parts[2], add=True)
    grads = (dq[:-1], dk[:-1], dv[:-1])
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


def packed_mask(position_ids: torch.Tensor, sliding_window: int = 0) -> torch.Tensor:
    """(B, T) position ids -> (B, 1, T, T) bool on their device, True where a query (row) may attend to a key
    (column): causal within its example and the shared start it continues (`_continuations`), within
    sliding_window tokens when that is > 0. The same attention as `_packed_op`, for the cases that go to sdpa
    (another device, dropout, a softcap...); built with tensor operations, no loop over the examples."""
    own, root, prefix = _continuations(position_ids)
    i = torch.arange(position_ids.shape[1], device=position_ids.device).expand_as(position_ids)
    qi, qown, qprefix, qroot, qpos = (x[:, :, None] for x in (i, own, prefix, root, position_ids))  # queries
    ki, kown, kpos = (x[:, None, :] for x in (i, own, position_ids))  # (B, 1, T) keys
    allowed = ((kown == qown) & (ki <= qi)) | ((ki >= qroot) & (ki < qroot + qprefix))
    if sliding_window > 0:
        allowed &= qpos - kpos < sliding_window
    return allowed[:, None]


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
        if attention_mask is None and position_ids is not None and query.shape[2] == key.shape[2] > 1 and \
                getattr(module, "is_causal", True):
            # a packed row (transformers builds no mask for this attention): without one sdpa would be causal
            # over the whole row, one example attending to the others
            attention_mask = packed_mask(position_ids.to(query.device), sliding_window or 0)
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
    if getattr(base.config, "_attn_implementation", None) == NAME:
        return True
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if not getattr(base, "_can_set_attn_implementation", lambda: False)():
        return False
    base.set_attn_implementation(NAME)
    return base.config._attn_implementation == NAME
