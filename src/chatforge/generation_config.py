"""The generation options shared by `generate`, `chat` (and reused by eval and serve)."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import add_arguments, option, positive_int


@dataclass
class GenerateConfig:
    max_tokens: int = option(256, "Most new tokens per answer.", parse=positive_int)
    temperature: float = option(0.0, "Sampling temperature; 0 = greedy (deterministic).")
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    seed: int | None = option(None, "Random seed, for repeatable sampling.")
    dtype: str = option("auto", "Weights dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.",
                        choices=["auto", "float32", "bfloat16", "float16"])
    device: str | None = option(None, "Device: cpu, cuda, cuda:1 ... (default: cuda when present).")
    trust_remote_code: bool = option(False, "Allow a model's own Python code to run (off by default).")
    allow_pickle: bool = option(False, "Allow loading pickle weights (.bin); they can run code (off by default).")

    def sampling(self):
        from chatforge.infer import SamplingParams

        if self.temperature < 0:
            from chatforge.errors import ChatforgeError

            raise ChatforgeError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            from chatforge.errors import ChatforgeError

            raise ChatforgeError(f"--top-p must be in (0, 1], got {self.top_p}")
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                              seed=self.seed)

    def engine(self, model: str):
        from chatforge.infer import Engine
        from chatforge.models.load import load_model, set_threads

        set_threads()
        loaded = load_model(model, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code,
                            allow_pickle=self.allow_pickle)
        return Engine(loaded)


def add_model_arguments(parser) -> None:
    add_arguments(parser, GenerateConfig)
