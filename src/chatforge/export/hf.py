"""Merge a run's LoRA adapter into its base weights and write a plain Hugging Face model directory.

The directory needs nothing from chatforge to be used:

    model.safetensors + config.json          AutoModelForCausalLM.from_pretrained(dir)
    tokenizer.json + tokenizer_config.json   AutoTokenizer.from_pretrained(dir)
    chat_template.jinja                      the model's template, or chatforge's default one for base models
    generation_config.json                   eos_token_id = every end-of-turn id, so `model.generate` stops there
"""

from __future__ import annotations

import json
from pathlib import Path

from chatforge.errors import ChatforgeError

TORCH_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def load_merged(model, *, allow_pickle: bool = False):
    """The model (adapter merged) in float32 on the CPU: exact merging, and the reference for verification."""
    from chatforge.models.load import load_model

    return load_model(model, dtype="float32", device="cpu", allow_pickle=allow_pickle, merge_adapter=True)


def source_quant(loaded) -> str:
    """The dtype the source weights were stored in ('f32', 'bf16', 'f16'), read from the base config.json."""
    try:
        config = json.loads((loaded.resolved.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "f32"
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return {v: k for k, v in TORCH_DTYPES.items()}.get(dtype, "f32")


def save_hf(loaded, out_dir: Path, quant: str = "f32") -> list[Path]:
    """Write model + tokenizer + generation config to out_dir (cast to `quant`); return the files written.

    Casting happens in place: callers take their reference logits before saving.
    """
    import torch

    from chatforge.models.template import end_of_turn_ids

    model, tok = loaded.model, loaded.tokenizer
    model.to(getattr(torch, TORCH_DTYPES[quant]))
    eot = end_of_turn_ids(tok)
    if not eot:
        raise ChatforgeError(f"{loaded.name}: the tokenizer has no end-of-turn or EOS token, so an exported "
                             "model could not tell where an answer ends")
    gen = model.generation_config
    gen.eos_token_id = eot if len(eot) > 1 else eot[0]  # plain `model.generate` then stops at end of turn
    gen.pad_token_id = tok.pad_token_id
    if tok.bos_token_id is not None:
        gen.bos_token_id = tok.bos_token_id
    model.config._name_or_path = out_dir.name  # do not leak the local path the weights came from
    try:
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    except OSError as e:
        raise ChatforgeError(f"cannot write to {out_dir}: {e.strerror or e}", exit_code=1) from None
    return sorted(p for p in out_dir.iterdir() if p.is_file())


def load_hf_for_check(out_dir: Path):
    """Reload a written directory in float32, the way any transformers user would (no chatforge code)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
