"""One generation engine that chat, eval and serve share: batched decoding with a KV cache, left padding,
per-sequence sampling settings, stopping at the template's end-of-turn token or a stop string, streaming.

The decode loop (`Engine.run`) is a plain prefill + one-token-per-step loop, readable top to bottom:

    prompts (B lists of ids) --left pad--> input_ids (B, T), attention_mask (B, T)
    prefill: logits of the last position (B, V)           -> sample next ids (B,)
    step:    feed next ids (B, 1) with the cache          -> logits (B, V) -> sample ...
    a sequence finishes at an end-of-turn id, a stop string, its max_tokens, or when cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from chatforge.errors import ChatforgeError
from chatforge.models.template import encode_prompt, end_of_turn_ids


@dataclass
class SamplingParams:
    max_tokens: int = 256  # most new tokens
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass
    seed: int | None = None  # makes sampling repeatable
    stop: tuple[str, ...] = ()  # strings that end the answer (not included in it)


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end-of-turn or stop string) or "length" (max_tokens / context)
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)


@dataclass
class Update:
    """What one decode step produced for one sequence: new text, and the Completion once it has finished."""

    index: int
    delta: str
    done: Completion | None = None


class _Sequence:
    """Tracks one sequence's generated ids, its visible text (cut at stop strings) and what was emitted."""

    def __init__(self, engine: "Engine", prompt_len: int, params: SamplingParams):
        self.engine, self.prompt_len, self.params = engine, prompt_len, params
        self.ids: list[int] = []
        self.emitted = 0  # characters of text already handed out
        self.finished: Completion | None = None
        self.generator = None
        if params.seed is not None:
            import torch

            self.generator = torch.Generator(device=engine.device).manual_seed(int(params.seed))

    def push(self, token: int, room: int) -> str:
        """Add one token; return the newly visible text. `room` is the context space left after it."""
        eos = token in self.engine.eot_ids
        if not eos:
            self.ids.append(token)
        text = self.engine.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = _first_stop(text, self.params.stop)
        if cut is not None:
            text = text[:cut]
        reason = None
        if eos or cut is not None:
            reason = "stop"
        elif len(self.ids) >= self.params.max_tokens or room <= 0:
            reason = "length"
        if reason is None:
            safe = len(text) - _holdback(text, self.params.stop)
            while safe > self.emitted and text[safe - 1] == "\ufffd":  # half of a multi-byte character
                safe -= 1
        else:
            safe = len(text)
            self.finished = Completion(text, reason, self.prompt_len, len(self.ids) + int(eos), list(self.ids))
        delta = text[self.emitted:safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return delta


def _first_stop(text: str, stops) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _holdback(text: str, stops) -> int:
    """How many trailing characters could be the start of a stop string (not shown until we know)."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class Engine:
    """Generation for one loaded model. Not thread-safe: use it from one thread (serve has a scheduler)."""

    def __init__(self, loaded, *, max_batch_size: int = 16):
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

    # ---- prompts -------------------------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Messages -> prompt ids (the model's chat template + the assistant header)."""
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
        """Answer many conversations, batched (longest first, so each batch pads little)."""
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
        """Prompt ids -> Completions, in batches of max_batch_size (sorted by length to limit padding)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start:start + self.max_batch_size]
            for updates in self.run([prompts[i] for i in chunk], [params[i] for i in chunk]):
                for u in updates:
                    if u.done:
                        results[chunk[u.index]] = u.done
                        if on_done:
                            on_done(1)
        return results  # type: ignore[return-value]

    # ---- the decode loop -----------------------------------------------------------------------------------
    def run(self, prompts: list[list[int]], params: list[SamplingParams],
            cancelled: Callable[[int], bool] | None = None) -> Iterator[list[Update]]:
        """Decode a batch step by step; after each step yield the Updates of the sequences that changed.

        `cancelled(i)` is polled every step: a cancelled sequence stops (no Completion) and costs nothing more
        once every sequence is done or cancelled.
        """
        import torch

        for ids in prompts:
            self.check_prompt(ids)
        seqs = [_Sequence(self, len(ids), p) for ids, p in zip(prompts, params)]
        active = [True] * len(seqs)
        input_ids, attention = self._left_pad(prompts)  # (B, T) each
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = None
        with torch.inference_mode():
            while True:
                out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
                                 past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache = out.past_key_values
                next_ids = self._sample(out.logits[:, -1, :].float(), seqs, active)  # (B,)
                room = self.context_length - attention.shape[1] - 1
                updates = []
                for i, s in enumerate(seqs):
                    if not active[i]:
                        continue
                    if cancelled is not None and cancelled(i):
                        active[i] = False
                        continue
                    delta = s.push(int(next_ids[i]), room)
                    if delta or s.finished:
                        updates.append(Update(i, delta, s.finished))
                    if s.finished:
                        active[i] = False
                if updates:
                    yield updates
                if not any(active):
                    return
                input_ids = next_ids[:, None]  # (B, 1)
                attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
                position_ids = position_ids[:, -1:] + 1

    def _left_pad(self, prompts: list[list[int]]):
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _sample(self, logits, seqs: list[_Sequence], active: list[bool]):
        """logits (B, V) -> next ids (B,): greedy rows in one argmax, sampled rows one by one (own seed)."""
        import torch

        next_ids = logits.argmax(dim=-1)
        for i, s in enumerate(seqs):
            p = s.params
            if not active[i] or p.temperature <= 0:
                continue
            probs = torch.softmax(logits[i] / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_p, idx = probs.sort(descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < p.top_p  # always keeps the top token
                probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
            next_ids[i] = torch.multinomial(probs, 1, generator=s.generator)[0]
        return next_ids
