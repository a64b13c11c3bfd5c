"""Teacher-forced likelihood of the reference answers: perplexity and token accuracy, on answer tokens only.

Each conversation is encoded with `chatforge.data.encode.encode_chat`, the function that makes training
labels, so exactly the tokens training learns (the reference answer and the end-of-turn token that closes
it) are scored. Earlier assistant turns get "weight": 0 so only the reference answer is scored.

    input_ids (B, T) -> logits (B, T, V); position t predicts labels[t + 1]
    nll[b]     = sum over answer positions of -log p(label | prefix)
    correct[b] = answer positions where argmax(logits) == label
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def reference_only(messages: list[dict]) -> list[dict]:
    """Messages ending with the reference answer, with every earlier assistant turn untrained (weight 0)."""
    from chatforge.data.toolcalls import Chat, tools_of

    last = len(messages) - 1
    return Chat([dict(m, weight=0) if m["role"] == "assistant" and i != last else dict(m)
                 for i, m in enumerate(messages)], tools_of(messages))


def answer_likelihood(model, tokenizer, conversations: list[list[dict]], *, batch_size: int = 8,
                      max_length: int | None = None, on_done: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, 3) array of [nll_sum, correct_tokens, answer_tokens] per conversation (its last message is the
    reference answer). A conversation longer than max_length is cut at the end (`overlong="truncate"`)."""
    from chatforge.data.encode import encode_chat

    encoded = [encode_chat(tokenizer, reference_only(m), max_length=max_length, overlong="truncate")
               for m in conversations]
    out = np.zeros((len(encoded), 3))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted((i for i, e in enumerate(encoded) if e is not None), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        out[chunk] = _score_batch(model, [encoded[i] for i in chunk], pad_id)
        if on_done:
            on_done(len(chunk))
    return out


def _score_batch(model, rows, pad_id: int) -> np.ndarray:
    """One right-padded batch -> (B, 3) [nll_sum, correct, count]."""
    import torch
    import torch.nn.functional as F

    from chatforge.data.pack import collate

    batch = collate(rows, pad_id)
    labels = batch.pop("labels")[:, 1:]  # (B, T-1): the token each position must predict
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits[:, :-1].float()  # (B, T-1, V)
    labels = labels.to(device)
    mask = labels != -100
    targets = labels.clamp(min=0)
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T-1)
    correct = (logits.argmax(-1) == targets) & mask
    stats = torch.stack([(nll * mask).sum(1), correct.sum(1).float(), mask.sum(1).float()], dim=1)
    return stats.double().cpu().numpy()
