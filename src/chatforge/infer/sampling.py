"""Sampling, defined once for every caller (chat, generate, eval, serve, arena): the settings of one sequence
(SamplingParams) and the one function that turns a batch's logits into next tokens (`sample`).

Per sequence, in this order (as vLLM does):

    logits (V,) --repetition penalty (prompt + answer tokens) --frequency / presence penalties (answer tokens)
               --greedy: argmax                                                                      -> token
               --temperature -> top-k -> top-p -> min-p -> softmax -> multinomial(own seeded generator) -> token

Rows with no penalty and temperature 0 (eval, the default) are picked in one argmax over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.errors import ChatforgeError


@dataclass
class SamplingParams:
    max_tokens: int = 256  # most new tokens
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens with this much probability
    top_k: int = 0  # keep the k likeliest tokens; 0 = all
    min_p: float = 0.0  # drop tokens less likely than min_p x the likeliest one; 0 = off
    repetition_penalty: float = 1.0  # > 1 makes every token of the prompt and answer less likely (CTRL / HF style)
    frequency_penalty: float = 0.0  # OpenAI: logit -= f x (times the token is in the answer so far)
    presence_penalty: float = 0.0  # OpenAI: logit -= p if the token is in the answer so far
    seed: int | None = None  # makes sampling repeatable
    stop: tuple[str, ...] = ()  # strings that end the answer (not included in it)

    def __post_init__(self):
        self.stop = tuple(self.stop)
        problems = []
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            problems.append(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            problems.append(f"stop strings must be non-empty text (an empty one would end every answer before it "
                            f"starts), got {list(self.stop)!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                problems.append(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        if problems:
            raise ChatforgeError("; ".join(problems))

    @property
    def penalized(self) -> bool:
        return self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0

    @property
    def plain_greedy(self) -> bool:
        return self.temperature <= 0 and not self.penalized


class SamplerState:
    """What sampling needs to remember about one sequence: its generator and (with penalties) token counts.
    vocab=0: an engine that samples by itself (llama.cpp) keeps nothing here."""

    def __init__(self, params: SamplingParams, prompt: list[int], vocab: int, device):
        import torch

        self.params = params
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(int(params.seed) % 2**64)
        self.seen = self.counts = None
        if params.repetition_penalty != 1.0 and vocab > 0:  # (V,) bool: every token of the prompt and answer
            self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.seen[torch.tensor(prompt, dtype=torch.long, device=device).clamp(max=vocab - 1)] = True
        if (params.frequency_penalty or params.presence_penalty) and vocab > 0:  # (V,) answer token counts
            self.counts = torch.zeros(vocab, dtype=torch.float32, device=device)

    def add(self, token: int) -> None:
        if self.seen is not None and token < self.seen.shape[0]:
            self.seen[token] = True
        if self.counts is not None and token < self.counts.shape[0]:
            self.counts[token] += 1


def sample(logits, states: list[SamplerState], failed: dict[int, Exception] | None = None):
    """logits (B, V) float32 -> next ids (B,) long, one row per state. With `failed`, a row whose sampling raises
    (its settings, or NaN logits of its own) is recorded there (row -> error) instead of failing every row; its
    id is then meaningless."""
    next_ids = logits.argmax(dim=-1)
    for i, st in enumerate(states):
        if st.params.plain_greedy:
            continue
        try:
            next_ids[i] = _sample_row(logits[i], st)
        except Exception as e:
            if failed is None:
                raise
            failed[i] = e
    return next_ids


def _sample_row(row, st: SamplerState):
    """(V,) logits -> the next id (a 0-d tensor) of one sequence that is not plain greedy."""
    import torch

    p = st.params
    row = _penalize(row, st) if p.penalized else row
    if p.temperature <= 0:
        return row.argmax()
    row = row / p.temperature
    if p.top_k and p.top_k < row.shape[0]:
        kth = torch.topk(row, p.top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = torch.softmax(row, dim=-1)
    if p.top_p < 1.0:
        sorted_p, idx = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < p.top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
    if p.min_p > 0:
        probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
    return torch.multinomial(probs, 1, generator=st.generator)[0]


def _penalize(row, st: SamplerState):
    """(V,) logits with the sequence's repetition / frequency / presence penalties applied (a new tensor)."""
    import torch

    p = st.params
    row = row.clone()
    if st.seen is not None:  # positive logits are divided, negative ones multiplied: both less likely
        r = p.repetition_penalty
        row = torch.where(st.seen, torch.where(row > 0, row / r, row * r), row)
    if st.counts is not None:
        row -= p.frequency_penalty * st.counts + p.presence_penalty * (st.counts > 0).float()
    return row
