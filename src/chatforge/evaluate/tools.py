"""Tool-call metrics for held-out turns of conversations that offer tools (percentages, bootstrap-ready).

Per held-out turn, the model's answer is parsed with the model's own tool format (chatforge.models.tools) and
compared with the reference turn:

    tool_call_accuracy    the right function(s), or rightly no call       (every turn that offers tools)
    tool_arguments_exact  the calls are right with JSON-equal arguments   (turns whose reference calls)
    tool_arguments_f1     F1 over (function, argument key, value) pairs   (turns whose reference calls)

Turns a metric does not apply to have statistics [0, 0], so they count in neither sum (see metrics.ratio).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from chatforge.evaluate import metrics as M


def _names(calls: list[dict]) -> Counter:
    return Counter(c["function"]["name"] for c in calls)


def _canonical(calls: list[dict]) -> Counter:
    return Counter((c["function"]["name"], json.dumps(c["function"]["arguments"], sort_keys=True)) for c in calls)


def _pairs(calls: list[dict]) -> Counter:
    return Counter((c["function"]["name"], k, json.dumps(v, sort_keys=True))
                   for c in calls for k, v in c["function"]["arguments"].items())


def arguments_f1(predicted: list[dict], reference: list[dict]) -> float:
    """F1 of the (function, key, value) argument pairs; calls without arguments count by name."""
    pred, ref = _pairs(predicted), _pairs(reference)
    if not ref and not pred:
        return float(_names(predicted) == _names(reference))
    same = sum((pred & ref).values())
    if not same:
        return 0.0
    precision, recall = same / sum(pred.values()), same / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def tool_metrics(predicted: list[list[dict]], references: list[list[dict]], offered: list[bool]) -> dict:
    """name -> (per-turn stats (N, 2), aggregate) for the three tool-call metrics."""
    acc, exact, f1 = [], [], []
    for pred, ref, has_tools in zip(predicted, references, offered):
        acc.append([float(_names(pred) == _names(ref)), 1.0] if has_tools else [0.0, 0.0])
        if ref:
            exact.append([float(_canonical(pred) == _canonical(ref)), 1.0])
            f1.append([arguments_f1(pred, ref), 1.0])
        else:
            exact.append([0.0, 0.0])
            f1.append([0.0, 0.0])
    pct = M.ratio(100.0)
    as_stats = lambda rows: np.asarray(rows, dtype=np.float64).reshape(len(rows), 2)  # noqa: E731
    return {"tool_call_accuracy": (as_stats(acc), pct), "tool_arguments_exact": (as_stats(exact), pct),
            "tool_arguments_f1": (as_stats(f1), pct)}


def reference_text(content: str, calls: list[dict], fmt) -> str:
    """A reference turn as the model should write it (for the text metrics): its content, then its calls in
    the model's tool format."""
    texts = [fmt.head + json.dumps({fmt.name_key: c["function"]["name"], fmt.args_key: c["function"]["arguments"]},
                                   ensure_ascii=False) + (f"\n{fmt.close}" if fmt.close else "") for c in calls]
    return "\n".join(([content] if content else []) + texts)
