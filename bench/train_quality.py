"""Quality per minute: two training recipes on the same MedQuAD pairs, scored on answers to held-out questions.

The first --train pairs of ../shared/data/medquad/medquad_train.jsonl train; the next --heldout pairs of the same
file (questions the runs never see) are held out. Each recipe is a `chatforge train` run (in its own process,
one after the other, same data, same epochs); then `chatforge eval B --baseline A` answers the held-out
questions with both models (greedy) and scores the answers against the references (token F1, BLEU, ROUGE-L
with paired bootstrap intervals). Wall time and held-out loss are reported per run.

With --plain, a third model comes from a plain PyTorch + PEFT LoRA loop (no chatforge training code: the chat
template's tokens, assistant-only labels, dynamically padded micro-batches of <= --plain-tokens tokens, one
optimizer step each, AdamW at a constant --plain-lr, bf16 autocast where chatforge would use it) on the same training
examples as the runs (their held-out split excluded), given recipe B's wall time; B is scored against it too.

    .venv/bin/python bench/train_quality.py                 # defaults vs the previous defaults, 1 epoch
    .venv/bin/python bench/train_quality.py --a "--batch-tokens 8192 --lr 2e-4" --b "" --epochs 1
    .venv/bin/python bench/train_quality.py --epochs auto --a "--epochs 6 --lr 2e-4" --b "" --plain  # the old defaults
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
    p.add_argument("--plain", action="store_true", help="also train the plain PyTorch loop for B's wall time")
    p.add_argument("--plain-lr", type=float, default=3e-4)
    p.add_argument("--plain-tokens", type=int, default=2048, help="tokens per step of the plain loop")
    p.add_argument("--work", type=Path, help="a previous run's work directory: recipes it completed are reused")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    records = [json.loads(line) for _, line in zip(range(args.train + args.heldout), open(MEDQUAD, encoding="utf-8"))]
    if not (work / "train.jsonl").exists():
        write(work / "train.jsonl", records[:args.train])
        write(work / "heldout.jsonl", records[args.train:])
    cli = [sys.executable, "-m", "chatforge"]
    done = work / "runs.json"  # the recipes measured so far in this work directory
    runs = json.loads(done.read_text()) if done.exists() else {}
    for name, flags in (("A", args.a), ("B", args.b)):
        out = work / name
        if name in runs:
            continue
        t = time.perf_counter()
        subprocess.run(cli + ["train", "--data", str(work / "train.jsonl"), "--epochs", args.epochs, "--out",
                              str(out), "--no-tensorboard", *shlex.split(flags)], check=True,
                       stdout=subprocess.DEVNULL)
        info = json.loads((out / "run.json").read_text())
        runs[name] = {"flags": flags or "(defaults)", "wall_s": round(time.perf_counter() - t, 1),
                      "steps": info["steps"], "eval_loss": info.get("eval_loss"),
                      "tokens_per_sec": info["tokens_per_sec"], "mfu": info.get("mfu")}
        done.write_text(json.dumps(runs))
    if args.plain and "P" not in runs:
        import yaml

        conf = yaml.safe_load((work / "B" / "config.yaml").read_text())  # what recipe B ran with
        runs["P"] = plain_loop(work / "train.jsonl", work / "P", seconds=runs["B"]["wall_s"], lr=args.plain_lr,
                               step_tokens=args.plain_tokens, eval_split=conf["eval_split"], seed=conf["seed"],
                               max_length=conf["max_length"])
        done.write_text(json.dumps(runs))
    scores = {}
    for baseline in ("A", "P") if args.plain else ("A",):
        report = work / f"eval-{baseline}" / "metrics.json"
        if report.exists():  # scored in an earlier call on this work directory
            scores[f"B vs {baseline}"] = json.loads(report.read_text())
            continue
        proc = subprocess.run(cli + ["eval", str(work / "B"), "--baseline", str(work / baseline), "--data",
                                     str(work / "heldout.jsonl"), "--max-tokens", str(args.max_tokens), "--json",
                                     "--out", str(work / f"eval-{baseline}")], check=True, capture_output=True,
                              text=True)
        scores[f"B vs {baseline}"] = json.loads(proc.stdout)
    print(f"\nquality: {args.train} MedQuAD pairs, {args.epochs} epoch(s), {args.heldout} held-out questions\n")
    for name, r in runs.items():
        loss = f"{r['eval_loss']:.4f}" if r.get("eval_loss") is not None else "-"
        print(f"{name}: {r['flags']:<32} {r['steps']:>4} steps  {r['wall_s']:>6.0f} s  "
              f"{r['tokens_per_sec']:>6.0f} tokens/s  held-out loss {loss}")
    print(json.dumps({"runs": runs, "eval": scores}, indent=1)[:12000])


def plain_loop(data: Path, out: Path, *, seconds: float, lr: float, step_tokens: int, eval_split: float,
               seed: int, max_length: int) -> dict:
    """The reference a PyTorch user would write: PEFT LoRA (r 16, alpha 32, every linear layer), one AdamW step
    per padded micro-batch of <= step_tokens tokens, constant lr, until `seconds` of wall time are spent."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatforge.models.load import cpu_prefers_bf16
    from chatforge.models.resolve import resolve
    from chatforge.train.run import held_out

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model_dir = str(resolve("smollm2-135m-instruct").path)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    convs = [json.loads(line)["messages"] for line in open(data, encoding="utf-8")]
    skip = held_out(len(convs), eval_split, seed)  # the chatforge runs' held-out split: the same examples train
    examples = []
    for i, msgs in enumerate(convs):
        if i in skip:
            continue
        prompt = tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=True, return_dict=False)
        ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)[:max_length]
        examples.append((ids, [-100] * len(prompt) + ids[len(prompt):]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    bf16 = cpu_prefers_bf16()  # chatforge's own rule, so both sides use the faster precision here
    rng, steps, tokens = random.Random(seed), 0, 0
    model.train()
    while time.perf_counter() - t0 < seconds:
        rng.shuffle(examples)
        batch: list = []
        for ex in examples + [None]:  # None flushes the last micro-batch of the epoch
            width = max([len(e[0]) for e in batch] + [len(ex[0]) if ex else 0])
            if ex is not None and (len(batch) + 1) * width <= step_tokens:
                batch.append(ex)
                continue
            if batch and time.perf_counter() - t0 < seconds:
                w = max(len(e[0]) for e in batch)
                ids = torch.tensor([e[0] + [tok.pad_token_id] * (w - len(e[0])) for e in batch])
                labels = torch.tensor([e[1] + [-100] * (w - len(e[1])) for e in batch])
                mask = torch.tensor([[1] * len(e[0]) + [0] * (w - len(e[0])) for e in batch])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                opt.step()
                opt.zero_grad()
                steps, tokens = steps + 1, tokens + int(mask.sum())
            batch = [ex] if ex is not None else []
    wall = time.perf_counter() - t0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"flags": f"plain loop, lr {lr:g}, {step_tokens} tokens/step", "wall_s": round(wall, 1),
            "steps": steps, "eval_loss": None, "tokens_per_sec": tokens / wall, "mfu": None}


if __name__ == "__main__":
    main()
