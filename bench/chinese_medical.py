"""Real Chinese data on the embedded multilingual model: gemma3-270m (Gemma 3 270M base) fine-tuned with LoRA on
a few hundred rows of ../shared/data/chinese_medical_dialogue (real internal-medicine questions and doctors'
answers, MIT), then base vs tuned on held-out rows of the same file with character metrics (token F1 and
ROUGE-L on characters, BLEU with sacrebleu's zh tokenizer, chrF) and the stop rate.

The CSV has its own columns (department,title,ask,answer): chatforge reads it through the column mapping
`question=title+ask answer=answer system=department`, the same as on the command line.

Also measured, for the 262,144-token vocabulary: the peak RSS of a LoRA `chatforge train` process at the
default settings (8192 tokens per step, 2048 per micro-batch, max length 1024) and whether the fused LM head
+ loss was used (train/loss.py), from the run's own record.

    .venv/bin/python bench/chinese_medical.py                 # ~6-10 minutes on 2 CPU cores
    .venv/bin/python bench/chinese_medical.py --train-rows 100 --steps 4 --eval-rows 8   # a quick try
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT.parent / "shared" / "data" / "chinese_medical_dialogue" / "internal_medicine_train.csv"
COLUMNS = ["question=title+ask", "answer=answer", "system=department"]
METRICS = [("f1", "character F1"), ("rougeL", "ROUGE-L (characters)"), ("bleu", "BLEU (zh tokenizer)"),
           ("chrf", "chrF"), ("stop_rate", "stop rate (%)"), ("perplexity", "answer perplexity")]


def _split(rows: int, held: int, work: Path) -> tuple[Path, Path]:
    """The first `rows` rows for training and the last `held` rows held out (two CSV files, same columns)."""
    with CSV.open(encoding="utf-8", newline="") as f:
        data = list(csv.DictReader(f))
    out = []
    for name, part in (("train.csv", data[:rows]), ("heldout.csv", data[-held:])):
        path = work / name
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(data[0]))
            w.writeheader()
            w.writerows(part)
        out.append(path)
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-rows", type=int, default=300)
    p.add_argument("--eval-rows", type=int, default=40)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of the LoRA run")
    p.add_argument("--max-tokens", type=int, default=160, help="most new tokens per held-out answer")
    args = p.parse_args()
    if not CSV.is_file():
        sys.exit(f"{CSV} is not here (../shared/data is absent)")
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import evaluate
    from chatforge.models.resolve import resolve

    base = str(resolve("gemma3-270m").path)  # assembled + converted once (CHATFORGE_HOME)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_csv, held_csv = _split(args.train_rows, args.eval_rows, work)
        run = work / "run"
        cmd = [sys.executable, "-m", "chatforge", "train", "--model", base, "--data", str(train_csv),
               "--columns", *COLUMNS, "--max-steps", str(args.steps), "--eval-split", "0", "--out", str(run)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        train_s = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(f"training failed:\n{proc.stderr[-3000:]}")
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        info = json.loads((run / "run.json").read_text(encoding="utf-8"))
        result = evaluate(EvalConfig(model=str(run), data=str(held_csv), columns=COLUMNS, baseline=base,
                                     max_tokens=args.max_tokens, out=str(work / "eval"), bootstrap=200))
    m = result["metrics"]
    print(f"\ngemma3-270m, LoRA r=16 at the default settings, {args.steps} steps on {args.train_rows} rows of "
          f"chinese_medical_dialogue ({train_s:.0f}s, peak RSS of the training process {peak_gb:.2f} GiB, "
          f"fused LM head + loss: {info.get('fused_head', 'unknown')}); held-out: {args.eval_rows} rows\n")
    print("| held-out metric | base | tuned |\n|---|---:|---:|")
    for key, label in METRICS:
        b, tu = m["base"][key]["value"], m["tuned"][key]["value"]
        print(f"| {label} | {b if b is not None else '-'} | {tu if tu is not None else '-'} |")
    broken = sum("\ufffd" in ex["tuned"]["answer"] for ex in result["examples"])
    print(f"\ntuned answers with U+FFFD: {broken}")


if __name__ == "__main__":
    main()
