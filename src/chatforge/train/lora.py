"""LoRA adapters (PEFT) on every linear layer of the body, with a lean forward for the plain case.

PEFT's LoRA linear computes `result + lora_B(lora_A(dropout(x))) * scaling`: for a (N, out) output that is a
multiply and an add over N x out elements, each written to fresh memory, and again in the backward pass.
On a CPU these element-wise passes cost as much as the rank-r matmuls themselves. `_lean_forward` computes
the same sum in one GEMM, `addmm(result, A x, B^T, alpha=scaling)`, whose backward needs no element-wise
pass either. It applies only to plain LoRA (one active adapter, no dropout, no bias, no DoRA or other
variant, not merged, no extra arguments); anything else goes through PEFT's own forward.
"""

from __future__ import annotations

import types
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


def add_lora(model, *, rank: int, alpha: int, dropout: float, bf16: bool):
    """PEFT LoRA (fp32 adapters) on all linear layers of the body.

    With bf16 autocast the frozen base weights are stored in bf16: autocast would cast them at every forward
    anyway, so this halves their memory and saves the casts. PEFT also casts each layer's bf16 input to the
    fp32 adapter dtype; under autocast the adapter matmul runs in bf16 regardless, so that cast is turned off:
    the fp32 copies of every linear input only cost time and memory.
    """
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import Linear as LoraLinear

    if bf16:
        model.to(torch.bfloat16)
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # PEFT calls a transformers API that warns about its own deprecation
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(model, lora)
    for module in model.modules():
        if bf16 and hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
        if type(module) is LoraLinear:
            module.forward = types.MethodType(_lean_forward, module)
    return model


def _lean_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """base(x) + scaling * B(A(x)) as one addmm; PEFT's forward for anything but plain LoRA."""
    name = _plain_adapter(self)
    if args or kwargs or name is None:
        return type(self).forward(self, x, *args, **kwargs)
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight  # (r, in), (out, r)
    result = self.base_layer(x)  # (..., out)
    ax = F.linear(x, lora_a)  # (..., r)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), ax.reshape(-1, ax.shape[-1]), lora_b.T,
                      alpha=self.scaling[name])  # (N, out)
    return out.view(result.shape).to(result.dtype)


def _plain_adapter(layer) -> str | None:
    """The one active adapter's name when it is plain LoRA, else None."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if (name not in layer.lora_A or name in layer.lora_variant or layer.lora_B[name].bias is not None
            or not isinstance(layer.lora_dropout[name], nn.Identity) or getattr(layer, "fan_in_fan_out", False)):
        return None
    return name
