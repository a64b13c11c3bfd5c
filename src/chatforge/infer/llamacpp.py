"""llama.cpp (llama-cpp-python) behind the Engine / Batch interface, so `chatforge serve --engine llama.cpp`
serves a GGUF file with the same routes, scheduler, streaming and stop rules as chatforge's own engine.

    LlamaCppEngine   encode_chat (the GGUF's own chat template), encode_text, check_prompt, context_length,
                     name, new_batch: what serve uses of an engine
    LlamaCppBatch    admit / step / evict / clear; llama.cpp runs one sequence at a time (one context), so
                     admitted sequences queue inside the batch and each step advances the first by one token
                     (llama.cpp samples: its sampler gets the request's temperature, top-k/p, min-p, penalties)

Text and stopping are chatforge's own (Sequence: incremental detokenizer, stop strings, end-of-turn ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from chatforge.errors import ChatforgeError
from chatforge.infer.batch import AdmitFailed
from chatforge.infer.sampling import SamplingParams
from chatforge.infer.sequence import Sequence, Update
from chatforge.models.template import DEFAULT_CHAT_TEMPLATE, encode_prompt, end_of_turn_ids

INSTALL_HINT = "pip install 'chatforge[llama-cpp]'  (llama-cpp-python; it compiles llama.cpp for this machine)"


def load_llama_class():
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ChatforgeError("--engine llama.cpp needs llama-cpp-python, which is not installed",
                             hint=INSTALL_HINT) from None
    return Llama


def sampling_kwargs(p: SamplingParams) -> dict:
    """SamplingParams -> the keyword arguments of llama_cpp.Llama.generate (its defaults are not ours)."""
    return {"temp": p.temperature, "top_k": p.top_k, "top_p": p.top_p, "min_p": p.min_p, "typical_p": 1.0,
            "repeat_penalty": p.repetition_penalty, "frequency_penalty": p.frequency_penalty,
            "presence_penalty": p.presence_penalty}


class LlamaTokenizer:
    """The few tokenizer calls chatforge makes (template, encode, decode, special ids), answered by llama.cpp."""

    def __init__(self, llm):
        self.llm = llm
        meta = getattr(llm, "metadata", None) or {}
        self.chat_template = meta.get("tokenizer.chat_template") or DEFAULT_CHAT_TEMPLATE
        self.eos_token_id = llm.token_eos()
        self.eos_token = self.convert_ids_to_tokens(self.eos_token_id)
        bos = llm.token_bos()
        self.bos_token = self.convert_ids_to_tokens(bos) if bos is not None and bos >= 0 else ""
        self.pad_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> dict:
        # split_special_tokens: special-token strings in `text` are text (as for transformers' tokenizers)
        return {"input_ids": self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens,
                                               special=not split_special_tokens)}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.llm.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")

    def convert_tokens_to_ids(self, token: str):
        ids = self.llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment  # what transformers renders templates with

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                           bos_token=self.bos_token, eos_token=self.eos_token)


class LlamaCppEngine:
    """A GGUF file served by llama.cpp, with chatforge's engine interface."""

    def __init__(self, gguf: str | Path, *, n_ctx: int = 0, n_threads: int | None = None, name: str | None = None,
                 llama_class: Callable | None = None):
        import os

        path = Path(gguf)
        if not path.is_file() or path.suffix != ".gguf":
            raise ChatforgeError(f"{gguf}: --engine llama.cpp serves a .gguf file",
                                 hint="export one with: chatforge export RUN --format gguf")
        Llama = llama_class or load_llama_class()
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ChatforgeError(f"{path}: llama.cpp cannot load this file ({e})") from None
        self.name = name or str(gguf)
        self.tokenizer = LlamaTokenizer(self.llm)
        self.eot_ids = set(end_of_turn_ids(self.tokenizer))
        self.context_length = int(self.llm.n_ctx())

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return encode_prompt(self.tokenizer, messages)

    def encode_text(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt)["input_ids"]

    def check_prompt(self, ids: list[int]) -> None:
        if len(ids) >= self.context_length:
            raise ChatforgeError(f"the prompt is {len(ids)} tokens, which does not fit the model's context of "
                                 f"{self.context_length} tokens")

    def new_batch(self) -> "LlamaCppBatch":
        return LlamaCppBatch(self)


class LlamaCppBatch:
    """Sequences queue in admission order; each step advances the first one by one token."""

    def __init__(self, engine: LlamaCppEngine):
        self.engine = engine
        self.rows: dict[int, Sequence] = {}  # id -> sequence, in admission order
        self._tokens = None  # the generator of the first row's tokens (llama.cpp's)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[int]:
        return list(self.rows)

    def can_admit(self) -> bool:
        return True

    def admit(self, ids: list[int], prompts: list[list[int]], params: list[SamplingParams],
              cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        e = self.engine
        try:  # all or none of the new sequences join; the running ones are untouched either way
            for prompt in prompts:
                e.check_prompt(prompt)
            new = {i: Sequence(prompt, p, e.tokenizer, e.eot_ids, 0, "cpu")
                   for i, prompt, p in zip(ids, prompts, params)}
        except Exception as error:
            raise AdmitFailed(error) from error
        self.rows.update(new)
        return []

    def step(self, cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        if cancelled is not None:
            self.evict([i for i in self.rows if cancelled(i)])
        if not self.rows:
            return []
        i, seq = next(iter(self.rows.items()))
        try:  # a failure here is this sequence's alone: it leaves with its error, the queued ones go on
            if self._tokens is None:
                llm = self.engine.llm
                if seq.params.seed is not None:
                    llm.set_seed(int(seq.params.seed) % 2**32)
                self._tokens = llm.generate(seq.prompt, reset=True, **sampling_kwargs(seq.params))
            token = next(self._tokens)
            room = self.engine.context_length - len(seq.prompt) - len(seq.ids) - 1
            delta = seq.push(int(token), room)
        except Exception as error:
            self._end_first()
            return [Update(i, "", error=error)]
        if seq.finished:
            self._end_first()
        return [Update(i, delta, seq.finished)] if delta or seq.finished else []

    def evict(self, ids) -> None:
        for i in list(ids):
            if i in self.rows:
                if i == next(iter(self.rows)):
                    self._end_first()
                else:
                    del self.rows[i]

    def clear(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
        self.rows, self._tokens = {}, None

    def _end_first(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
            self._tokens = None
        del self.rows[next(iter(self.rows))]
