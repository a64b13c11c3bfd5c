"""Which files say what a model is: the fingerprint of a model is the sha256 over these files' sha256.

Weights (*.safetensors, *.bin, *.gguf), the config, and the tokenizer files (they hold the chat template, which
changes every answer); for an adapter, its weights and config on top of the base's. The store hashes each file
in full once and caches the hash by (path, size, mtime): a model that changes in any byte gets a new
fingerprint, and serving the same files again costs one stat per file (a 270 MB model hashes in about 0.5 s
the first time).
"""

from __future__ import annotations

from pathlib import Path

_WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt")
_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
          "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "adapter_config.json")


def model_files(path: Path, adapter: Path | None = None) -> list[tuple[str, Path]]:
    """[(role/name, file)] in a fixed order: the base directory's files, then the adapter's."""
    out = []
    for role, d in (("base", path), ("adapter", adapter)):
        if d is None:
            continue
        d = Path(d)
        if d.is_file():  # a single-file model (a .gguf)
            out.append((f"{role}/{d.name}", d))
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and (f.suffix in _WEIGHTS or f.name in _FILES):
                out.append((f"{role}/{f.name}", f))
    return out
