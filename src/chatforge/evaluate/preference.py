"""`chatforge eval MODEL --data PAIRS`: does the model prefer the chosen answers? For the model and its base.

For every held-out pair both answers are scored under each model with teacher forcing, on exactly the tokens
training scores (the answer and its end-of-turn token; `likelihood.answer_likelihood`):

    logp_per_token(answer) = -(summed NLL of the answer's tokens) / (its token count)
    correct_i = logp_per_token(chosen_i) > logp_per_token(rejected_i)          preference accuracy = mean
    margin_i  = logp_per_token(chosen_i) - logp_per_token(rejected_i)          mean log-prob margin

Per token, so a longer answer is not penalised for being longer. Each figure gets a 95% percentile bootstrap
interval, and the model - base delta a paired one (the same resampled pairs for both). The report lists the
pairs each model gets wrong. Writes metrics.json, report.md and report.html to the report directory.
"""

from __future__ import annotations

import dataclasses
import gc
import html
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from chatforge.config import check_values, to_dict
from chatforge.errors import ChatforgeError
from chatforge.events import Event, Progress, quiet
from chatforge.evaluate import metrics as M
from chatforge.evaluate.config import EvalConfig

METRICS = [("preference_accuracy", "Preference accuracy (%)"), ("logprob_margin", "Mean log-prob margin (per token)")]
SHOWN_WRONG = 20  # pairs listed per model in report.md / report.html (metrics.json lists all)


def pair_scores(spec: str, records, cfg: EvalConfig, label: str, emit=quiet) -> np.ndarray:
    """(N, 2) per-token log-prob of [chosen, rejected] of each pair under one model."""
    from chatforge.models.load import load_model, set_threads

    set_threads()
    emit(Event("eval", "message", message=f"scoring {len(records)} pairs under the {label} model {spec}"))
    loaded = load_model(spec, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                        quantize=cfg.quantize)
    for note in loaded.notes:
        emit(Event("eval", "message", message=f"{label}: {note}"))
    convs = [r.conversation(a) for r in records for a in (r.chosen, r.rejected)]
    # scoring holds (answer tokens, vocabulary) logits at once: at most 16 conversations, whatever generation's width
    bar = Progress(emit, "eval", len(convs), f"{label}: scoring answers")
    per_token = answer_logprobs(loaded.model, loaded.tokenizer, convs, batch_size=min(cfg.batch_size, 16),
                                on_done=bar.update)
    del loaded
    gc.collect()
    return per_token.reshape(len(records), 2)


BATCH_TOKENS = 8192  # padded tokens per scoring batch: one 7,000-token pair must not pad 15 short ones to its length


def answer_logprobs(model, tokenizer, conversations: list[list[dict]], *, batch_size: int = 16,
                    on_done=None) -> np.ndarray:
    """(N,) mean log-prob per token of each conversation's trained tokens (its last answer + end of turn).

    Encoded by `chatforge.data.encode.encode_chat` (the labels training uses); the model is asked for logits
    only at the positions that predict an answer token (`logits_to_keep` = bool mask (B, T)), so the vocabulary
    projection runs on the answers, not on the prompts: (B, T, H) -> (N, V). Longest first, at most batch_size
    conversations and BATCH_TOKENS padded tokens a batch; on_done(n) after each batch of n."""
    import torch

    from chatforge.data.encode import IGNORE, encode_chat
    from chatforge.data.pack import collate

    encoded = [encode_chat(tokenizer, c) for c in conversations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.zeros(len(encoded))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    for chunk in _batches(order, [len(e) for e in encoded], batch_size):
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in chunk], pad_id).items()}
        labels = batch.pop("labels")
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE  # position t predicts labels[t + 1]
        targets = labels[:, 1:][keep[:, :-1]]  # (N,)
        with torch.inference_mode():
            logits = model(**batch, logits_to_keep=keep, use_cache=False).logits.float()  # (N, V)
            logp = torch.log_softmax(logits, -1).gather(1, targets[:, None])[:, 0]  # (N,)
        rows = keep.nonzero()[:, 0]
        sums = torch.zeros(len(chunk), device=device).index_add_(0, rows, logp)
        counts = torch.zeros(len(chunk), device=device).index_add_(0, rows, torch.ones_like(logp))
        out[chunk] = (sums / counts.clamp(min=1)).double().cpu().numpy()
        if on_done:
            on_done(len(chunk))
    return out


def _batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """`order` (longest first) cut into batches of at most batch_size items and BATCH_TOKENS padded tokens (the
    first item's length x the count; a longer item than that alone is a batch of one)."""
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and (len(last) + 1) * lengths[last[0]] <= BATCH_TOKENS:
            last.append(i)
        else:
            batches.append([i])
    return batches


def model_metrics(scores: np.ndarray) -> dict:
    """name -> (per-pair stats, aggregate), in the form metrics.score bootstraps."""
    return {"preference_accuracy": (M.as_mean(scores[:, 0] > scores[:, 1]), M.ratio(100.0)),
            "logprob_margin": (M.as_mean(scores[:, 0] - scores[:, 1]), M.ratio())}


def evaluate_preferences(cfg: EvalConfig, on_event=None) -> dict:
    from chatforge.data.preference import records_from_file
    from chatforge.evaluate.run import check_out_dir, resolve_baseline
    from chatforge.models.resolve import resolve

    check_values(cfg)  # the Python API's config gets the CLI's checks (--batch-size >= 1, ...)
    resolved = resolve(cfg.model)
    baseline = resolve_baseline(cfg, resolved)
    records = [r for r in records_from_file(cfg.data) if r.completion is None]
    if not records:
        raise ChatforgeError(f"{cfg.data}: no pairs (chosen and rejected) to evaluate",
                             hint="preference accuracy needs pairs; labelled single answers cannot be compared")
    records = records[:cfg.max_examples] if cfg.max_examples else records
    records, notes = with_trained_system(records, resolved.system_prompt)
    out = Path(cfg.out) if cfg.out else (resolved.run_dir / "eval" if resolved.run_dir else Path("eval-report"))
    check_out_dir(out)
    labels = {"tuned": cfg.model} | ({"base": baseline} if baseline else {})
    emit = on_event or quiet
    scores = {label: pair_scores(spec, records, cfg, label, emit) for label, spec in labels.items()}
    idx = M.resample_indices(len(records), resamples=cfg.bootstrap, seed=cfg.seed)
    systems = {label: model_metrics(s) for label, s in scores.items()}
    result = {"kind": "preference", "model": cfg.model, "baseline": baseline, "data": str(cfg.data),
              "examples_evaluated": len(records), "settings": to_dict(cfg), "notes": notes,
              "metrics": {label: {k: M.score(s, agg, idx, confidence=cfg.confidence) for k, (s, agg) in m.items()}
                          for label, m in systems.items()}}
    if baseline:
        result["delta"] = {k: M.score(s, agg, idx, baseline=systems["base"][k][0], confidence=cfg.confidence)
                           for k, (s, agg) in systems["tuned"].items()}
    result["pairs"] = [{"index": i, "question": next((m["content"] for m in reversed(r.prompt)
                                                       if m["role"] == "user"), ""),
                        "chosen": r.chosen, "rejected": r.rejected,
                        **{label: {"chosen_logprob": M.json_number(s[i, 0]), "rejected_logprob": M.json_number(s[i, 1]),
                                   "correct": bool(s[i, 0] > s[i, 1])} for label, s in scores.items()}}
                       for i, r in enumerate(records)]
    result["wrong"] = {label: [p["index"] for p in result["pairs"] if not p[label]["correct"]] for label in labels}
    result["report_dir"] = str(write_report(result, out))
    emit(Event("eval", "done", metrics={"report_dir": result["report_dir"]}))
    return result


def with_trained_system(records: list, system: str | None) -> tuple[list, list[str]]:
    """The pairs without a system message get the one the model was trained with, as chat, serve and the answer
    eval (`run.apply_system_prompt`) do; both models score the same conversations. Returns (records, notes)."""
    from chatforge.models.template import with_system

    missing = [i for i, r in enumerate(records) if not any(m["role"] == "system" for m in r.prompt)]
    if not system or not missing:
        return records, []
    out = list(records)
    for i in missing:
        out[i] = dataclasses.replace(records[i], prompt=with_system(records[i].prompt, system))
    return out, [f"{len(missing)} of {len(records)} pairs have no system message: they were scored with the one "
                 f"the model was trained with ({system!r}), as chat and serve do."]


# ---- report ------------------------------------------------------------------------------------------------
def _fmt(entry: dict | None, sign: bool = False, digits: int = 1) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    lo, hi = entry["ci"]
    return f"{f.format(entry['value'])} [{f.format(lo) if lo is not None else 'n/a'}, " \
           f"{f.format(hi) if hi is not None else 'n/a'}]"


def summary_table(result: dict) -> str:
    """The plain-text table of `chatforge eval` on preference data."""
    ci = f"{round(result['settings']['confidence'] * 100)}% CI"
    base = result["metrics"].get("base")
    header = ["Metric", f"Tuned [{ci}]"] + ([f"Base [{ci}]", f"Delta (tuned - base) [{ci}]"] if base else [])
    rows = []
    for key, label in METRICS:
        digits = 1 if key == "preference_accuracy" else 3
        row = [label, _fmt(result["metrics"]["tuned"][key], digits=digits)]
        if base:
            row += [_fmt(base[key], digits=digits), _fmt(result["delta"][key], sign=True, digits=digits)]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    title = f"{result['model']}" + (f" vs {result['baseline']}" if result.get("baseline") else "")
    wrong = ", ".join(f"{label} {len(ix)}" for label, ix in result["wrong"].items())
    return (f"{title} on {result['examples_evaluated']} held-out pairs\n" + "\n".join(
        [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])
        + f"\npairs ranked wrong (rejected more likely than chosen): {wrong}")


def _markdown(result: dict) -> str:
    lines = [f"# Preference evaluation: {result['model']}", "",
             f"Data: `{result['data']}` ({result['examples_evaluated']} pairs). A pair is right when the model "
             "gives the chosen answer a higher log-probability per token than the rejected one.", "",
             "```", summary_table(result), "```", ""]
    lines += [f"Note: {n}" for n in result.get("notes", [])] + ([""] if result.get("notes") else [])
    for label, indices in result["wrong"].items():
        spec = result["model"] if label == "tuned" else result["baseline"]
        lines += [f"## Pairs the {label} model ({spec}) gets wrong: {len(indices)}", ""]
        for i in indices[:SHOWN_WRONG]:
            p = result["pairs"][i]
            lines += [f"- #{i} **{p['question']}**  ", f"  chosen ({p[label]['chosen_logprob']}): {p['chosen']}  ",
                      f"  rejected ({p[label]['rejected_logprob']}): {p['rejected']}"]
        if len(indices) > SHOWN_WRONG:
            lines.append(f"- ... and {len(indices) - SHOWN_WRONG} more (metrics.json lists all)")
        lines.append("")
    return "\n".join(lines)


def write_report(result: dict, out: Path) -> Path:
    """metrics.json, report.md, report.html, written aside and swapped into place (never half a report)."""
    from chatforge.atomic import replace_dir

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".eval-", dir=out.parent))
    try:
        data = {k: v for k, v in result.items() if k != "report_dir"}
        (tmp / "metrics.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        md = _markdown(result)
        (tmp / "report.md").write_text(md, encoding="utf-8")
        (tmp / "report.html").write_text(
            "<!doctype html><meta charset='utf-8'><title>chatforge preference evaluation</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;"
            f"padding:1em;overflow:auto}}</style><pre>{html.escape(md)}</pre>", encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
