"""Where chatforge keeps user state. One environment variable, CHATFORGE_HOME, moves all of it
(tests point it at a temporary directory)."""

import os
from pathlib import Path


def chatforge_home() -> Path:
    """~/.cache/chatforge unless CHATFORGE_HOME says otherwise."""
    env = os.environ.get("CHATFORGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "chatforge"


def models_cache() -> Path:
    """Converted models (e.g. the embedded GGUF as safetensors) live here."""
    return chatforge_home() / "models"
