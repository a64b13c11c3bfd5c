"""Options of `chatforge serve` (the model options --dtype/--device/... come from GenerateConfig)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from chatforge.config import non_negative_float, non_negative_int, option, positive_float, positive_int, whole_number


def port_number(s: str) -> int:
    """A CLI/YAML parser for --port, checked here so a bad one fails before the model loads (bind() would only
    raise OverflowError then). 0 is valid: serve.server.bind takes it as "any free port"."""
    v = whole_number(s)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {v}")
    return v


@dataclass
class ServeConfig:
    host: str = option("127.0.0.1", "Address to listen on. 0.0.0.0 exposes the server to your network.")
    port: int = option(8000, "TCP port to listen on (0: any free one, printed at start).", parse=port_number)
    api_key: str | None = option(None, "Require `Authorization: Bearer KEY` on every route but /health and the "
                                       "chat page (default: the CHATFORGE_API_KEY environment variable, else none).")
    max_concurrency: int = option(8, "Most requests generated at once (the rows of the running batch).",
                                  parse=positive_int)
    max_queue: int = option(32, "Most requests waiting for a free slot; more get 429 with Retry-After.",
                            parse=non_negative_int)
    max_tokens: int = option(512, "max_tokens for requests that do not set one.", parse=positive_int)
    max_body_bytes: int = option(1 << 20, "Largest request body accepted, in bytes; larger ones get 413.",
                                 parse=positive_int)
    max_messages: int = option(256, "Most messages in one chat request; more get 400.", parse=positive_int)
    max_prompt_tokens: int | None = option(None, "Longest prompt in tokens; longer ones get 400 (default: what the "
                                                 "model's context holds).", parse=positive_int)
    body_timeout: float = option(30.0, "Seconds a client may take to send its request body; slower ones get 408 "
                                       "(slow-body clients cannot hold connections open).", parse=positive_float)
    batch_window_ms: float = option(10.0, "When idle, how long the first request waits for others to start "
                                          "with it (milliseconds).", parse=non_negative_float)
    model_id: str | None = option(None, "The model id clients use (default: the MODEL argument as given).")
    engine: str = option("chatforge", "What generates: chatforge (this package's engine), vllm (vLLM's server, on a "
                                      "GPU; pip install vllm) or llama.cpp (a .gguf file through llama-cpp-python; "
                                      "pip install 'chatforge[llama-cpp]').", choices=["chatforge", "vllm", "llama.cpp"])
    compare: str | None = option(None, "A second model or run (its base, an earlier run) for the arena at /arena: "
                                       "two hidden, randomly placed answers per prompt, the user votes.",
                                 metavar="OTHER")
    system: str | None = option(None, "System prompt for chat requests that have no system message (default: the "
                                      "one the run was trained with, if any; '' for none).", metavar="TEXT")
