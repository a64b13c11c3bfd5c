"""Model FLOPs utilisation (MFU): the share of the machine's matmul peak that training turns into model FLOPs.

model FLOPs per token (the usual dense-transformer rule, attention's own T^2 work left out):
    forward 2N + backward input gradients 2N + weight gradients 2 N_trained
so ~6N for full fine-tuning and ~4N for LoRA (N_trained is the adapters: ~3 % of N), N = the weights of the
matmuls (the body's linear layers and the LM head; a tied embedding counts once, as the head).

peak: measured, not from a data sheet (a VM's clock and AMX share are unknown): the best of a few large GEMMs in
the training dtype (bf16 or fp32) on all of torch's threads, at the start of the run. On a busy machine the
peak comes out lower and the MFU higher: both are of this machine as the run found it.
"""

from __future__ import annotations

import time

import torch

GEMM = 1024  # (1024 x 1024) @ (1024 x 1024): large enough for the kernel's peak, ~5-20 ms on 2 CPU cores


def matmul_params(model) -> tuple[int, int]:
    """(all, trained) weights of the model's matmuls: every nn.Linear weight (PEFT's base and adapter layers
    included) plus the LM head once (tied or not)."""
    total = trained = 0
    seen = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel()
            trained += module.weight.numel() if module.weight.requires_grad else 0
    return total, trained


def flops_per_token(model) -> float:
    total, trained = matmul_params(model)
    return 4.0 * total + 2.0 * trained


def measure_peak(dtype: torch.dtype, device: str = "cpu", repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (GEMM x GEMM) matmuls in `dtype` on `device`."""
    a = torch.randn(GEMM, GEMM, dtype=dtype, device=device)
    b = torch.randn(GEMM, GEMM, dtype=dtype, device=device)
    out = torch.empty(GEMM, GEMM, dtype=dtype, device=device)
    torch.mm(a, b, out=out)  # kernel selection, first-touch of the buffers
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * GEMM**3 / max(best, 1e-9)


def mfu(tokens_per_sec: float, flops_per_tok: float, peak: float) -> float:
    return tokens_per_sec * flops_per_tok / peak if peak > 0 else 0.0
