"""Dataset statistics (in tokens, never bytes), the automatic epoch count, and a measured time estimate."""

from __future__ import annotations

import math
import time
from collections import Counter

# a system prompt is the run's default one when it is on more than half of the conversations and on >= 80 % of those
# that have one: several prompts in use (one per department, per product...) are chosen per request, and giving the
# most common one to every request without a prompt would answer the others' questions in its voice
DOMINANT_SHARE = 0.5
DOMINANT_AMONG = 0.8


ANSWER_TOKEN_PASSES = 250_000  # trained (answer) tokens a run needs to see at most; see auto_epochs


def auto_epochs(n_examples: int, trained_tokens: int = 0) -> int:
    """OpenAI's rule: 3 epochs, more for small sets (aim at >= 3000 example passes, at most 25 epochs),
    fewer for large ones (at most ~25000 example passes). Then, given `trained_tokens` (the answer tokens of one
    epoch): no more epochs than it takes to train on about ANSWER_TOKEN_PASSES answer tokens. The example rule
    assumes short chats; with long answers 3000 example passes are many more tokens than a small set needs (540
    MedQuAD pairs of ~140 answer tokens: 3 epochs at LoRA's default lr reached a lower held-out loss than the
    example rule's 6, in half the steps; bench/train_quality.py, README "Training at real lengths"). Short chats
    are not affected (the bundled 383 examples, 11k answer tokens an epoch, keep their 8)."""
    n = max(1, n_examples)
    if n * 3 < 3000:
        epochs = min(25, max(1, math.ceil(3000 / n)))
    elif n * 3 > 25000:
        epochs = max(1, 25000 // n)
    else:
        epochs = 3
    if trained_tokens > 0:
        epochs = min(epochs, max(1, round(ANSWER_TOKEN_PASSES / trained_tokens)))
    return epochs


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def histogram(lengths: list[int], bins: int = 8, width: int = 30) -> list[str]:
    """A small text histogram of lengths: one line per bin, 'lo-hi | ##### count'."""
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    step = max(1, math.ceil((hi - lo + 1) / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(bins - 1, (n - lo) // step)] += 1
    top = max(counts)
    return [f"{lo + i * step:>6}-{min(hi, lo + (i + 1) * step - 1):<6}| "
            f"{'#' * max(c > 0, round(width * c / top)):<{width}} {c}"
            for i, c in enumerate(counts) if lo + i * step <= hi]


def dataset_stats(prepared, max_length: int | None = None) -> dict:
    """examples, turns, tokens (total/trained), length percentiles + histogram, packing and epochs."""
    from chatforge.data.pack import pack, padding_share

    examples = prepared.examples
    lengths = sorted(len(e) for e in examples)
    max_length = max_length or getattr(prepared, "max_length", None) or (lengths[-1] if lengths else 1)
    rows = pack(examples, max_length) if examples else []
    trained = sum(e.trained for e in examples)  # a pass over every label: once
    stats = {
        "kind": prepared.kind,
        "examples": len(examples),
        "turns": sum(sum(m["role"] == "assistant" for m in r) for r in prepared.records)
        if prepared.kind == "chat" else 0,
        "tokens_total": sum(lengths),
        "tokens_trained": trained,
        "length": {"min": lengths[0] if lengths else 0, "p50": percentile(lengths, 50),
                   "p90": percentile(lengths, 90), "p99": percentile(lengths, 99),
                   "max": lengths[-1] if lengths else 0},
        "histogram": histogram(lengths),
        "max_length": max_length,
        "packed_rows": len(rows),
        "padding_share": round(padding_share(rows, max_length), 4),
        "auto_epochs": auto_epochs(len(examples), trained),
        "dropped": dict(prepared.dropped),
        **_characters(prepared),
    }
    if prepared.kind == "chat":
        stats["system_prompts"] = system_prompt_stats(prepared.records)
    return stats


def _characters(prepared) -> dict:
    """Lengths in characters (Unicode code points, so one Chinese character counts 1, never its 3 UTF-8
    bytes), and tokens per character: how well the tokenizer fits the language (chat: the tokens of the
    messages' text alone where analyse counted them, not the chat template's own tokens)."""
    if prepared.kind == "chat":
        chars = sum(len(m["content"]) for r in prepared.records for m in r)
        answers = [len(m["content"]) for r in prepared.records for m in r if m["role"] == "assistant"]
    else:
        chars, answers = sum(len(t) for t in prepared.records), []
    tokens = getattr(prepared, "content_tokens", None)
    if tokens is None:
        tokens = sum(len(e) for e in prepared.examples)
    return {"characters": chars, "answer_characters": {"mean": round(sum(answers) / len(answers), 1) if answers
                                                       else 0, "max": max(answers, default=0)},
            "tokens_per_character": round(tokens / chars, 3) if chars else 0.0}


def system_prompt_stats(records: list[list[dict]], top: int = 5) -> dict:
    """How the conversations' system prompts are distributed, and the dominant one (or None).

    {"conversations": N, "without": conversations with no system message, "distinct": K,
     "top": [{"text", "count"}, ...] (most common first),
     "dominant": the text on more than half of them and on >= 80 % of those that have one}
    A model trained on one prompt answers as trained when asked with it: the run records the dominant prompt
    and every way of using the run applies it when a request has none.
    """
    counts = Counter(next((m["content"] for m in r if m["role"] == "system"), None) for r in records)
    without = counts.pop(None, 0)
    ranked = counts.most_common()
    n = len(records)
    top_count = ranked[0][1] if ranked else 0
    majority = top_count > DOMINANT_SHARE * n and top_count >= DOMINANT_AMONG * (n - without)
    dominant = ranked[0][0] if majority else None
    return {"conversations": n, "without": without, "distinct": len(ranked),
            "top": [{"text": t, "count": c} for t, c in ranked[:top]], "dominant": dominant}


def estimate_epoch_seconds(model, stats: dict, *, seq_len: int = 256, budget_s: float = 4.0, rows: int = 1,
                           step=None, epoch_tokens: int | None = None) -> dict:
    """Time one epoch on this machine: real training steps of `model` on random (rows, seq_len) tokens, measured
    (measure_step), then scaled to the tokens of one packed epoch (padding included; `epoch_tokens`, default the
    packed rows of `stats`)."""
    figures = measure_step(model, seq_len=max(16, min(seq_len, stats["max_length"])), budget_s=budget_s, rows=rows,
                           step=step)
    return dict(figures, **epoch_seconds(figures["tokens_per_second"],
                                         epoch_tokens or stats["packed_rows"] * stats["max_length"]))


def epoch_seconds(tokens_per_second: float, epoch_tokens: int) -> dict:
    return {"epoch_seconds": round(epoch_tokens / tokens_per_second, 3), "epoch_tokens": epoch_tokens}


def measure_step(model, *, seq_len: int, budget_s: float = 4.0, rows: int = 1, step=None) -> dict:
    """Tokens/s of real training steps of `model` on random (rows, seq_len) tokens. A warm-up step comes first
    (kernel selection, allocator). `step(model, ids)` is the training step to time (default: a plain forward +
    backward with the model's own loss; `chatforge check` passes chatforge.train.speed.DefaultStep, the default
    recipe)."""
    import torch

    vocab = model.get_input_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    start, steps, measured = time.perf_counter(), 0, 0.0
    ids = torch.randint(0, vocab, (rows, seq_len), device=device)
    try:
        if step is None:
            step = _train_step
            _train_step(model, torch.randint(0, vocab, (1, 16), device=device))  # warm-up, not measured
        else:
            step(model, ids)  # warm-up at the real shape (the allocator's buffers), not measured
        while steps < 3 and (steps == 0 or measured < budget_s):
            t0 = time.perf_counter()
            step(model, ids)
            measured += time.perf_counter() - t0
            steps += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {"tokens_per_second": round(rows * seq_len * steps / measured, 1), "benchmark_tokens": rows * seq_len,
            "benchmark_steps": steps, "benchmark_seconds": round(time.perf_counter() - start, 2)}


def _train_step(model, ids) -> None:
    """One forward + backward pass (B=1, T) with the causal-LM loss; no optimizer step."""
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
