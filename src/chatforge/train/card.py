"""The model card: RUN/README.md, what was trained on what, how well, and how to use it."""

from __future__ import annotations

from pathlib import Path


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def _terms(model: str) -> str | None:
    from chatforge.models.catalog import license_note

    return license_note(model)


def write_model_card(run_dir: Path, cfg, summary: dict, stats: dict) -> Path:
    n_examples = stats.get("train_examples_used", stats.get("train", {}).get("examples", "a few"))
    what = "a LoRA adapter" if cfg.method in ("lora", "dpo", "kto") else "a full model"
    objective = "continued pretraining (causal LM on raw text)" if stats.get("kind") == "text" else \
        "chat fine-tuning (loss on assistant tokens only)"
    rows = [("Base model", f"`{cfg.model}`"), ("Method", cfg.method + (f" (r={cfg.lora_rank}, alpha={cfg.lora_alpha},"
                                                                       " all linear layers)" if cfg.method == "lora"
                                                                       else "")),
            ("Objective", objective), ("Training data", f"`{cfg.data}` ({stats.get('train_examples_used', '?')} "
                                                         "examples)"),
            ("Epochs / steps", f"{summary['epochs']} / {summary['steps']}"),
            ("Learning rate", f"{cfg.lr:g} ({cfg.scheduler}, warm-up {cfg.warmup:g})"),
            ("Tokens per step / max length", f"{cfg.batch_tokens} / {cfg.max_length}"),
            ("Tokens seen", f"{summary['tokens_seen']:,}"),
            ("Train loss (first -> last step)", f"{_fmt(summary.get('first_train_loss'))} -> "
                                                f"{_fmt(summary.get('final_train_loss'))}")]
    if "eval_loss" in summary:
        rows += [("Eval loss (first -> final)", f"{_fmt(summary['first_eval_loss'])} -> {_fmt(summary['eval_loss'])}")]
        rows += [(label, _fmt(summary[k], ".3f")) for k, label in (("eval_token_accuracy", "Eval token accuracy"),
                                                                   ("eval_reward_accuracy", "Eval reward accuracy"))
                 if k in summary]
    system = (stats.get("train", {}).get("system_prompts") or {}).get("dominant")
    if system:
        rows.append(("System prompt (applied when a conversation has none)", f"`{system}`"))
    rows += [("Throughput", f"{_fmt(summary.get('tokens_per_sec'), '')} tokens/s"), ("Seed", str(cfg.seed))]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    text = f"""# {run_dir.name}

{what.capitalize()} trained with chatforge from `{cfg.model}`.
`final/` holds {what}{" and `chatforge.json` naming its base model" if cfg.method in ("lora", "dpo", "kto") else ""}.

| | |
|---|---|
{table}

Data statistics: `data_stats.json`. Per-step metrics: `metrics.jsonl`
(TensorBoard: `tensorboard --logdir {run_dir / 'tb'}`).
The exact configuration is `config.yaml`: `chatforge train --config {run_dir / 'config.yaml'} --out runs/NEW`
repeats this run.

## Use it

```
chatforge chat {run_dir}
chatforge eval {run_dir} --data HELDOUT.jsonl
chatforge serve {run_dir}
chatforge export {run_dir} --format gguf --out {run_dir.name}.gguf
```

## Limitations

Fine-tuned on {n_examples} examples: it knows what those examples say, in their style, and inherits the
base model's limits and biases. Check answers before relying on them.
"""
    terms = _terms(cfg.model)
    if terms:
        text += f"""
## Licence of the weights

The base model `{cfg.model}` is provided under the {terms}; this run's weights are derived from it,
so the same terms apply to them and to everything exported from them.
"""
    path = run_dir / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
