"""Generation for one loaded model: prompts in, Completions (or streamed text) out, over the step-level Batch.

    chat / chat_batch / stream_chat  messages -> the model's chat template -> prompt ids -> generate / run
    generate(prompts, params)        longest first, max_batch_size sequences at a time; as one finishes the
                                     next waiting prompt joins the running batch (continuous batching)
    run(prompts, params)             one Batch: admit them all, step until every one is done or cancelled

`forward` is the one place the model is called: (B, S) new tokens + the cache -> last logits (B, V) float32.

compile=True: the single-stream decode step ((1, 1) new token over a plain DynamicCache) runs a `torch.compile`d
model (inductor; on a CPU it writes C++) with frozen weights, so the linear layers use prepacked oneDNN /
int8 kernels instead of eager dispatch per op; the cache's time axis is marked dynamic, so the graph is compiled
once per process (inductor's on-disk cache makes later processes quicker) and not per length. Prefill and
batched steps (B > 1) stay eager: their shapes vary, and a graph per batch size would cost more compile time
than it saves. The thread count stays the one chosen at start (threads.Follow is off): torch.compile guards on
it, and a change would compile the graph again. The compiled step computes the same tokens as the eager one
(tests/unit/infer/test_compile.py).
"""

from __future__ import annotations

from typing import Callable, Iterator

from chatforge.errors import ChatforgeError
from chatforge.infer.batch import Batch, is_plain_cache
from chatforge.infer.prefix import PrefixCache
from chatforge.infer.sampling import SamplingParams
from chatforge.infer.sequence import Completion, Sequence, Update
from chatforge.models.template import encode_prompt, end_of_turn_ids


PROMPT_ROLES = ("system", "user", "assistant", "tool")


def check_prompt_messages(messages) -> None:
    """The shape a prompt's messages must have: a chat template renders an unknown role or a non-string content
    without complaint (SmolLM's writes `<|im_start|>bogus`), so a caller's typo would silently change the answer."""
    if not isinstance(messages, list) or not messages:
        raise ChatforgeError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, not "
                             f"{type(messages).__name__ if messages else 'an empty list'}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ChatforgeError(f"messages[{i}] must be a dict with 'role' and 'content', not {type(m).__name__}")
        if m.get("role") not in PROMPT_ROLES:
            raise ChatforgeError(f"messages[{i}].role is {m.get('role')!r}: use one of {', '.join(PROMPT_ROLES)}")
        content = m.get("content")
        if not isinstance(content, str) and not (content is None and m.get("tool_calls")):
            raise ChatforgeError(f"messages[{i}].content must be a string, not {type(content).__name__}")


class Engine:
    """Generation for one loaded model. Not thread-safe: use it from one thread (serve has a scheduler).

    prefix_cache_tokens: how many tokens of recent sequences' keys/values to keep for prefix reuse (0 = off).
    """

    def __init__(self, loaded, *, max_batch_size: int = 16, prefix_cache_tokens: int = 8192, compile: bool = False):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.name = getattr(loaded, "name", "model")
        self.eot_ids = set(end_of_turn_ids(self.tokenizer))
        if not self.eot_ids:
            raise ChatforgeError(f"{self.name}: the tokenizer has no end-of-turn or EOS token")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eot_ids)
        self.device = next(self.model.parameters()).device
        self.max_batch_size = max_batch_size
        cfg = self.model.config
        self.context_length = int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 0)
                                  or 2048)
        self.vocab = int(self.model.get_output_embeddings().weight.shape[0])
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens else None
        self.compile = compile
        self._compiled = None  # the torch.compile'd model, built at the first single-stream decode step

    # ---- prompts -------------------------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Messages -> prompt ids (the model's chat template + the assistant header)."""
        check_prompt_messages(messages)
        return encode_prompt(self.tokenizer, messages)

    def encode_text(self, prompt: str) -> list[int]:
        """A raw text prompt (no template), with BOS when the tokenizer adds one."""
        return self.tokenizer(prompt)["input_ids"]

    def check_prompt(self, ids: list[int]) -> None:
        if len(ids) >= self.context_length:
            raise ChatforgeError(f"the prompt is {len(ids)} tokens, which does not fit the model's context of "
                                 f"{self.context_length} tokens")

    # ---- high level ----------------------------------------------------------------------------------------
    def chat(self, messages: list[dict], params: SamplingParams | None = None) -> Completion:
        return self.generate([self.encode_chat(messages)], [params or SamplingParams()])[0]

    def chat_batch(self, conversations: list[list[dict]], params: SamplingParams | None = None,
                   on_done: Callable[[int], None] | None = None) -> list[Completion]:
        """Answer many conversations, batched."""
        prompts = [self.encode_chat(m) for m in conversations]
        return self.generate(prompts, [params or SamplingParams()] * len(prompts), on_done=on_done)

    def stream_chat(self, messages: list[dict], params: SamplingParams | None = None) -> Iterator[str | Completion]:
        """Yield text pieces as they are generated, then the final Completion."""
        for updates in self.run([self.encode_chat(messages)], [params or SamplingParams()]):
            for u in updates:
                if u.delta:
                    yield u.delta
                if u.done:
                    yield u.done

    def generate(self, prompts: list[list[int]], params: list[SamplingParams],
                 on_done: Callable[[int], None] | None = None) -> list[Completion]:
        """Prompt ids -> Completions. At most max_batch_size run at once; longest prompts first (they pad
        least together), and a waiting prompt joins the batch as soon as a row frees."""
        for ids in prompts:
            self.check_prompt(ids)
        waiting = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        batch = self.new_batch()
        while waiting or batch.size:
            free = self.max_batch_size - batch.size if batch.can_admit() else 0
            if waiting and free > 0:
                new, waiting = waiting[:free], waiting[free:]
                updates = batch.admit(new, [prompts[i] for i in new], [params[i] for i in new])
            else:
                updates = batch.step()
            for u in _raise_errors(updates):
                if u.done:
                    results[u.index] = u.done
                    if on_done:
                        on_done(1)
        return results  # type: ignore[return-value]

    def run(self, prompts: list[list[int]], params: list[SamplingParams],
            cancelled: Callable[[int], bool] | None = None) -> Iterator[list[Update]]:
        """Decode one batch step by step; after each step yield the Updates of the sequences that changed.

        `cancelled(i)` is polled every step: a cancelled sequence stops (no Completion) and costs nothing more.
        """
        for ids in prompts:
            self.check_prompt(ids)
        batch = self.new_batch()
        updates = batch.admit(list(range(len(prompts))), prompts, params, cancelled)
        while True:
            if updates:
                yield _raise_errors(updates)
            if not batch.size:
                return
            updates = batch.step(cancelled)

    # ---- what the Batch uses -------------------------------------------------------------------------------
    def new_batch(self) -> Batch:
        return Batch(self)

    def new_cache(self):
        """The cache a prefill starts from: None (the model makes its own) except for models whose layers are full
        and sliding-window attention (Gemma 3), which get a DynamicCache of plain layers. transformers would give
        their sliding layers a cache that keeps only the last window of keys, a layout rows cannot be merged in
        nor prefixes reused from; plain layers keep every key, and the sliding-window mask (built from the
        config, whatever the cache) still limits what each token sees. The cost: memory, as a sliding layer then
        holds every key of a row, not only the last window's."""
        types = getattr(self.model.config.get_text_config(decoder=True), "layer_types", None) or ()
        if "sliding_attention" not in types or not set(types) <= {"full_attention", "sliding_attention"}:
            return None
        from transformers import DynamicCache

        return DynamicCache()

    def new_sequence(self, prompt: list[int], params: SamplingParams, cached: int = 0) -> Sequence:
        return Sequence(prompt, params, self.tokenizer, self.eot_ids, self.vocab, self.device, cached)

    def forward(self, input_ids, attention, positions, cache):
        """(B, S) ids, (B, T) mask, (B, S) positions, cache -> (last logits (B, V) float32, the updated cache)."""
        import torch

        model = self.model
        if self.compile and self._single_stream_step(input_ids, attention, cache):
            model = self._compiled_model()
            torch._dynamo.mark_dynamic(attention, 1)  # (1, T): T grows every step; one graph for every T
            for layer in cache.layers:
                torch._dynamo.mark_dynamic(layer.keys, 2)
                torch._dynamo.mark_dynamic(layer.values, 2)
        with torch.inference_mode():
            try:
                out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=1)
            except Exception as e:
                if model is self.model:
                    raise
                # inductor needs a working C++ compiler on a CPU; say what failed instead of a compiler trace
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise ChatforgeError(f"{self.name}: torch.compile of the decode step failed ({type(e).__name__}: "
                                     f"{first})", hint="run without --compile (eager decoding)") from None
        return out.logits[:, -1, :].float(), out.cache

    @staticmethod
    def _single_stream_step(input_ids, attention, cache) -> bool:
        """One row, one new token, over a plain DynamicCache at least 2 long (a length-1 axis would be
        specialized by the compiler, not marked dynamic)."""
        return (tuple(input_ids.shape) == (1, 1) and cache is not None and is_plain_cache(cache)
                and attention.shape[1] > 2)

    def _compiled_model(self):
        if self._compiled is None:
            import torch

            # freezing: weights become constants of the graph, so inductor prepacks them for oneDNN (bf16); int8
            # layers keep PyTorch's int8 kernel (models/int8.py), which eager decoding already uses.
            self._compiled = torch.compile(self.model, fullgraph=True, options={"freezing": True})
        return self._compiled


def _raise_errors(updates: list[Update]) -> list[Update]:
    """The Updates, unless one ended its sequence with an error: one caller waits for all of them, so it fails."""
    for u in updates:
        if u.error is not None:
            raise u.error
    return updates
