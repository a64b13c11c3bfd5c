"""Size and speed of each export variant: file size, load time (transformers) and greedy generation tokens/s.

    .venv/bin/python bench/export_sizes.py                          # the default model, every variant
    .venv/bin/python bench/export_sizes.py --model runs/x --tokens 64 --keep exports/bench

Each variant is made with `chatforge export` (Python API) and then loaded the way a plain transformers user
would: `from_pretrained(dir)` for hf, `from_pretrained(dir, gguf_file=...)` for GGUF. Note that transformers
dequantizes GGUF weights to float32 on load, so a GGUF's tokens/s here is the float32 speed; its size and
speed advantage shows in llama.cpp / Ollama, which run the quantized weights directly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = [("hf", "f32"), ("hf", "bf16"), ("gguf", "f16"), ("gguf", "q8_0")]
K_QUANTS = [("gguf", "q5_k_m"), ("gguf", "q4_k_m")]  # when llama-cpp-python (the extra `quantize`) is installed
PROMPT = [{"role": "user", "content": "Write a short paragraph about the history of bread."}]


def make(model: str, fmt: str, quant: str, root: Path) -> Path:
    from chatforge.export.config import ExportConfig
    from chatforge.export.run import export

    return export(ExportConfig(model=model, format=fmt, quant=quant, out=str(root / f"{fmt}-{quant}"),
                               verify=False, force=True))


def load(out: Path, fmt: str, quant: str, ids):
    """(model, seconds): what a transformers user does with the export, up to the first next-token logits
    (transformers may map weights lazily, so the first forward pass is part of being ready)."""
    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    if fmt == "hf":
        dtype = torch.bfloat16 if quant == "bf16" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
    else:  # plain transformers: the environment has the gguf distribution (scripts/setup_venv.sh)
        model = AutoModelForCausalLM.from_pretrained(out, gguf_file=next(out.glob("*.gguf")).name)
    with torch.inference_mode():
        model.eval()(input_ids=ids)
    return model, time.perf_counter() - start


def decode_seconds(model, ids, n: int, pad_id: int) -> float:
    """Seconds for greedy decoding of exactly n new tokens, batch 1."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, do_sample=False, min_new_tokens=n, max_new_tokens=n, pad_token_id=pad_id)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model or run directory (default: the default model).")
    parser.add_argument("--tokens", type=int, default=32, help="New tokens per timed generation.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed generations per variant (best is kept).")
    parser.add_argument("--keep", default=None, help="Write the exports here (default: a temp dir, deleted).")
    args = parser.parse_args(argv)

    from chatforge.models.load import load_tokenizer, quiet_transformers, set_threads

    quiet_transformers()
    set_threads()
    tokenizer = load_tokenizer(args.model)
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        rows = {}  # name -> [size, load seconds, model]
        import importlib.util

        variants = VARIANTS + (K_QUANTS if importlib.util.find_spec("llama_cpp") else [])
        if variants == VARIANTS:
            print("skipping q5_k_m, q4_k_m: llama-cpp-python is not installed", file=sys.stderr)
        for fmt, quant in variants:
            out = make(args.model, fmt, quant, root)
            size = sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".safetensors", ".gguf"))
            model, seconds = load(out, fmt, quant, ids)
            rows[f"{fmt} {quant}"] = [size, seconds, model]
            print(f"exported and loaded: {fmt} {quant}", file=sys.stderr)
        # Round-robin timing, best run per variant: a shared CPU slows whichever runs in a busy spell.
        best = {name: float("inf") for name in rows}
        for _ in range(args.repeats):
            for name, (_, _, model) in rows.items():
                best[name] = min(best[name], decode_seconds(model, ids, args.tokens, tokenizer.pad_token_id))
    print("| variant | weights file | load + first token (transformers) | generation (tokens/s, batch 1) |")
    print("|---|---:|---:|---:|")
    for name, (size, seconds, _) in rows.items():
        print(f"| {name} | {size / 2**20:.0f} MiB | {seconds:.1f} s | {args.tokens / best[name]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
