"""Tiny random-weight models with the default model's real tokenizer: for tests and quick smoke tests.

    chatforge.models.tiny.build_tiny_model("/tmp/tiny")            # Llama architecture, ChatML template
    chatforge.models.tiny.build_tiny_model("/tmp/tiny-gpt2", arch="gpt2")  # base model, no template
    chatforge.models.tiny.build_tiny_model("/tmp/tiny-gemma3", arch="gemma3")  # Gemma 3 text architecture

They answer gibberish, but every code path (templates, masks, training, serving, export) runs in seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from chatforge.home import models_cache


def default_tokenizer():
    """The default model's tokenizer, read from the embedded GGUF once and cached (no weights converted)."""
    from transformers import AutoTokenizer

    cached = models_cache() / "smollm2-135m-instruct-tokenizer"
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    from chatforge.models.catalog import CATALOG, DEFAULT_MODEL
    from chatforge.models.resolve import check_gguf_support, package_file

    gguf = package_file(CATALOG[DEFAULT_MODEL])
    check_gguf_support()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=cached.parent))  # unique: test workers may race
    tok.save_pretrained(tmp)
    try:
        tmp.rename(cached)
    except OSError:  # another process cached it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return tok


def build_tiny_model(out_dir: str | Path, *, arch: str = "llama", chat_template: bool = True, seed: int = 0,
                     hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, max_positions: int = 2048) -> Path:
    """Write a random-weight causal LM (safetensors) + the default tokenizer to out_dir; return out_dir.

    arch="llama" keeps the ChatML chat template (like the default model); arch="gpt2" (or
    chat_template=False) drops it and uses <|endoftext|> as EOS, like a base model.
    """
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, LlamaConfig

    out = Path(out_dir)
    tok = default_tokenizer()
    if arch == "gpt2" or not chat_template:
        tok.chat_template = None
        tok.eos_token = "<|endoftext|>"
        tok.pad_token = "<|endoftext|>"
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    if arch == "llama":
        config = LlamaConfig(hidden_size=hidden_size, intermediate_size=hidden_size * 2, num_hidden_layers=num_layers,
                             num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2),
                             max_position_embeddings=max_positions, tie_word_embeddings=True, **common)
    elif arch == "gpt2":
        config = GPT2Config(n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=max_positions,
                            **common)
    elif arch == "gemma3":  # the multilingual embedded model's architecture (sliding + global attention)
        config = Gemma3TextConfig(hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                                  num_hidden_layers=num_layers, num_attention_heads=num_heads,
                                  num_key_value_heads=max(1, num_heads // 2), head_dim=hidden_size // num_heads,
                                  max_position_embeddings=max_positions, sliding_window=512, **common)
        config.architectures = ["Gemma3ForCausalLM"]
    else:
        raise ValueError(f"arch must be 'llama', 'gpt2' or 'gemma3', not {arch!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = common["pad_token_id"]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
