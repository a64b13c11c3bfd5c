"""The prefix cache: keys/values of recent sequences, so that a prompt sharing a beginning with one of them
(the same system prompt, the conversation so far in a follow-up turn) computes only what is new.

An entry is one sequence's tokens and, per layer, their keys and values (H, T, D) with no padding. A lookup
returns the entry with the longest common prefix (at least `min_tokens`, and never the whole prompt: the last
prompt token is always fed, for its logits). Least recently used entries go first once more than
`max_tokens` tokens are stored in all.
"""

from __future__ import annotations

import os
from collections import OrderedDict


class PrefixCache:
    def __init__(self, max_tokens: int = 8192, min_tokens: int = 16):
        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self._entries: OrderedDict[int, tuple[tuple[int, ...], list]] = OrderedDict()  # key -> (tokens, [(k, v)])
        self._next = 0
        self.stored = 0  # tokens held
        self.hits = self.reused_tokens = 0

    def lookup(self, prompt: list[int]) -> tuple[int, list]:
        """(n, [(k, v) per layer, each (H, n, D)]) of the longest usable cached prefix; (0, []) when none."""
        best_key, best = None, 0
        limit = len(prompt) - 1
        for key, (tokens, _) in self._entries.items():
            n = len(os.path.commonprefix([tokens[:limit], tuple(prompt[:limit])]))
            if n > best:
                best_key, best = key, n
        if best_key is None or best < self.min_tokens:
            return 0, []
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return best, [(k[:, :best], v[:, :best]) for k, v in self._entries[best_key][1]]

    def insert(self, tokens: list[int], layers: list) -> None:
        """Store a sequence's keys/values ([(k, v)] per layer, (H, T, D) each, T = len(tokens))."""
        if len(tokens) < self.min_tokens or len(tokens) > self.max_tokens:
            return
        tokens = tuple(tokens)
        for key, (old, _) in list(self._entries.items()):  # an entry this one extends is now redundant
            if tokens[:len(old)] == old:
                self._drop(key)
            elif old[:len(tokens)] == tokens:
                self._entries.move_to_end(key)
                return
        self._entries[self._next] = (tokens, layers)
        self._next += 1
        self.stored += len(tokens)
        while self.stored > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.stored = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: int) -> None:
        tokens, _ = self._entries.pop(key)
        self.stored -= len(tokens)
