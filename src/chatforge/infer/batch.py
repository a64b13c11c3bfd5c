"""The step-level batch: the one decode loop chat, generate, eval, serve and the arena share.

A Batch is a running set of sequences (B rows) over one KV cache (T columns). The caller decides when:

    admit(ids, prompts, params)  prefill the new prompts (reusing cached prefixes), sample their first tokens,
                                 and join the unfinished ones to the running rows
    step()                       feed every row its last token (B, 1) -> logits (B, V) -> next tokens (B,)
    evict(ids)                   drop rows (a client went away); finished rows leave by themselves
    each call returns the Updates (new text, the Completion once done) of the rows that changed; a row whose own
    sampling or text fails leaves with an Update carrying the error (the model's forward failing is everyone's:
    it raises).

Engine.generate admits a whole batch and steps until it is empty; serve's scheduler admits requests between
steps as they arrive (continuous batching).

Layout: rows are left padded, and padding may also sit between a reused prefix and the rest of a prompt:

    row 0:  [pad pad p p p p p | a a a]         attention_mask 0 on padding; every row has its own
    row 1:  [p p p p p p p p p | a a a]         position ids (its count of real tokens so far), so each
    row 2:  [pad c c c pad p p | a a a]         sequence computes what it would alone (c: cached prefix)

Joining rows pads both caches' time axes to the same width and concatenates them on the batch axis; leaving
rows are index_select-ed out, then leading columns no row uses are dropped. Merging and prefix reuse need the
plain DynamicCache layout (per layer `keys`/`values` of shape (B, H, T, D)), which most decoder models use,
and which Engine.new_cache also gives models with sliding-window layers (Gemma 3); with any other cache
`can_admit` is False while rows run (new sequences wait for the batch to empty: plain dynamic batching) and
no prefix is reused.
"""

from __future__ import annotations

from typing import Callable

from chatforge.infer.sampling import SamplingParams, sample
from chatforge.infer.sequence import Sequence, Update


def _pad_left(t, width: int, dim: int):
    """Zero-pad tensor `t` on the left of dimension `dim` (-1 or -2) up to `width`."""
    import torch.nn.functional as F

    missing = width - t.shape[dim]
    if missing == 0:
        return t
    return F.pad(t, (missing, 0) if dim == -1 else (0, 0, missing, 0))


def is_plain_cache(cache) -> bool:
    """The cache is made of DynamicLayers (per layer `keys`/`values` (B, H, T, D)): rows can be merged and trimmed."""
    layers = getattr(cache, "layers", None)
    return layers is not None and all(type(x).__name__ == "DynamicLayer" for x in layers)


class AdmitFailed(Exception):
    """`admit` failed before it changed the batch: the running sequences go on; `cause` is the error."""

    def __init__(self, cause: Exception):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class Batch:
    """The running batch of one Engine. Sequences are named by the ids the caller gives at admission."""

    def __init__(self, engine):
        from chatforge.threads import Follow

        self.engine = engine
        # torch's thread count follows the machine's load; polled by step(), in the thread that runs the model
        # (torch's OpenMP count is per calling thread). Not with a compiled decode step: the thread count is one of
        # torch.compile's global guards, so a change would recompile the graph (tens of seconds, mid-answer).
        self.follow = Follow(enabled=not engine.compile)
        self.ids: list[int] = []  # row -> the caller's id of that sequence
        self.seqs: dict[int, Sequence] = {}
        self.cache = None  # the model's KV cache for the rows
        self.attention = None  # (B, T): 1 for a real token, 0 for padding
        self.next_ids = None  # (B,): each row's last sampled token, fed at the next step

    @property
    def size(self) -> int:
        return len(self.ids)

    def can_admit(self) -> bool:
        """New rows can join: the batch is empty, or its cache is made of plain DynamicLayers."""
        return self.cache is None or is_plain_cache(self.cache)

    def admit(self, ids: list[int], prompts: list[list[int]], params: list[SamplingParams],
              cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        """Prefill new sequences, sample their first tokens and join the unfinished ones to the batch."""
        import torch

        # Every tensor of the batch (cache, mask, ids) is made in inference mode, so the compiled decode step
        # always sees the same kind of tensor (an ordinary one would be a second graph: a recompile).
        with torch.inference_mode():
            return self._admit(ids, prompts, params, cancelled)

    def step(self, cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        """One decode step for every row; rows that finish (or were cancelled) leave the batch."""
        import torch

        with torch.inference_mode():
            return self._step(cancelled)

    def evict(self, ids) -> None:
        """Drop these sequences now (no Completion); unknown ids are ignored."""
        import torch

        with torch.inference_mode():
            self._evict(ids)

    def clear(self) -> None:
        self.ids, self.seqs, self.cache, self.attention, self.next_ids = [], {}, None, None, None

    # ---- internals -----------------------------------------------------------------------------------------
    def _admit(self, ids, prompts, params, cancelled) -> list[Update]:
        import torch

        engine = self.engine
        try:  # up to _merge the running rows are untouched: a failure here is the new sequences' alone
            for p in prompts:
                engine.check_prompt(p)
            reuse = [engine.prefix_cache.lookup(p) if engine.prefix_cache is not None and self.can_admit()
                     else (0, []) for p in prompts]
            cache, attention, logits = self._prefill(prompts, reuse)  # attention (B_new, T_new), logits (B_new, V)
            seqs = [engine.new_sequence(p, sp, cached=n) for p, sp, (n, _) in zip(prompts, params, reuse)]
            failed: dict[int, Exception] = {}
            first = sample(logits, [s.sampler for s in seqs], failed)  # (B_new,)
            self.seqs.update(zip(ids, seqs))
            updates, keep = self._push(ids, first, attention, cancelled, cache, failed)
        except Exception as e:
            for i in ids:
                self.seqs.pop(i, None)
            raise AdmitFailed(e) from e
        if keep:
            if len(keep) < len(ids):
                cache.batch_select_indices(torch.tensor(keep, device=first.device))
            self._merge([ids[k] for k in keep], cache, attention[keep], first[keep])
        return updates

    def _step(self, cancelled) -> list[Update]:
        import torch

        if not self.size:
            return []
        self.attention = torch.cat([self.attention, self.attention.new_ones(self.size, 1)], dim=1)  # (B, T+1)
        positions = self.attention.sum(-1, keepdim=True) - 1  # (B, 1): each row's own next position
        logits, self.cache = self.engine.forward(self.next_ids[:, None], self.attention, positions, self.cache)
        failed: dict[int, Exception] = {}  # row -> why its sampling failed (that row alone ends)
        self.next_ids = sample(logits, [self.seqs[i].sampler for i in self.ids], failed)  # (B,)
        updates, keep = self._push(self.ids, self.next_ids, self.attention, cancelled, self.cache, failed)
        self._keep(keep)
        self.follow.poll()
        return updates

    def _evict(self, ids) -> None:
        gone = set(ids)
        for i in gone:
            self.seqs.pop(i, None)
        self._keep([r for r, i in enumerate(self.ids) if i not in gone])

    def _prefill(self, prompts: list[list[int]], reuse: list[tuple[int, list]]):
        """Run the prompts (minus their reused prefixes) -> (cache, attention (B, T), last logits (B, V))."""
        import torch

        engine = self.engine
        device = engine.device
        width = max(n for n, _ in reuse)  # the reused part, left padded to the longest
        rest = [p[n:] for p, (n, _) in zip(prompts, reuse)]
        span = max(len(r) for r in rest)
        B = len(prompts)
        input_ids = torch.full((B, span), engine.pad_id, dtype=torch.long)
        attention = torch.zeros((B, width + span), dtype=torch.long)
        positions = torch.zeros((B, span), dtype=torch.long)
        for i, (r, (n, _)) in enumerate(zip(rest, reuse)):
            input_ids[i, span - len(r):] = torch.tensor(r, dtype=torch.long)
            attention[i, width - n:width] = 1
            attention[i, width + span - len(r):] = 1
            positions[i, span - len(r):] = torch.arange(n, n + len(r))
        input_ids, attention, positions = input_ids.to(device), attention.to(device), positions.to(device)
        cache = engine.new_cache()
        if width:
            from transformers import DynamicCache

            layers = []
            for layer in range(len(next(entry for n, entry in reuse if n))):
                k0, v0 = next(entry[layer] for n, entry in reuse if n)
                keys = k0.new_zeros((B, k0.shape[0], width, k0.shape[-1]))
                values = v0.new_zeros((B, v0.shape[0], width, v0.shape[-1]))
                for i, (n, entry) in enumerate(reuse):
                    if n:
                        keys[i, :, width - n:], values[i, :, width - n:] = entry[layer]
                layers.append((keys, values))
            cache = DynamicCache(layers)
        logits, cache = engine.forward(input_ids, attention, positions, cache)
        return cache, attention, logits

    def _push(self, ids: list[int], tokens, attention, cancelled, cache,
              failed: dict[int, Exception]) -> tuple[list[Update], list[int]]:
        """Hand each row its sampled token; return the Updates and the rows that go on. A row whose sampling
        (`failed`) or text fails leaves with its error; the others are not affected by it."""
        updates, keep = [], []
        lengths = attention.sum(-1).tolist()  # real tokens of each row (in the cache)
        for row, i in enumerate(ids):
            seq = self.seqs[i]
            if cancelled is not None and cancelled(i):
                del self.seqs[i]
                continue
            room = self.engine.context_length - int(lengths[row]) - 1  # positions left after this token
            try:
                if row in failed:
                    raise failed[row]
                delta = seq.push(int(tokens[row]), room)
            except Exception as e:
                updates.append(Update(i, "", error=e))
                del self.seqs[i]
                continue
            if delta or seq.finished:
                updates.append(Update(i, delta, seq.finished))
            if seq.finished:
                self._remember(seq, cache, attention[row], row)
                del self.seqs[i]
            else:
                keep.append(row)
        return updates, keep

    def _remember(self, seq: Sequence, cache, mask, row: int) -> None:
        """Put a finished sequence's keys/values into the prefix cache (for the next turn of its conversation)."""
        prefix = self.engine.prefix_cache
        if prefix is None or cache is None or not is_plain_cache(cache):
            return
        cols = mask.nonzero().squeeze(-1)  # (n,): the row's real columns
        tokens = (seq.prompt + seq.ids)[:cols.numel()]
        if len(tokens) < prefix.min_tokens:
            return
        prefix.insert(tokens, [(layer.keys[row][:, cols], layer.values[row][:, cols]) for layer in cache.layers])

    def _merge(self, ids: list[int], cache, attention, next_ids) -> None:
        import torch

        if self.cache is None:
            self.ids, self.cache, self.attention, self.next_ids = list(ids), cache, attention, next_ids
            return
        width = max(self.attention.shape[1], attention.shape[1])
        for mine, new in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width, -2), _pad_left(new.keys, width, -2)])
            mine.values = torch.cat([_pad_left(mine.values, width, -2), _pad_left(new.values, width, -2)])
        self.attention = torch.cat([_pad_left(self.attention, width, -1), _pad_left(attention, width, -1)])
        self.next_ids = torch.cat([self.next_ids, next_ids])
        self.ids += ids

    def _keep(self, rows: list[int]) -> None:
        """Keep only `rows`, then trim the leading cache columns that no remaining row uses."""
        import torch

        if len(rows) == self.size:
            return
        if not rows:
            self.clear()
            return
        index = torch.tensor(rows, device=self.next_ids.device)
        self.cache.batch_select_indices(index)
        self.ids = [self.ids[r] for r in rows]
        self.attention, self.next_ids = self.attention[index], self.next_ids[index]
        start = int(self.attention.any(dim=0).long().argmax())  # the first column some row still uses
        if start > 0 and is_plain_cache(self.cache):
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]
            self.attention = self.attention[:, start:]
