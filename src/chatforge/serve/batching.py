"""Continuous batching over a generation Engine: new sequences join the running batch between decode steps.

Engine.run decodes a fixed batch to its end, so a request arriving meanwhile would wait for the whole batch.
A LiveBatch instead keeps one growing and shrinking batch (B rows, T cache columns):

    admit: prefill the new prompts alone (left padded)      -> their KV cache (B_new, H, T_new, D), first tokens
    merge: left-pad both caches' time axes to max(T, T_new)  -> concatenate on the batch axis
    step:  feed every row its last token (B, 1)              -> logits (B, V) -> next tokens (B,)
    drop:  rows that finished or were cancelled (index_select on the batch axis), then the leading columns
           that only padding still uses

Padding columns have attention_mask 0 and every row keeps its own position ids, so each sequence computes
what it would alone. Merging needs the plain DynamicCache layout (per layer `keys`/`values` of shape
(B, H, T, D)), which most decoder models use; with any other cache (sliding windows...) `can_admit` is False
while rows run, and new sequences wait for the batch to empty, i.e. plain dynamic batching.
The sampling and stopping rules are the Engine's own (_Sequence, _left_pad, _sample): nothing is re-implemented.
"""

from __future__ import annotations

from typing import Callable

from chatforge.generation import SamplingParams, Update, _Sequence


def _pad_left(t, width: int, dim: int):
    """Zero-pad tensor `t` on the left of dimension `dim` (-1 or -2) up to `width`."""
    import torch.nn.functional as F

    missing = width - t.shape[dim]
    if missing == 0:
        return t
    return F.pad(t, (missing, 0) if dim == -1 else (0, 0, missing, 0))


class LiveBatch:
    """The running batch of one Engine. Sequences are named by the ids the caller gives at admission."""

    def __init__(self, engine):
        self.engine = engine
        self.ids: list[int] = []  # row -> the caller's id of that sequence
        self.seqs: dict[int, _Sequence] = {}
        self.cache = None  # the model's KV cache for the rows
        self.attention = None  # (B, T): 1 for a real token, 0 for padding
        self.next_ids = None  # (B,): each row's last sampled token, fed at the next step

    @property
    def size(self) -> int:
        return len(self.ids)

    def can_admit(self) -> bool:
        """New rows can join: the batch is empty, or its cache is made of plain DynamicLayers."""
        layers = getattr(self.cache, "layers", None)
        return self.cache is None or (layers is not None and all(type(x).__name__ == "DynamicLayer" for x in layers))

    def admit(self, ids: list[int], prompts: list[list[int]], params: list[SamplingParams],
              cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        """Prefill new sequences, sample their first tokens and join the unfinished ones to the batch."""
        import torch

        engine = self.engine
        for p in prompts:
            engine.check_prompt(p)
        input_ids, attention = engine._left_pad(prompts)  # (B_new, T_new) each
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = engine.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                               use_cache=True, logits_to_keep=1)
        seqs = [_Sequence(engine, len(p), sp) for p, sp in zip(prompts, params)]
        first = engine._sample(out.logits[:, -1, :].float(), seqs, [True] * len(seqs))  # (B_new,)
        self.seqs.update(zip(ids, seqs))
        updates, keep = self._push(ids, first, attention, cancelled)
        if keep:
            cache = out.past_key_values
            if len(keep) < len(ids):
                cache.batch_select_indices(torch.tensor(keep, device=first.device))
            self._merge([ids[k] for k in keep], cache, attention[keep], first[keep])
        return updates

    def step(self, cancelled: Callable[[int], bool] | None = None) -> list[Update]:
        """One decode step for every row; rows that finish (or were cancelled) leave the batch."""
        import torch

        self.attention = torch.cat([self.attention, self.attention.new_ones(self.size, 1)], dim=1)  # (B, T+1)
        positions = self.attention.sum(-1, keepdim=True) - 1  # (B, 1): each row's own next position
        with torch.inference_mode():
            out = self.engine.model(input_ids=self.next_ids[:, None], attention_mask=self.attention,
                                    position_ids=positions, past_key_values=self.cache, use_cache=True,
                                    logits_to_keep=1)
        self.cache = out.past_key_values
        seqs = [self.seqs[i] for i in self.ids]
        self.next_ids = self.engine._sample(out.logits[:, -1, :].float(), seqs, [True] * len(seqs))  # (B,)
        updates, keep = self._push(self.ids, self.next_ids, self.attention, cancelled)
        self._keep(keep)
        return updates

    def clear(self) -> None:
        self.ids, self.seqs, self.cache, self.attention, self.next_ids = [], {}, None, None, None

    # ---- internals -----------------------------------------------------------------------------------------
    def _push(self, ids: list[int], tokens, attention, cancelled) -> tuple[list[Update], list[int]]:
        """Hand each row its sampled token; return the Updates and the rows that go on."""
        updates, keep = [], []
        for row, i in enumerate(ids):
            seq = self.seqs[i]
            if cancelled is not None and cancelled(i):
                del self.seqs[i]
                continue
            room = self.engine.context_length - int(attention[row].sum()) - 1  # positions left after this token
            delta = seq.push(int(tokens[row]), room)
            if delta or seq.finished:
                updates.append(Update(i, delta, seq.finished))
            if seq.finished:
                del self.seqs[i]
            else:
                keep.append(row)
        return updates, keep

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
        if start > 0 and self.can_admit():
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]
            self.attention = self.attention[:, start:]
