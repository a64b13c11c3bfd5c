"""One sequence being generated: its tokens, its visible text, when it ends; and what it hands out (Update,
Completion)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatforge.infer.sampling import SamplerState, SamplingParams
from chatforge.infer.text import IncrementalDetokenizer, StopFilter


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end-of-turn or stop string) or "length" (max_tokens / context)
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0  # prompt tokens whose keys/values came from the prefix cache (not recomputed)
    stop: str | None = None  # the stop string that ended the answer (None: end of turn, max_tokens or context)


@dataclass
class Update:
    """What one decode step produced for one sequence: new text, and the Completion once it has finished; or the
    error that ended it alone (its sampling or its text failed; the other rows of the batch go on)."""

    index: int
    delta: str
    done: Completion | None = None
    error: Exception | None = None


class Sequence:
    """Generated ids, streamed text (cut at stop strings), and the finish decision of one sequence."""

    def __init__(self, prompt: list[int], params: SamplingParams, tokenizer, eot_ids: set[int], vocab: int,
                 device, cached: int = 0):
        self.prompt, self.params, self.eot_ids, self.cached = prompt, params, eot_ids, cached
        self.ids: list[int] = []
        self.sampler = SamplerState(params, prompt, vocab, device)
        self.detok = IncrementalDetokenizer(tokenizer)
        self.stops = StopFilter(params.stop)
        self.pieces: list[str] = []  # the visible text, as handed out
        self.finished: Completion | None = None

    def push(self, token: int, room: int) -> str:
        """Add one sampled token; return the newly visible text. `room`: context positions left after it."""
        eos = token in self.eot_ids
        delta = ""
        if not eos:
            self.ids.append(token)
            self.sampler.add(token)
            delta = self.stops.feed(self.detok.push(token))
        reason = None
        if eos or self.stops.stopped:
            reason = "stop"
        elif len(self.ids) >= self.params.max_tokens or room <= 0:
            reason = "length"
        if reason is not None:
            if not self.stops.stopped:  # the held-back tail is part of the answer after all
                delta += self.stops.feed(self.detok.flush())
                delta += "" if self.stops.stopped else self.stops.flush()
                reason = "stop" if self.stops.stopped else reason
            self.pieces.append(delta)
            self.finished = Completion("".join(self.pieces), reason, len(self.prompt), len(self.ids) + int(eos),
                                       list(self.ids), self.cached, self.stops.matched)
            return delta
        self.pieces.append(delta)
        return delta
