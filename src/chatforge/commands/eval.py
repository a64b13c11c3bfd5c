"""Did fine-tuning help? Answer held-out questions with the tuned model and its base, side by side.

For each held-out conversation both models answer its last user turn (greedy, batched); the answers are
scored against the reference answer (token F1, exact match, ROUGE-1/2/L, BLEU, chrF; CJK text on
characters), the references are scored under each model (perplexity, token accuracy), and answer length and
stop rate are measured. Deltas (tuned - base) come with paired bootstrap confidence intervals: an interval
that excludes 0 is a real difference, not noise.

Writes metrics.json, report.md, report.html (self-contained) and loss_curve.png to --out.

On preference pairs (any format `chatforge check` reads as pairs) it reports instead, for the model and its
base, the preference accuracy (share of pairs whose chosen answer gets a higher log-probability per token than
the rejected one) and the mean log-prob margin, with bootstrap intervals and the paired delta, and lists the
pairs each model gets wrong.

Examples:
  chatforge eval runs/lumora --data examples/data/lumora_heldout.jsonl
  chatforge eval my-model-dir --data heldout.jsonl --baseline smollm2-135m-instruct --max-examples 50
  chatforge eval runs/lumora-dpo --data examples/data/lumora_pairs_heldout.jsonl   # preference accuracy
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.evaluate.config import EvalConfig


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_OR_RUN",
                        help="The model to evaluate: a run directory (runs/NAME), adapter or model directory, "
                             ".gguf file or catalog name.")
    add_config_arguments(parser, EvalConfig)
    parser.add_argument("--no-baseline", dest="baseline", action="store_const", const="none",
                        help="Evaluate the model alone, without a comparison.")
    parser.add_argument("--config", metavar="YAML", help="Read these options from a YAML file.")
    parser.add_argument("--json", action="store_true",
                        help="Print the metrics as JSON (without the per-example rows) instead of the table.")


def run(args) -> int:
    import json

    from chatforge.config import build
    from chatforge.evaluate.report import summary_table
    from chatforge.evaluate.run import evaluate

    cfg = build(EvalConfig, args, args.config)
    from chatforge.events import ConsoleView

    view = ConsoleView()
    try:
        result = evaluate(cfg, on_event=view)
    finally:
        view.close()
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k not in ("examples", "pairs")}, indent=2,
                         ensure_ascii=False))
    elif result.get("kind") == "preference":
        from chatforge.evaluate.preference import summary_table as preference_table

        print(preference_table(result))
        print(f"\nReport: {result['report_dir']}/report.md (and report.html, metrics.json)")
        return 0
    else:
        print(summary_table(result))
        print(f"\nReport: {result['report_dir']}/report.html (and report.md, metrics.json)")
    return 0
