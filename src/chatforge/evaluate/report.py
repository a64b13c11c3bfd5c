"""The evaluation report: metrics.json (machine-readable), report.md, a self-contained report.html (inline CSS,
the loss curve embedded as a data URI) and loss_curve.png; plus the summary table printed in the terminal.

Everything is written to a temporary directory that replaces the report directory at the end, so a report
directory is always complete (or the previous one).
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
import tempfile
from pathlib import Path

from chatforge.atomic import disk_full_error, is_disk_full, replace_dir

# key, label, lower is better. Scores are percentages; perplexity and lengths are raw numbers.
METRICS = [
    ("f1", "Token F1", False),
    ("exact_match", "Exact match", False),
    ("rouge1", "ROUGE-1", False),
    ("rouge2", "ROUGE-2", False),
    ("rougeL", "ROUGE-L", False),
    ("bleu", "BLEU", False),
    ("chrf", "chrF", False),
    ("perplexity", "Answer perplexity", True),
    ("token_accuracy", "Answer token accuracy", False),
    ("answer_tokens", "Answer length (tokens)", None),
    ("answer_words", "Answer length (words; a CJK character counts as one)", None),
    ("stop_rate", "Stop rate", False),
    ("tool_call_accuracy", "Tool-call accuracy", False),  # tool data only (evaluate/tools.py)
    ("tool_arguments_exact", "Tool arguments exact match", False),
    ("tool_arguments_f1", "Tool arguments F1 (keys)", False),
]
_ENDED = {"stop": "stopped", "length": "cut at the token limit"}
SHOWN_EXAMPLES = 10  # per side (worst, best) once there are more than 2x this many


# ---- formatting --------------------------------------------------------------------------------------------
def _num(x, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.1f}" if sign else f"{x:.1f}"


def _with_ci(entry: dict | None, sign: bool = False) -> str:
    if not entry:
        return ""
    lo, hi = entry["ci"]
    return f"{_num(entry['value'], sign)} [{_num(lo, sign)}, {_num(hi, sign)}]"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the metrics table: base, tuned, delta (with CI) when there is a baseline."""
    tuned, base, delta = result["metrics"]["tuned"], result["metrics"].get("base"), result.get("delta")
    ci = f"{round(result['settings']['confidence'] * 100)}% CI"
    shown = _shown(result)
    if base is None:
        return ["Metric", f"{result['model']} [{ci}]"], [[label, _with_ci(tuned.get(k))] for k, label, _ in shown]
    header = ["Metric", "Base", "Tuned", f"Delta (tuned - base) [{ci}]"]
    return header, [[label, _num(base[k]["value"]), _num(tuned[k]["value"]), _with_ci(delta[k], sign=True)]
                    for k, label, _ in shown]


def _shown(result: dict) -> list[tuple]:
    """The METRICS this result has (the tool-call ones only for tool data)."""
    return [m for m in METRICS if m[0] in result["metrics"]["tuned"]]


def summary_table(result: dict) -> str:
    """The plain-text table printed at the end of `chatforge eval`."""
    header, rows = table_rows(result)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def fmt(row: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    title = f"{result['model']} vs {result['baseline']}" if result.get("baseline") else result["model"]
    return f"{title} on {result['examples_evaluated']} held-out examples\n" + "\n".join(lines)


def ranked_examples(result: dict) -> list[dict]:
    """Examples ordered worst first: by the F1 gain over the base when there is one, else by tuned F1."""
    def key(ex):
        gain = ex["tuned"]["f1"] - (ex["base"]["f1"] if "base" in ex else 0.0)
        return gain, ex["tuned"]["rougeL"]
    return sorted(result["examples"], key=key)


def _sections(result: dict) -> list[tuple[str, list[dict]]]:
    ranked = ranked_examples(result)
    by = "F1 gain over the base" if result.get("baseline") else "F1"
    if len(ranked) <= 2 * SHOWN_EXAMPLES:
        return [(f"All examples, worst first (by {by})", ranked)]
    return [(f"Worst {SHOWN_EXAMPLES} (by {by})", ranked[:SHOWN_EXAMPLES]),
            (f"Best {SHOWN_EXAMPLES} (by {by})", ranked[::-1][:SHOWN_EXAMPLES])]


def _answer_columns(result: dict) -> list[tuple[str, str]]:
    return ([("base", "Base answer")] if result.get("baseline") else []) + [("tuned", "Tuned answer")]


def _notes(result: dict) -> list[str]:
    s = result["settings"]
    return [f"Model: `{result['model']}`" + (f"; baseline: `{result['baseline']}`" if result.get("baseline") else
                                             "; no baseline"),
            f"Data: `{result['data']}` ({result['examples_evaluated']} examples); greedy answers of at most "
            f"{s['max_tokens']} tokens",
            "Scores are percentages; intervals are bootstrap percentile intervals, paired for the deltas "
            f"({s['bootstrap']} resamples, seed {s['seed']}). A delta whose interval excludes 0 is unlikely to be "
            "noise.",
            "CJK text is scored on characters (BLEU: sacrebleu `zh` tokenisation for references with CJK "
            "characters, `13a` otherwise; ROUGE, F1, EM: one token per CJK character)."] + result.get("notes", [])


# ---- markdown ----------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def to_markdown(result: dict, png_name: str | None) -> str:
    header, rows = table_rows(result)
    out = ["# chatforge evaluation", ""] + [f"- {n}" for n in _notes(result)] + ["", "## Metrics", "",
           "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Loss curves", "", f"![train and eval loss]({png_name})" if png_name else
            f"_{result.get('loss_curve_note', 'No loss curve.')}_", ""]
    cols = _answer_columns(result)
    for title, examples in _sections(result):
        out += [f"## {title}", "", "| Question | Reference | " + " | ".join(c[1] for c in cols) + " |",
                "|---|---|" + "---|" * len(cols)]
        for ex in examples:
            answers = [f"{_md_cell(ex[k]['answer'])} (F1 {ex[k]['f1']:.0f})" for k, _ in cols]
            out.append(f"| {_md_cell(ex['question'])} | {_md_cell(ex['reference'])} | " + " | ".join(answers) + " |")
        out.append("")
    out.append("Every example, with all its scores, is in `metrics.json`.")
    return "\n".join(out) + "\n"


# ---- html --------------------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}th,td{border:1px solid #ddd;padding:.4em .6em;
vertical-align:top;text-align:left}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#17803d}.down{color:#b42318}.len{color:#777;font-size:.85em}img{max-width:100%}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}"""


def _delta_class(key: str, entry: dict | None) -> str:
    """CSS class of a delta: 'up'/'down' when its interval excludes 0 (better/worse), else ''."""
    lower_better = next(lb for k, _, lb in METRICS if k == key)
    lo, hi = entry["ci"] if entry else (None, None)
    if lower_better is None or lo is None or hi is None or lo <= 0 <= hi:
        return ""
    return "up" if (lo > 0) != lower_better else "down"


def _html_table(result: dict) -> str:
    header, rows = table_rows(result)
    delta = result.get("delta") or {}
    body = []
    for (key, _, _), (label, *values) in zip(_shown(result), rows):
        cells = [f'<td class="n">{html.escape(v)}</td>' for v in values]
        if delta:  # colour the delta column
            cells[-1] = f'<td class="n {_delta_class(key, delta.get(key))}">{html.escape(values[-1])}</td>'
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _html_examples(examples: list[dict], cols) -> str:
    head = "<tr><th>Question</th><th>Reference</th>" + "".join(f"<th>{c[1]}</th>" for c in cols) + "</tr>"
    rows = []
    for ex in examples:
        answers = ""
        for k, _ in cols:
            a = ex[k]
            scores = (f"F1 {a['f1']:.0f} · ROUGE-L {a['rougeL']:.0f} · {a['answer_tokens']:.0f} tokens, "
                      f"{_ENDED[a['finish_reason']]}")
            answers += f'<td>{html.escape(a["answer"])}<div class="len">{scores}</div></td>'
        rows.append(f"<tr><td>{html.escape(ex['question'])}</td><td>{html.escape(ex['reference'])}</td>{answers}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def to_html(result: dict, png: bytes | None) -> str:
    notes = "".join(f"<li>{html.escape(n).replace('`', '')}</li>" for n in _notes(result))
    curve = (f'<img alt="train and eval loss against tokens seen" src="data:image/png;base64,'
             f'{base64.b64encode(png).decode()}">' if png else
             f"<p><em>{html.escape(result.get('loss_curve_note', 'No loss curve.'))}</em></p>")
    cols = _answer_columns(result)
    sections = "".join(f"<h2>{html.escape(t)}</h2>{_html_examples(exs, cols)}" for t, exs in _sections(result))
    every = (f"<details><summary>All {len(result['examples'])} examples, in file order</summary>"
             f"{_html_examples(result['examples'], cols)}</details>")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>chatforge evaluation: "
            f"{html.escape(result['model'])}</title><style>{_CSS}</style></head><body><h1>chatforge evaluation</h1>"
            f"<ul>{notes}</ul><h2>Metrics</h2>{_html_table(result)}<h2>Loss curves</h2>{curve}{sections}{every}"
            "</body></html>\n")


# ---- loss curve --------------------------------------------------------------------------------------------
def read_metrics_log(path: Path) -> tuple[list[dict], list[dict]]:
    """Train lines ({"loss"}) and eval lines ({"eval_loss"}) of a run's metrics.jsonl; bad lines are skipped
    (a run killed mid-write can leave half a line)."""
    train, evals = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)):
            train.append(row)
        if isinstance(row, dict) and isinstance(row.get("eval_loss"), (int, float)):
            evals.append(row)
    return train, evals


def loss_curve_png(run_dir: Path | None) -> tuple[bytes | None, str]:
    """The run's train and eval loss against tokens seen, as PNG bytes; or None and why not."""
    if run_dir is None:
        return None, "No loss curve: the evaluated model is not a training run directory."
    log = Path(run_dir) / "metrics.jsonl"
    if not log.is_file():
        return None, f"No loss curve: {log} does not exist."
    train, evals = read_metrics_log(log)
    if not train and not evals:
        return None, f"No loss curve: {log} has no loss values."
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    x_key = "tokens_seen" if all("tokens_seen" in r for r in train + evals) else "step"
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot([r[x_key] for r in train], [r["loss"] for r in train], label="train loss", lw=1.2)
    if evals:
        ax.plot([r[x_key] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss", lw=1.5)
    ax.set_xlabel("tokens seen" if x_key == "tokens_seen" else "step")
    ax.set_ylabel("loss (answer tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue(), f"Loss curves from {log}."


# ---- writing -----------------------------------------------------------------------------------------------
def write_report(result: dict, out_dir: Path, run_dir: Path | None) -> Path:
    """Write metrics.json, report.md, report.html (and loss_curve.png) to out_dir, replacing it atomically."""
    png, note = loss_curve_png(run_dir)
    result["loss_curve"] = "loss_curve.png" if png else None
    result["loss_curve_note"] = note
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(out_dir, "eval report") from None
        raise
    try:
        if png:
            (tmp / "loss_curve.png").write_bytes(png)
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(to_markdown(result, result["loss_curve"]), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(result, png), encoding="utf-8")
        replace_dir(tmp, out_dir)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(out_dir, "eval report") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir

