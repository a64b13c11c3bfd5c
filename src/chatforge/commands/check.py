"""Validate a dataset line by line and print its statistics in tokens. Writes nothing.

Every problem is reported by file, line and class, with counts per class. Exit code 2 when there are errors
(training would refuse this data), or when the --overlong policy would drop more than 10 % of the rows (so
would training); 0 when there are only warnings (exact duplicates, over-long examples that the --overlong
policy will drop or truncate, and data that parses but is wrong: near-duplicates, held-out rows nearly the
same as training rows, the same question with different answers, personal data and secrets (shown masked),
answers in another language than the question, empty-looking or cut-off answers). --strict makes those
data-quality warnings errors. With --json, stdout is one JSON object even when the data cannot be read at all
({"ok": false, "error": ...}).

Formats, detected per file: OpenAI chat {"messages"} (with per-answer "weight": 0|1; a content may be a list of
text parts), ShareGPT {"conversations"}, Alpaca {"instruction","input","output"}, Dolly
{"instruction","context","response"}, {"prompt","completion"} (strings, or TRL's lists of messages),
{"question","answer"}, and raw text (.txt files or {"text"} records, for continued pretraining); column names
match in any case. Files: .jsonl .json .csv .tsv .parquet .txt, or a directory of them.
Preference data (for --method dpo / kto): OpenAI {"input","preferred_output","non_preferred_output"}, TRL
{"prompt"?,"chosen","rejected"} (strings or messages; without "prompt" the shared start is the prompt) and TRL
{"prompt","completion","label"}; only the answers' tokens are scored.

Examples:  chatforge check examples/data/lumora_train.jsonl
           chatforge check data/ --format alpaca --max-length 1024 --eval-data heldout.jsonl --json
           chatforge check faq.csv --columns question=title+ask answer=answer system=department
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.data.config import CheckConfig

PER_CLASS = 20  # problems printed per class in the text report (--json prints all)


def add_arguments(parser):
    parser.add_argument("data", metavar="DATA",
                        help="A data file (.jsonl .json .csv .tsv .parquet .txt) or a directory.")
    add_config_arguments(parser, CheckConfig)


def run(args) -> int:
    from chatforge.config import build

    return check_data(args.data, build(CheckConfig, args))


def check_data(data: str, cfg: CheckConfig) -> int:
    """Print the report of `data`; 2 when it has errors, else 0 (the Python API of `chatforge check`)."""
    import json

    from chatforge.errors import ChatforgeError

    try:
        return _check_data(data, cfg)
    except ChatforgeError as e:
        if cfg.json:  # a script reading stdout still gets one object; the message also goes to stderr as always
            print(json.dumps({"data": str(data), "ok": False, "error": {"message": e.message, "hint": e.hint}},
                             ensure_ascii=False, indent=1))
        raise


def _check_data(data: str, cfg: CheckConfig) -> int:
    import json

    from chatforge.data import analyse
    from chatforge.data.formats import data_files
    from chatforge.data.validate import Report, drop_hint
    from chatforge.models.load import load_tokenizer, quiet_transformers

    data_files(data)  # a missing path fails before any model is loaded
    quiet_transformers()
    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    from chatforge.data.preference import is_preference_data

    if cfg.format is None and is_preference_data(data):
        return _check_preferences(data, cfg, tokenizer)
    prepared, report = analyse(data, tokenizer, format=cfg.format, max_length=cfg.max_length,
                               overlong=cfg.overlong, eval_path=cfg.eval_data, columns=cfg.columns,
                               column_separator=cfg.column_separator, strict=cfg.strict)
    estimate = _estimate(cfg, prepared) if cfg.estimate and prepared.examples else None
    # warnings alone (rows too long, dropped) can still be too many for `chatforge train`: say so here, not there
    refusal = Report.drop_refusal(data, rows=prepared.rows, dropped=prepared.dropped)
    if cfg.json:
        out = _as_json(data, prepared, report, estimate)
        out["ok"] = out["ok"] and not refusal  # "ok" is the exit code: 2 for data train would refuse
        print(json.dumps({**out, "train_refuses": refusal}, ensure_ascii=False, indent=1))
    else:
        print(_as_text(data, prepared, report, estimate, refusal=refusal))
        if refusal:
            print(f"error: {refusal}: `chatforge train` (--max-length {cfg.max_length}) would refuse this data; "
                  f"{drop_hint(prepared.dropped)}")
    return 2 if report.errors or refusal else 0


def _check_preferences(data: str, cfg: CheckConfig, tokenizer) -> int:
    """Preference data (pairs for DPO, labelled answers for KTO): the same line-numbered report."""
    import json

    from chatforge.data.preference import analyse_preferences

    prepared, report = analyse_preferences(data, tokenizer, max_length=cfg.max_length, overlong=cfg.overlong,
                                           eval_path=cfg.eval_data)
    if cfg.json:
        print(json.dumps(_as_json(data, prepared, report, None), ensure_ascii=False, indent=1))
        return 2 if report.errors else 0
    lines = _as_text(data, prepared, report, None, problems_only=True).splitlines()
    s = prepared.stats
    if prepared.examples:
        what = (f"pairs           {s['examples']} (chosen + rejected: {s['sequences']} sequences)   train with "
                "--method dpo" if prepared.kind == "pairs" else
                f"answers         {s['examples']} ({s['desirable']} desirable, {s['undesirable']} undesirable)   "
                "train with --method kto")
        lines += ["", what, f"tokens          {s['tokens_total']} total, {s['tokens_trained']} scored (answers only)",
                  "length (tokens) min {min}  p50 {p50}  p90 {p90}  max {max}".format(**s["length"])]
    else:
        lines.append("no usable records")
    print("\n".join(lines))
    return 2 if report.errors else 0


def _estimate(cfg: CheckConfig, prepared) -> dict:
    """Seconds per epoch of `chatforge train --data` with its defaults, from measured steps of the default
    recipe (chatforge.train.speed: LoRA, bf16 where the CPU has it, packed rows of this data's mean example
    length) on this machine, scaled to the packed rows that run trains per epoch (its --max-length, its eval
    split held out). A step measured before for the same model, machine and shape is reused (speed.recall)
    unless --remeasure."""
    from chatforge.data.stats import auto_epochs, epoch_seconds
    from chatforge.models.load import pick_device, set_threads
    from chatforge.models.resolve import resolve
    from chatforge.train import speed
    from chatforge.train.config import TrainConfig

    stats = prepared.stats
    set_threads()
    train = TrainConfig()
    row = min(train.max_length, stats["max_length"])  # the rows `chatforge train` packs by default
    split = 0.0 if cfg.eval_data else train.eval_split  # with --eval-data nothing is held out
    rows, examples = speed.epoch_rows(prepared.examples, prepared.kind, row, eval_split=split, seed=train.seed)
    shape = dict(row_length=max(16, row), rows=max(1, train.micro_batch_tokens // row),
                 example_length=speed.example_bucket(stats["tokens_total"] // max(1, stats["examples"])))
    resolved = resolve(cfg.model)
    key = speed.step_key(resolved.path, resolved.adapter, device=pick_device(None), **shape)
    measured = None if cfg.remeasure else speed.recall(key)
    if measured is None:
        measured = _measure_step(cfg, resolved, **shape)
        speed.remember(key, measured)
    out = dict(measured, **epoch_seconds(measured["tokens_per_second"], rows * row))
    epochs = auto_epochs(len(examples), sum(e.trained for e in examples))  # train's --epochs auto
    out.update(epoch_rows=rows, row_length=row, train_examples=len(examples), epochs=epochs,
               run_seconds=round(epochs * out["epoch_seconds"], 1), reused="measured_at" in measured)
    return out


def _measure_step(cfg: CheckConfig, resolved, *, row_length: int, rows: int, example_length: int) -> dict:
    """Load the model and time the default recipe's step (chatforge.train.speed.DefaultStep) at this shape."""
    from chatforge.data.stats import measure_step
    from chatforge.models.load import load_model
    from chatforge.train.speed import DefaultStep

    loaded = load_model(resolved, dtype="float32", trust_remote_code=cfg.trust_remote_code)
    step = DefaultStep(loaded.model, example_length=example_length)
    figures = measure_step(step.model, seq_len=row_length, rows=rows, step=step, budget_s=6.0)
    return dict(figures, device=str(loaded.device), method=step.method, precision=step.precision)


def _as_json(data, prepared, report, estimate) -> dict:
    return {"data": str(data), "ok": not report.errors, "kind": prepared.kind, "formats": prepared.formats,
            "rows": prepared.rows,
            "columns": {k: list(v) for k, v in columns.fields.items()} if (columns := getattr(prepared, "columns", None))
            else None,
            "errors": len(report.errors), "warnings": len(report.warnings),
            "counts": report.counts(),
            # record: the record's number in a JSON array whose records share a line (null elsewhere)
            "problems": [{"file": p.file, "line": p.line, "record": p.record, "class": p.cls, "severity": p.severity,
                          "message": p.message} for p in report.problems],
            "stats": prepared.stats, "estimate": estimate}


def _system_prompt_lines(sp: dict) -> list[str]:
    """How many conversations carry which system prompt, and which one a run trained on this data applies."""
    import json

    n = sp["conversations"]
    lines = [f"system prompts  {sp['distinct']} distinct; {n - sp['without']} of {n} conversations have one"]
    for row in sp["top"]:
        text = row["text"] if len(row["text"]) <= 90 else row["text"][:87] + "..."
        lines.append(f"  {row['count']:>6} ({row['count'] / max(1, n):.0%})  {json.dumps(text, ensure_ascii=False)}")
    if sp["dominant"] is not None:
        lines.append("  the most common one is the default: a run trained on this data applies it when a request "
                     "has no system message")
    elif sp["distinct"] > 1 and sp["top"] and sp["top"][0]["count"] * 2 > n:
        lines.append("  no default system prompt: several are in use (each request chooses its own); a run applies "
                     "one only when it is on >= 80 % of the conversations that have one")
    return lines


def _as_text(data, prepared, report, estimate, problems_only: bool = False, refusal: str | None = None) -> str:
    from collections import Counter

    from chatforge.data.stats import format_duration
    from chatforge.data.validate import CLASSES, collapse, describe
    from chatforge.plural import counted

    s = prepared.stats
    fmts = ", ".join(sorted(set(prepared.formats.values()))) or "unknown"
    out = [f"{data}: {prepared.rows} row{'' if prepared.rows == 1 else 's'}, format {fmts} ({prepared.kind})"]
    if getattr(prepared, "columns", None):  # preference data has no column mapping
        out.append(f"columns: {prepared.columns.describe()}")
    shown, hidden = Counter(), Counter()
    for p, lines in collapse(report.problems):  # a run of one mistake is one line
        if shown[p.cls] < PER_CLASS:
            shown[p.cls] += 1
            out.append(f"  {p.severity}: {describe(p, lines)}")
        else:
            hidden[p.cls] += len(lines)
    for cls, n in hidden.items():
        out.append(f"  ... {n} more {CLASSES[cls][0]} (--json lists all)")
    if report.problems:
        out.append("problems: " + ", ".join(f"{CLASSES[k][0]} ({CLASSES[k][1]}): {n}"
                                            for k, n in report.counts().items()))
    refused = any(p.is_dropped for p in report.errors)  # --strict quality errors do not stop training
    out.append(f"{counted(len(report.errors), 'error')}, {counted(len(report.warnings), 'warning')}"
               + (" -- training would refuse this data (or drop these rows with --lenient)" if refused else "")
               + (" -- but training would refuse this data: too many rows would be dropped (see the end)"
                  if refusal and not refused else ""))
    if problems_only:
        return "\n".join(out)
    if not prepared.examples:
        return "\n".join(out + ["no usable examples"])
    out += ["", f"examples        {s['examples']}" + (f"   turns (assistant answers) {s['turns']}"
                                                      if prepared.kind == "chat" else "   (blocks of text)"),
            f"tokens          {s['tokens_total']} total, {s['tokens_trained']} trained "
            f"({s['tokens_trained'] / max(1, s['tokens_total']):.0%})",
            f"characters      {s['characters']} ({s['tokens_per_character']:.2f} tokens per character)"
            + (f", answers {s['answer_characters']['mean']:g} on average, at most {s['answer_characters']['max']}"
               if prepared.kind == "chat" else ""),
            "length (tokens) min {min}  p50 {p50}  p90 {p90}  p99 {p99}  max {max}".format(**s["length"]),
            *["  " + line for line in s["histogram"]],
            f"packing         {s['packed_rows']} rows of {s['max_length']} tokens, "
            f"{s['padding_share']:.1%} padding",
            f"epochs (auto)   {s['auto_epochs']}"]
    if "system_prompts" in s:
        out += _system_prompt_lines(s["system_prompts"])
    if estimate:
        # the default run trains on fewer examples than counted above (its eval split held out, over-long rows
        # dropped), which may change its automatic epochs: say on how many
        n = estimate["train_examples"]
        of = f" of {n} examples (the others held out or dropped)" if n != s["examples"] else ""
        when = f" on {estimate['measured_at']}, --remeasure to time it again" if estimate["reused"] else ""
        out.append(f"time per epoch  about {format_duration(estimate['epoch_seconds'])} on {estimate['device']} "
                   f"(measured {estimate['tokens_per_second']:.0f} tokens/s{when}; {estimate['method']}, "
                   f"{estimate['precision']}); the default run: {estimate['epochs']} epochs{of}, about "
                   f"{format_duration(estimate['run_seconds'])} of training steps")
    return "\n".join(out)
