"""Quality per minute: two training recipes on the same MedQuAD pairs, scored on answers to held-out questions.

The first --train pairs of ../shared/data/medquad/medquad_train.jsonl train; the next --heldout pairs of the same
file (questions the runs never see) are held out. Each recipe is a `chatforge train` run (in its own process,
one after the other, same data, same epochs); then `chatforge eval B --baseline A` answers the held-out
questions with both models (greedy) and scores the answers against the references (token F1, BLEU, ROUGE-L
with paired bootstrap intervals). Wall time and held-out loss are reported per run.

    .venv/bin/python bench/train_quality.py                 # defaults vs the previous defaults, 1 epoch
    .venv/bin/python bench/train_quality.py --a "--batch-tokens 8192 --lr 2e-4" --b "" --epochs 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDQUAD = ROOT.parent / "shared" / "data" / "medquad" / "medquad_train.jsonl"


def write(path: Path, records) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            msgs = [{"role": "user", "content": rec["question"]}, {"role": "assistant", "content": rec["answer"]}]
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--heldout", type=int, default=40)
    p.add_argument("--epochs", default="1")
    p.add_argument("--a", default="--batch-tokens 8192 --lr 2e-4", help="recipe A: extra `chatforge train` flags")
    p.add_argument("--b", default="", help="recipe B: extra flags (default: none, i.e. the defaults)")
    p.add_argument("--max-tokens", type=int, default=128, help="most tokens per generated answer")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    records = [json.loads(line) for _, line in zip(range(args.train + args.heldout), open(MEDQUAD, encoding="utf-8"))]
    write(work / "train.jsonl", records[:args.train])
    write(work / "heldout.jsonl", records[args.train:])
    cli = [sys.executable, "-m", "chatforge"]
    runs = {}
    for name, flags in (("A", args.a), ("B", args.b)):
        out = work / name
        t = time.perf_counter()
        subprocess.run(cli + ["train", "--data", str(work / "train.jsonl"), "--epochs", args.epochs, "--out",
                              str(out), "--no-tensorboard", *shlex.split(flags)], check=True,
                       stdout=subprocess.DEVNULL)
        info = json.loads((out / "run.json").read_text())
        runs[name] = {"flags": flags or "(defaults)", "wall_s": round(time.perf_counter() - t, 1),
                      "steps": info["steps"], "eval_loss": info.get("eval_loss"),
                      "tokens_per_sec": info["tokens_per_sec"], "mfu": info.get("mfu")}
    proc = subprocess.run(cli + ["eval", str(work / "B"), "--baseline", str(work / "A"), "--data",
                                 str(work / "heldout.jsonl"), "--max-tokens", str(args.max_tokens), "--json",
                                 "--out", str(work / "eval")], check=True, capture_output=True, text=True)
    scores = json.loads(proc.stdout)
    print(f"\nquality: {args.train} MedQuAD pairs, {args.epochs} epoch(s), {args.heldout} held-out questions\n")
    for name, r in runs.items():
        print(f"{name}: {r['flags']:<32} {r['steps']:>4} steps  {r['wall_s']:>6.0f} s  "
              f"{r['tokens_per_sec']:>6.0f} tokens/s  held-out loss {r['eval_loss']:.4f}")
    print(json.dumps({"runs": runs, "eval": scores}, indent=1)[:6000])


if __name__ == "__main__":
    main()
