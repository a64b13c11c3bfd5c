"""The feedback that `chatforge serve` (web page, arena, POST /v1/feedback) and `chatforge chat` (/good, /bad,
/fix) kept in the store: list it, summarise it, export it as training data.

  list     the records, newest last (--limit, --since, --json: a JSON array)
  stats    per model: answers, thumbs, corrections, picks; arena win rate with a 95% confidence interval
  export   --as dpo | kto | sft --out FILE [--style openai|trl] [--model M] [--since DATE]
           DPO pairs from picks, arena votes and corrections (the correction is preferred to the answer),
           KTO rows from thumbs, SFT rows from corrections and thumbs-up answers. Duplicates are exported once
           and contradictions (one pair voted both ways) not at all; both are reported.

Examples:  chatforge feedback stats
           chatforge feedback export --as dpo --out prefs.jsonl --model runs/lumora
           chatforge train --method dpo --data prefs.jsonl --model runs/lumora
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.config import positive_int
from chatforge.store.config import ExportConfig, LogConfig

_EXPORT = """Write the kept feedback as training rows (JSON Lines), in formats other tools read.

  dpo  pairs from better-of-two picks, arena votes and corrections (the correction is preferred to the answer)
  kto  rows from thumbs up / down: prompt, completion, label
  sft  rows from corrections and thumbs-up answers (OpenAI chat format)

--style openai (default): OpenAI's preference JSONL {"input": {"messages"}, "preferred_output",
"non_preferred_output"}; --style trl: TRL's {"prompt", "chosen", "rejected"}. OpenAI has no unpaired format,
so kto rows are TRL's {"prompt", "completion", "label"} in both styles. The same feedback given twice is
exported once; a contradiction (one pair voted both ways, one answer rated up and down) is left out. Both are
reported. Nothing to export is an error (exit 1) that says what is missing.

Example:  chatforge feedback export --as dpo --out prefs.jsonl --model runs/lumora --since 2026-12-01"""


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="List the feedback records.", description="List the feedback records.")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N",
                         help="Show at most this many, the newest (default: 50).")
    listing.add_argument("--since", metavar="DATE", help="Only records on or after DATE (YYYY-MM-DD, local time).")
    listing.add_argument("--json", action="store_true", help="Print a JSON array of the records ([] when none).")
    stats = sub.add_parser("stats", help="Counts per model and arena win rates with 95%% intervals.",
                           description="Counts per model and arena win rates with 95% confidence intervals.")
    stats.add_argument("--since", metavar="DATE", help="Only records on or after DATE (YYYY-MM-DD, local time).")
    stats.add_argument("--json", action="store_true", help="Print JSON.")
    export = sub.add_parser("export", help="Write DPO, KTO or SFT rows (JSONL) for training.",
                            description=_EXPORT, formatter_class=parser.formatter_class)
    add_config_arguments(export, ExportConfig)
    for p in (listing, stats, export):
        add_config_arguments(p, LogConfig, exclude=("log",))


def run(args) -> int:
    from chatforge.config import build

    with build(LogConfig, args).open_existing() as store:
        if args.action == "list":
            return _list(store, args)
        if args.action == "stats":
            return _stats(store, args)
        return _export(store, build(ExportConfig, args))


def parse_since(text: str | None) -> float | None:
    """'2026-12-01' or an ISO time (local time unless it says otherwise) -> a Unix time."""
    if not text:
        return None
    from datetime import datetime

    from chatforge.errors import ChatforgeError

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ChatforgeError(f"--since {text}: not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def _when(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _list(store, args) -> int:
    import json

    records = store.list_feedback(limit=None, since=parse_since(args.since))[-args.limit:]
    if args.json:  # an array, so that "nothing" is still JSON: [], not an empty output
        print(json.dumps(records, ensure_ascii=False, indent=1))
        return 0
    if not records:
        print(f"no feedback in {store.path}" + (f" since {args.since}" if args.since else ""))
        return 0
    for r in records:
        if r["kind"] == "rating":
            what = f"{'👍' if r['rating'] == 'up' else '👎'} {r['completion_id']}"
        elif r["kind"] == "correction":
            what = f"correction of {r['completion_id']}: {_clip(r['correction'])}"
        elif r["kind"] == "pair":
            what = f"{r['chosen_id']} better than {r['rejected_id']}"
        else:
            what = f"arena {r['vote'].replace('_', ' ')}: {r['left']['model']} (left) vs {r['right']['model']} (right)"
        print(f"#{r['id']:<5} {_when(r['created'])}  {r['source']:<5}  {what}"
              + (f"  -- {_clip(r['comment'])}" if r["comment"] else ""))
    return 0


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _stats(store, args) -> int:
    import json

    from chatforge.store.export import stats

    per = stats(store, since=parse_since(args.since))
    if args.json:
        print(json.dumps(per, ensure_ascii=False, indent=1))
        return 0
    if not per:
        print(f"nothing kept yet in {store.path}")
        return 0
    width = max(len(n) for n in per)
    print(f"{'model':<{width}}  answers    up  down  fixes  picked  passed  arena win rate (95% CI)")
    for name, s in per.items():
        arena = "-" if s["win_rate"] is None else (
            f"{s['win_rate']:.0%} [{s['ci95'][0]:.0%}, {s['ci95'][1]:.0%}] of {s['wins'] + s['losses'] + s['ties']}"
            f" (W {s['wins']} / L {s['losses']} / T {s['ties']}" + (f", both bad {s['both_bad']}" if s["both_bad"]
                                                                  else "") + ")")
        print(f"{name:<{width}}  {s['completions']:>7}  {s['up']:>4}  {s['down']:>4}  {s['corrections']:>5}  "
              f"{s['chosen']:>6}  {s['rejected']:>6}  {arena}")
    return 0


def _export(store, cfg) -> int:
    import sys

    from chatforge.errors import ChatforgeError
    from chatforge.store.export import build, known_model, write_jsonl

    if not cfg.out:
        raise ChatforgeError("feedback export: --out FILE is required")
    from pathlib import Path

    if Path(cfg.out).expanduser().is_dir():
        raise ChatforgeError(f"--out {cfg.out}: is a directory; --out names the JSONL file to write",
                             hint=f"e.g. --out {Path(cfg.out) / (cfg.kind + '.jsonl')}")
    if cfg.model is not None and not known_model(store, cfg.model):
        raise ChatforgeError(_unknown_model(store, cfg.model))
    result = build(store, cfg.kind, style=cfg.style, model=cfg.model, since=parse_since(cfg.since))
    for line in result.duplicates:
        print(f"duplicate: {line}", file=sys.stderr)
    for line in result.contradictions:
        print(f"contradiction: {line}", file=sys.stderr)
    for line in result.empty:
        print(f"empty: {line}", file=sys.stderr)
    for line in result.text_only:
        print(f"text only: {line}", file=sys.stderr)
    if not result.rows:
        source = {"dpo": "better-of-two picks, arena votes or corrections", "kto": "thumbs up / down",
                  "sft": "corrections or thumbs-up answers"}[cfg.kind]
        raise ChatforgeError(f"nothing to export as {cfg.kind}: "
                             f"{_count(result.considered, 'matching feedback record')} in {store.path}, so no rows "
                             f"({cfg.kind} is made from {source})"
                             + (f"; {_count(result.contradictions, 'contradiction')} {_were(result.contradictions)}"
                                " left out" if result.contradictions else "")
                             + (f"; {_count(result.empty, 'row')} with an empty answer {_were(result.empty)} left out"
                                if result.empty else "")
                             + (f"; {_count(result.text_only, 'record')} about raw text completions "
                                f"{_were(result.text_only)} left out" if result.text_only else ""), exit_code=1)
    path = write_jsonl(result.rows, cfg.out)
    print(f"wrote {_count(result.rows, cfg.kind + ' row')} ({result.style}) to {path}"
          + (f"; {_count(result.duplicates, 'duplicate')} merged, {_count(result.contradictions, 'contradiction')}"
             " left out" if result.duplicates or result.contradictions else "")
          + (f"; {_count(result.empty, 'row')} with an empty answer left out" if result.empty else "")
          + (f"; {_count(result.text_only, 'record')} about raw text completions left out"
             if result.text_only else ""))
    return 0


def _unknown_model(store, model: str) -> str:
    """--model names no model in the store (a typo, or a run never served): say so, and which ones it has,
    rather than "nothing to export" as if the model merely had no feedback yet."""
    names = list(dict.fromkeys(m["name"] for m in store.models()))
    if not names:
        return f"--model {model}: {store.path} has no models yet (nothing was served or chatted with)"
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (f"--model {model}: no such model in {store.path}; it has {_count(names, 'model')}: {shown} "
            "(--model takes a name as served, a path or run directory, or a fingerprint prefix)")


def _count(items: list | int, noun: str) -> str:
    from chatforge.plural import counted

    return counted(items if isinstance(items, int) else len(items), noun)


def _were(items: list) -> str:
    """The verb that agrees with the count: "1 row was", "2 rows were"."""
    return "was" if len(items) == 1 else "were"
