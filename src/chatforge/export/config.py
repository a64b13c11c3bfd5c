"""The export stage's options: one dataclass for the CLI (`chatforge export`), YAML files and the Python API."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import option

FORMATS = ("hf", "gguf")
# What each format can hold. hf: a torch dtype for the safetensors; gguf: a llama.cpp tensor type.
# q4_k_m / q5_k_m (the sizes Ollama users pick) are made by llama.cpp's own quantizer from the f16 GGUF; it
# comes with llama-cpp-python, the optional extra `llama-cpp`.
QUANTS = {"hf": ("f32", "bf16", "f16"), "gguf": ("f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m")}
DEFAULT_QUANT = {"hf": None, "gguf": "f16"}  # hf: None = keep the source weights' dtype


@dataclass
class ExportConfig:
    model: str | None = option(None, "Model or run directory to export (default: smollm2-135m-instruct).", cli=False)
    format: str = option("hf", "hf: merged safetensors directory; gguf: one GGUF file for llama.cpp / Ollama.",
                         choices=list(FORMATS))
    quant: str | None = option(None, "Weight type. hf: f32, bf16, f16 (default: the source dtype); "
                                     "gguf: f32, f16, bf16, q8_0, q4_k_m, q5_k_m (default: f16; the k-quants "
                                     "need llama-cpp-python: pip install 'chatforge[llama-cpp]').", metavar="TYPE")
    out: str | None = option(None, "Output directory (created; holds the model, or the .gguf and Modelfile); "
                                   "for gguf also a .gguf file name (the Modelfile goes beside it).",
                             short="-o", metavar="PATH")
    ollama: bool = option(False, "gguf only: also write an Ollama Modelfile (chat template, stop tokens).")
    system: str | None = option(None, "The export's default system prompt, used when a conversation has none: "
                                      "put into the chat template and the Modelfile's SYSTEM (default: the one "
                                      "the run was trained with, if any; '' for none).", metavar="TEXT")
    force: bool = option(False, "Replace an existing --out (only after the new export has been verified).")
    verify: bool = option(True, "Reload the written model and compare its logits with the source's before "
                                "keeping it.")
    allow_pickle: bool = option(False, "Allow reading pickle weights (.bin); they can run code (off by default).")
