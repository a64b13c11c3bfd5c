"""int8 weight-only linear layers: torchao quantizes, PyTorch's own int8 kernel multiplies the few-row products.

torchao's `Int8WeightOnlyConfig` stores each weight as int8 with one scale per output row. In eager mode its
linear converts the whole int8 matrix to bf16 at every call and then runs a bf16 matmul, so it moves more bytes
than bf16 alone (a single-stream decode: 1.7x slower than bf16 in one run here). PyTorch ships a kernel for
exactly this product, `aten._weight_int8pack_mm(x (M, K), w int8 (N, K), scales (N,))`: it reads the int8
weights once and never builds the bf16 copy.
Measured per call on one core for the default model's shapes: 2.4-6.5x quicker than torchao's eager path up to
M = 8 rows, 1.4x at 16, slower from 32 rows on (there a dequantized matmul reuses each converted weight across
many rows), hence `SMALL_ROWS`: decode steps of up to 16 sequences use the kernel, prefill and big batches keep
torchao's path. The two compute the same product (x @ (w_int8 * scale).T) with different rounding.

The kernel's vectorized CPU paths need K to be a multiple of their vector width (a K of 577 or 520 reads out of
bounds: garbage or a crash), so it is used only where K and N are multiples of 64 and 16, on a CPU. Its fast
paths are for bf16 activations only: in fp32 (or fp16) it was 4-10x slower than bf16 here, and slower than
torchao's dequantized matmul, so layers of an fp32 model keep torchao's path (the loader picks bf16 activations
for int8 wherever the CPU has bf16 instructions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMALL_ROWS = 16  # up to this many rows (tokens) per call, the int8 kernel; above, torchao's dequantized matmul
# x (M, K), w int8 (N, K), scales (N,) in x's dtype -> (M, N); a private ATen op, so checked before use
_int8_mm = getattr(torch.ops.aten, "_weight_int8pack_mm", None)


def kernel_works() -> bool:
    """This torch has the kernel and it computes x @ (w * scale).T on a small product (a later torch may rename
    or change the private op: then every layer keeps torchao's path, which is correct, only slower)."""
    if _int8_mm is None:
        return False
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (16, 64), generator=g, dtype=torch.int8)
    scale = torch.rand(16, generator=g) / 100
    x = torch.randn(2, 64, generator=g)
    try:
        got = _int8_mm(x.bfloat16(), w, scale.bfloat16()).float()
    except Exception:
        return False
    want = x.bfloat16().float() @ (w.float() * scale.bfloat16().float()[:, None]).t()
    return got.shape == want.shape and bool((got - want).abs().max() <= 0.02 * want.abs().max())


def kernel_fits(weight) -> bool:
    """The int8 kernel can take this (N, K) weight, and is the fast way to: K a multiple of 64, N of 16, on a CPU,
    the layer's activations in bf16."""
    n, k = weight.shape
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and k % 64 == 0 and n % 16 == 0


class Int8Linear(torch.nn.Module):
    """A linear layer over a torchao int8 weight-only weight (its `qdata` int8 (N, K) and `scale` (N, 1))."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # the same Parameters (torchao's Int8Tensor weight)
        # (N,) in the activations' dtype, the kernel's layout; not saved: it is derived from the weight
        self.register_buffer("row_scale", linear.weight.scale.reshape(-1).to(linear.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[:-1].numel()
        if not 0 < rows <= SMALL_ROWS or x.dtype != self.row_scale.dtype:
            return F.linear(x, self.weight, self.bias)
        y = _int8_mm(x.reshape(rows, x.shape[-1]), self.weight.qdata, self.row_scale)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def use_int8_kernel(net: torch.nn.Module) -> int:
    """Swap every nn.Linear of `net` that torchao quantized (and whose shape the kernel takes) for an Int8Linear,
    in place; returns how many."""
    if not kernel_works():
        return 0
    swaps = [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
             if type(child) is torch.nn.Linear and hasattr(child.weight, "qdata") and kernel_fits(child.weight)]
    for parent, name, child in swaps:
        setattr(parent, name, Int8Linear(child))
    return len(swaps)
