"""Training throughput: `chatforge train` vs TRL's SFTTrainer on the same model, data and token budget.

Both train LoRA r=16 (alpha 32) on all linear layers of the default model, in the precision chatforge's auto picks (bf16
where its matmuls are native and fast, else fp32), max length 512, on the same
MedQuAD conversations (question -> user, answer -> assistant; only examples that fit in 512 tokens, so neither
side truncates or drops), with the same tokens per optimizer step and the same learning rate. TRL is otherwise
at its defaults (no packing, batch 8 padded to the longest, gradient checkpointing on, loss on all tokens).
Each runs in its own child process, one after the other; each reports
  - tokens/s: real (non-padding) input tokens trained / training-loop time (steps after the first; the first
    step includes one-off warm-up and is reported separately),
  - peak RSS of its process during training,
  - eval loss after training: mean cross entropy over the ASSISTANT tokens of the same held-out conversations,
    computed by the same function for both, in fp32.

    .venv/bin/python bench/train_throughput.py            # ~5-10 minutes on 2 CPU cores
    .venv/bin/python bench/train_throughput.py --steps 4  # quicker, noisier
    .venv/bin/python bench/train_throughput.py --compile  # also chatforge train --compile
    .venv/bin/python bench/train_throughput.py --max-length 2048 --batch-tokens 8192 --no-trl --sdpa
                                                    # long packed rows; --sdpa: also transformers' masked sdpa
    .venv/bin/python bench/train_throughput.py --max-length 1024 --batch-tokens 2048 --no-trl --vs full:method=full
                                                    # another config in the same run (here full fine-tuning)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDQUAD = ROOT.parent / "shared" / "data" / "medquad" / "medquad_train.jsonl"
TRL_BATCH = 8  # TRL's (TrainingArguments') default per-device batch size
LR = 2e-4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps for each trainer")
    p.add_argument("--batch-tokens", type=int, default=4096, help="tokens per optimizer step")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--train-examples", type=int, default=600)
    p.add_argument("--eval-examples", type=int, default=48)
    p.add_argument("--data", default=str(MEDQUAD))
    p.add_argument("--compile", action="store_true", help="also run chatforge with --compile")
    p.add_argument("--sdpa", action="store_true", help="also run chatforge with transformers' sdpa attention over "
                                                       "whole rows (a block-diagonal mask) instead of packed attention")
    p.add_argument("--no-trl", action="store_true", help="chatforge only")
    p.add_argument("--model", default="smollm2-135m-instruct", help="chatforge's model (TRL always trains the "
                                                                     "default one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="chatforge TrainConfig overrides, e.g. --set method=full")
    p.add_argument("--vs", action="append", default=[], metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
                   help="also run chatforge with these TrainConfig overrides, in the same run, e.g. "
                        "--vs full:method=full --vs gemma:model=gemma3-270m (the ratio to chatforge is printed)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = (trl_worker if args.worker == "trl" else chatforge_worker)(args, Path(args.workdir))
        (Path(args.workdir) / f"{args.worker}.json").write_text(json.dumps(result))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    mean_len, padding = write_data(args, workdir)
    # chatforge packs rows of max_length: its real tokens per step are batch_tokens minus the packing padding.
    # TRL keeps its batch of 8 examples; its accumulation gives about the same tokens per step, and its step
    # count the same total tokens (integer batches make both approximate: the report prints the real counts).
    cf_tokens = args.batch_tokens * (1 - padding)
    accum = max(1, round(cf_tokens / (TRL_BATCH * mean_len)))
    trl_steps = max(1, round(args.steps * cf_tokens / (TRL_BATCH * accum * mean_len)))
    results = {}
    runs = ([("chatforge", args.steps)] + [("chatforge-sdpa", args.steps)] * args.sdpa
            + [("chatforge-compile", args.steps)] * args.compile + [("trl", trl_steps)] * (not args.no_trl))
    variants = dict(v.partition(":")[::2] for v in args.vs)  # label -> "k=v,k=v"
    runs[1:1] = [(f"chatforge-{label}", args.steps) for label in variants]
    for name, steps in runs:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--steps", str(steps),
               "--batch-tokens", str(args.batch_tokens), "--max-length", str(args.max_length), "--model", args.model]
        extra = variants.get(name.removeprefix("chatforge-"), "") if name.startswith("chatforge-") else ""
        cmd += [a for kv in args.set + [kv for kv in extra.split(",") if kv] for a in ("--set", kv)]
        subprocess.run(cmd, check=True, env={**os.environ, "BENCH_TRL_ACCUM": str(accum)})
        results[name] = json.loads((workdir / f"{name}.json").read_text())
    report(results, args)


def write_data(args, workdir: Path) -> tuple[float, float]:
    """MedQuAD -> chat JSONL (train / eval) of examples that fit in max_length.
    Returns the mean train example length and chatforge's packing padding share."""
    from chatforge.data.encode import encode_chat
    from chatforge.data.pack import pack, padding_share
    from chatforge.models.load import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    convs, examples = [], []
    for line in open(args.data, encoding="utf-8"):
        rec = json.loads(line)
        msgs = [{"role": "user", "content": rec["question"]}, {"role": "assistant", "content": rec["answer"]}]
        example = encode_chat(tok, msgs)
        if len(example) <= args.max_length:
            convs.append(msgs)
            examples.append(example)
        if len(convs) == args.train_examples + args.eval_examples:
            break
    train, held = convs[:args.train_examples], convs[args.train_examples:]
    for name, rows in (("train", train), ("eval", held)):
        with open(workdir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in rows)
    train_examples = examples[:len(train)]
    mean_len = sum(map(len, train_examples)) / len(train_examples)
    return mean_len, padding_share(pack(train_examples, args.max_length), args.max_length)


class StepTimer:
    """Times the training loop (evaluation and the final save excluded) and records peak RSS."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                self.marks = [(time.perf_counter(), state.num_input_tokens_seen)]

            def on_step_end(self, args, state, control, **kw):
                self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

            def on_train_end(self, args, state, control, **kw):
                self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            def summary(self) -> dict:
                (t0, n0), (t1, n1), (tn, nn) = self.marks[0], self.marks[1], self.marks[-1]
                return {"tokens": nn - n0, "steps": len(self.marks) - 1, "seconds": tn - t0,
                        "tokens_per_step": (nn - n0) / (len(self.marks) - 1),
                        "first_step_s": t1 - t0, "tokens_per_s": (nn - n1) / max(tn - t1, 1e-9),  # (0: one step)
                        "tokens_per_s_all_steps": (nn - n0) / (tn - t0), "peak_rss_mb": self.peak_rss_mb}

        return _Timer()


def assistant_eval_loss(model, tokenizer, path: Path) -> float:
    """Mean cross entropy over the assistant tokens (chatforge's labels) of the eval conversations, fp32."""
    import torch
    import torch.nn.functional as F

    from chatforge.data.encode import IGNORE, encode_chat
    from chatforge.data.pack import collate

    convs = [json.loads(line)["messages"] for line in open(path, encoding="utf-8")]
    examples = [encode_chat(tokenizer, m) for m in convs]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), 8):
            batch = collate(examples[i:i + 8], tokenizer.pad_token_id)
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()  # (B, T, V)
            total += F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), reduction="sum",
                                     ignore_index=IGNORE).item()
            count += int((labels[:, 1:] != IGNORE).sum())
    return total / count


def chatforge_worker(args, workdir: Path) -> dict:
    from chatforge.models.load import load_model
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import fit, save, setup

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = {"true": True, "false": False}.get(v.lower(), v)
        for kind in (int, float):
            try:
                overrides[k] = kind(v)
                break
            except ValueError:
                pass
    values = dict(model=args.model, data=str(workdir / "train.jsonl"), eval_split=0.0,
                  max_length=args.max_length, batch_tokens=args.batch_tokens, max_steps=args.steps, lr=LR,
                  lora_rank=16, save_every=args.steps, out=str(workdir / f"{args.worker}-run"),
                  compile=args.worker == "chatforge-compile")
    cfg = TrainConfig(**{**values, **overrides})  # --set / --vs may override any of these
    run = setup(cfg)
    if args.worker == "chatforge-sdpa":
        model = run.trainer.model
        (model.get_base_model() if hasattr(model, "get_base_model") else model).set_attn_implementation("sdpa")
    timer = StepTimer()
    run.trainer.add_callback(timer)
    fit(run)
    save(run)
    result = timer.summary()
    result["precision"] = run.precision
    result["mfu"] = result["tokens_per_s"] * run.flops_per_token / run.peak_flops
    loaded = load_model(str(run.dir), dtype="float32")
    result["eval_loss"] = assistant_eval_loss(loaded.model, loaded.tokenizer, workdir / "eval.jsonl")
    return result


def trl_worker(args, workdir: Path) -> dict:
    import datasets
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from chatforge.models.load import cpu_prefers_bf16, load_tokenizer, quiet_transformers, set_threads
    from chatforge.models.resolve import resolve

    quiet_transformers()
    set_threads()
    bf16 = cpu_prefers_bf16()  # the precision chatforge's auto picks here, so both run the same arithmetic
    model_dir = str(resolve("smollm2-135m-instruct").path)
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    accum = int(os.environ["BENCH_TRL_ACCUM"])  # about the same tokens per optimizer step as chatforge
    config = SFTConfig(output_dir=str(workdir / "trl-run"), max_steps=args.steps, per_device_train_batch_size=TRL_BATCH,
                       gradient_accumulation_steps=accum, learning_rate=LR, max_length=args.max_length, bf16=bf16,
                       use_cpu=True, report_to="none", include_num_input_tokens_seen="non_padding", seed=42)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    train = datasets.load_dataset("json", data_files=str(workdir / "train.jsonl"))["train"]
    trainer = SFTTrainer(model=model_dir, args=config, train_dataset=train, processing_class=tokenizer,
                         peft_config=lora)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    result = timer.summary()
    result["precision"] = "bf16" if bf16 else "fp32"
    result["gradient_accumulation"] = accum
    result["eval_loss"] = assistant_eval_loss(trainer.model.float(), tokenizer, workdir / "eval.jsonl")
    return result


def report(results: dict, args) -> None:
    trl = results.get("trl")
    ours = [name for name in results if name != "trl"]  # chatforge [, chatforge-sdpa, chatforge-compile]
    rows = [("tokens/s (steady)", "tokens_per_s", "{:.0f}"), ("tokens/s (all steps)", "tokens_per_s_all_steps",
                                                              "{:.0f}"),
            ("first step (s)", "first_step_s", "{:.1f}"), ("tokens trained", "tokens", "{:,}"),
            ("optimizer steps", "steps", "{}"), ("tokens per step", "tokens_per_step", "{:.0f}"),
            ("peak RSS (MiB)", "peak_rss_mb", "{:.0f}"),
            ("eval loss (assistant tokens)", "eval_loss", "{:.4f}")]
    print(f"\ntrain throughput: {args.model} {' '.join(args.set + args.vs)}, LoRA r=16 all linear, "
          f"max length {args.max_length}, "
          f"{args.batch_tokens} tokens/step, lr {LR:g}, {os.cpu_count()} CPU threads\n")
    print(f"{'':30}" + "".join(f" {name:>18}" for name in ours) + f" {'TRL SFTTrainer':>15}" * bool(trl))
    for label, key, fmt in rows:
        print(f"{label:30}" + "".join(f" {fmt.format(results[n][key]):>18}" for n in ours)
              + (f" {fmt.format(trl[key]):>15}" if trl else ""))
    print(f"{'MFU (steady)':30}" + "".join(f" {100 * results[n]['mfu']:>17.1f}%" for n in ours))
    for name in ours[1:]:
        a, b = results[name], results["chatforge"]
        step_a, step_b = ((r["seconds"] - r["first_step_s"]) / max(1, r["steps"] - 1) for r in (a, b))
        print(f"\n{name} vs chatforge: {a['tokens_per_s'] / b['tokens_per_s']:.2f}x steady tokens/s, "
              f"{step_a / step_b:.2f}x steady step time")
    for name in ours * bool(trl):
        cf = results[name]
        print(f"\n{name} vs TRL: speed-up (steady tokens/s) {cf['tokens_per_s'] / trl['tokens_per_s']:.2f}x   "
              f"RSS ratio {cf['peak_rss_mb'] / trl['peak_rss_mb']:.2f}   "
              f"eval loss {cf['eval_loss']:.4f} vs {trl['eval_loss']:.4f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
