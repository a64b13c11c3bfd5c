"""Check a written model before keeping it: reload it and compare its logits with the source model's.

The probe is one chat prompt; we compare the next-token logits at every position, (T, V) each:

    nrmse = RMS(logits_export - logits_source) / std(logits_source)   (scale-free: tiny and real models alike)
    top1  = share of positions whose most likely next token is the same (reported, not checked: prompt
            positions have near-ties that any rounding may flip)

Measured nrmse: default model (SmolLM2-135M) 0.0009 f16, 0.0062 bf16, 0.033 q8_0; tiny random llama with a
LoRA merged 0.0094 bf16, 0.037 q8_0; tiny random llama 256 wide 0.013 q8_0, 0.077 q5_k_m, 0.13 q4_k_m; a GGUF
of a different model 1.4. The bounds below leave ~3x headroom (the k-quant bounds are set from the tiny model
only, not yet measured on the default model).
"""

from __future__ import annotations

from chatforge.errors import ChatforgeError

TOLERANCE = {"f32": 1e-4, "f16": 0.005, "bf16": 0.03, "q8_0": 0.1, "q5_k_m": 0.3, "q4_k_m": 0.5}  # on nrmse
PROBE = [{"role": "user", "content": "What can you help me with? Answer in two sentences."}]


def probe_ids(tokenizer) -> list[int]:
    from chatforge.models.template import encode_prompt

    return encode_prompt(tokenizer, PROBE)


def logits(model, ids: list[int]):
    """(T, V) float32 next-token logits of one sequence."""
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def compare(reference, got, quant: str) -> dict:
    """Numbers describing how far `got` is from `reference`; raises ChatforgeError beyond the tolerance."""
    import torch

    if got.shape != reference.shape or not torch.isfinite(got).all():
        raise ChatforgeError(f"verification failed: the exported model gives logits of shape {tuple(got.shape)} "
                             f"(expected {tuple(reference.shape)}) or non-finite values", exit_code=1)
    diff = got - reference
    nrmse = (diff.pow(2).mean().sqrt() / reference.std().clamp(min=1e-6)).item()
    report = {"nrmse": round(nrmse, 6), "max_abs_logit_diff": round(diff.abs().max().item(), 6),
              "top1_agreement": round((got.argmax(-1) == reference.argmax(-1)).float().mean().item(), 4),
              "tolerance": TOLERANCE[quant]}
    if nrmse > TOLERANCE[quant]:
        raise ChatforgeError(f"verification failed: the exported model's logits differ from the source's "
                             f"(normalised RMS difference {nrmse:.4f}, allowed for {quant}: {TOLERANCE[quant]}); "
                             "nothing was kept", exit_code=1)
    return report
