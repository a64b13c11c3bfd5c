"""The generation options shared by `generate`, `chat` (and reused by eval and serve)."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import add_arguments, non_negative_int, option, positive_int

DTYPE_HELP = ("Weights dtype: auto (bf16 on GPUs and on CPUs with AMX / AVX-512 bf16 where a bf16 matmul measured "
              "at start is not slower than fp32's, else fp32), float32, bfloat16, float16.")
QUANTIZE_HELP = ("int8: int8 weight-only linear layers (torchao; decode steps run PyTorch's int8 kernel: the fastest "
                 "single stream on a CPU with bf16 instructions, no compile needed; on other CPUs it saves memory but "
                 "decodes slower than fp32; pip install 'chatforge[quantize]').")
COMPILE_HELP = ("Compile the single-stream decode step (torch.compile, needs a C++ compiler on a CPU): ~30 s for the "
                "default model once per process, then faster tokens.")


@dataclass
class GenerateConfig:
    max_tokens: int = option(256, "Most new tokens per answer.", parse=positive_int)
    temperature: float = option(0.0, "Sampling temperature; 0 = greedy (deterministic).")
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    top_k: int = option(0, "Sample only among the K likeliest tokens; 0 = all.", parse=non_negative_int,
                        metavar="K")
    min_p: float = option(0.0, "Drop tokens less likely than MIN_P x the likeliest one; 0 = off.")
    repetition_penalty: float = option(1.0, "> 1 makes tokens already in the prompt or answer less likely; 1 = off.")
    frequency_penalty: float = option(0.0, "Lower a token's logit by this much per time it is already in the answer "
                                           "(-2 to 2).")
    presence_penalty: float = option(0.0, "Lower the logit of every token already in the answer by this much "
                                          "(-2 to 2).")
    stop: list[str] = option([], "Strings that end the answer (not included in it).", metavar="TEXT")
    seed: int | None = option(None, "Random seed, for repeatable sampling.")
    dtype: str = option("auto", DTYPE_HELP, choices=["auto", "float32", "bfloat16", "float16"])
    quantize: str | None = option(None, QUANTIZE_HELP, choices=["int8"])
    compile: bool = option(False, COMPILE_HELP)
    device: str | None = option(None, "Device: cpu, cuda, cuda:1 ... (default: cuda when present).")
    trust_remote_code: bool = option(False, "Allow a model's own Python code to run (off by default).")
    allow_pickle: bool = option(False, "Allow loading pickle weights (.bin); they can run code (off by default).")

    def sampling(self):
        from chatforge.errors import ChatforgeError
        from chatforge.infer import SamplingParams

        try:
            return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                  top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                                  frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
                                  seed=self.seed, stop=tuple(self.stop))
        except ChatforgeError as e:  # name the flags, as the user typed them
            import re

            raise ChatforgeError(re.sub(r"\b([a-z]+(?:_[a-z]+)+|temperature)\b",
                                        lambda m: "--" + m.group(1).replace("_", "-"), e.message)) from None

    def load(self, model: str):
        from chatforge.models.load import load_model, set_threads

        set_threads()
        return load_model(model, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code,
                          allow_pickle=self.allow_pickle, quantize=self.quantize)


def empty_answer_message(loaded, completion) -> str:
    """Why an answer is empty, and what to do: never an empty line that looks like success."""
    from chatforge.models.template import is_default_template

    r = loaded.resolved
    tuned = r is not None and (r.run_dir is not None or r.adapter is not None or (r.path / "chatforge.json").is_file())
    if completion.stop is not None:
        return (f"the answer was cut at its start by the stop string {completion.stop!r}; choose another --stop, "
                "or drop it")
    if completion.finish_reason == "stop" and not completion.token_ids:
        what = "the model ended its answer immediately"
    else:
        what = f"the model's answer is empty (only whitespace or special tokens, {completion.completion_tokens} tokens)"
    if is_default_template(getattr(loaded.tokenizer, "chat_template", None)) and not tuned:
        return (f"{what}: {loaded.name} is a base model without chat training (chatforge's default chat template "
                "is new to it); fine-tune it first (chatforge train --model ...) or use --raw for plain text "
                "continuation")
    return f"{what}; try rephrasing, a --system prompt, or --temperature 0.7"


def cut_off_message(completion, params) -> str | None:
    """What to say when an answer stopped because it ran out of room, not because the model ended it."""
    if completion is None or completion.finish_reason != "length":
        return None
    if completion.completion_tokens >= params.max_tokens:
        return f"cut off at --max-tokens {params.max_tokens}: raise it for a longer answer"
    return f"cut off at the end of the model's context ({completion.prompt_tokens + completion.completion_tokens} tokens)"


def add_model_arguments(parser) -> None:
    add_arguments(parser, GenerateConfig)
