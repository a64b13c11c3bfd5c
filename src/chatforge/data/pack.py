"""Packing short examples into fixed-length rows, and collating rows into a batch the model accepts.

A packed row is several examples end to end, each with position ids restarting at 0:

    input_ids    [a0 a1 a2 b0 b1 c0 c1 c2 c3]
    position_ids [ 0  1  2  0  1  0  1  2  3]

transformers 5 (masking_utils.find_packed_sequence_indices) turns such position ids into a block-diagonal
causal mask whenever no attention_mask is passed, for sdpa and eager attention on CPU and GPU alike. So
`collate` passes position_ids and NO attention_mask: padding at the end of a row is one more "example"
(positions restart at 0) that nothing real attends to, and its labels are IGNORE.
"""

from __future__ import annotations

import bisect

from chatforge.data.encode import IGNORE, Encoded


def pack(examples: list[Encoded], max_length: int) -> list[Encoded]:
    """Best-fit decreasing: longest example first, each into the fullest row that still has room for it."""
    too_long = [len(e) for e in examples if len(e) > max_length]
    if too_long:
        raise ValueError(f"{len(too_long)} examples are longer than max_length={max_length} (longest "
                         f"{max(too_long)}); encode them with a max_length first")
    rows: list[list[Encoded]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, row index): bisect finds the tightest fit
    for e in sorted(examples, key=len, reverse=True):
        i = bisect.bisect_left(free, (len(e), -1))
        if i < len(free):
            space, r = free.pop(i)
            rows[r].append(e)
        else:
            space, r = max_length, len(rows)
            rows.append([e])
        bisect.insort(free, (space - len(e), r))
    return [_join(row) for row in rows]


def _join(row: list[Encoded]) -> Encoded:
    ids, labels, pos = [], [], []
    for e in row:
        ids += e.input_ids
        # The first token of an example has no predecessor in it: its label must not become the target of the
        # previous example's last token (the model shifts labels left by one across the whole row).
        labels += [IGNORE] + e.labels[1:]
        pos += list(range(len(e)))
    return Encoded(ids, labels, pos)


def collate(rows: list[Encoded], pad_id: int, length: int = 0) -> dict:
    """Rows -> {"input_ids", "labels", "position_ids"}, each (B, T) int64, right-padded to the longest row
    (or to `length`, when that is longer: fixed shapes for compiled models).

    No attention_mask on purpose: with position_ids alone, transformers builds the block-diagonal causal mask
    (see the module docstring), which also keeps padding out of every real token's attention.
    """
    import torch

    width = max(length, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r)
        ids[b, :n] = torch.tensor(r.input_ids)
        labels[b, :n] = torch.tensor(r.labels)
        pos[b, :n] = torch.tensor(r.position_ids if r.position_ids is not None else range(n))
        pos[b, n:] = torch.arange(width - n)  # padding: its own block, restarting at 0
    return {"input_ids": ids, "labels": labels, "position_ids": pos}


def padding_share(rows: list[Encoded], max_length: int) -> float:
    """Share of the max_length * len(rows) slots that are padding (0 = perfectly packed)."""
    if not rows:
        return 0.0
    return 1.0 - sum(len(r) for r in rows) / (max_length * len(rows))
