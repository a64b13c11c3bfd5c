"""DPO throughput: `chatforge train --method dpo` vs TRL's DPOTrainer on the same model, pairs and batch.

Both train LoRA r=16 (alpha 32) on all linear layers of the default model, in the precision chatforge's auto picks (bf16
where its matmuls are native and fast, else fp32), sigmoid DPO with beta 0.1, the
reference being the same weights with the adapters disabled, on the same pairs (the bundled Lumora preference
pairs, TRL's conversational prompt/chosen/rejected format, read by both), max length 256 (nothing is truncated),
the same pairs per optimizer step (TRL: its default batch of 8 x gradient accumulation; chatforge: its token
budget gives the same count) and the same learning rate. TRL is otherwise at its defaults. chatforge runs twice:
at its defaults (a run this short does not compile) and with --compile (what a run of >= 250k planned tokens
gets by default). Each trainer runs in its own child process, one after the other, and reports
  - tokens/s: real (non-padding) tokens of chosen + rejected sequences / training-loop time (steps after the
    first; the first step includes one-off warm-up: compiling, for --compile; inductor's on-disk cache makes
    later runs compile quicker),
  - peak RSS of its process,
  - the held-out DPO loss and preference accuracy (reward accuracy) after training, over the held-out pairs,
    computed by the same function for both, in fp32.

    .venv/bin/python bench/dpo_throughput.py             # ~7 minutes on 2 CPU cores
    .venv/bin/python bench/dpo_throughput.py --steps 4   # quicker, noisier
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
PAIRS = ROOT / "examples" / "data" / "lumora_pairs_train.jsonl"
HELDOUT = ROOT / "examples" / "data" / "lumora_pairs_heldout.jsonl"
TRL_BATCH = 8  # TRL's (TrainingArguments') default per-device batch size
LR = 5e-4
BETA = 0.1
WORKERS = ("chatforge", "chatforge-compile", "trl")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="optimizer steps for each trainer")
    p.add_argument("--pairs-per-step", type=int, default=16, help="a multiple of 8 (TRL's batch)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--heldout-pairs", type=int, default=40)
    p.add_argument("--model", default="smollm2-135m-instruct", help="any chatforge model argument")
    p.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = trl_worker(args, Path(args.workdir)) if args.worker == "trl" else \
            chatforge_worker(args, Path(args.workdir), compile=args.worker == "chatforge-compile")
        (Path(args.workdir) / f"{args.worker}.json").write_text(json.dumps(result))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    write_data(args, workdir)
    results = {}
    for name in WORKERS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--steps", str(args.steps),
               "--pairs-per-step", str(args.pairs_per_step), "--max-length", str(args.max_length),
               "--heldout-pairs", str(args.heldout_pairs), "--model", args.model]
        subprocess.run(cmd, check=True)
        results[name] = json.loads((workdir / f"{name}.json").read_text())
    report(results, args)


def _trl_row(rec: dict) -> dict:
    return {"prompt": rec["input"]["messages"], "chosen": rec["preferred_output"],
            "rejected": rec["non_preferred_output"]}


def write_data(args, workdir: Path) -> None:
    """The bundled pairs in TRL's conversational format (both trainers read this file)."""
    for src, name, limit in ((PAIRS, "train", None), (HELDOUT, "heldout", args.heldout_pairs)):
        rows = [_trl_row(json.loads(line)) for line in src.read_text(encoding="utf-8").splitlines()][:limit]
        (workdir / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                               encoding="utf-8")


class StepTimer:
    """Times the training loop and records peak RSS; tokens from the Trainer's num_input_tokens_seen."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                self.marks = [(time.perf_counter(), state.num_input_tokens_seen)]

            def on_step_end(self, args, state, control, **kw):
                self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

            def on_train_end(self, args, state, control, **kw):
                self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                self.losses = [h["loss"] for h in state.log_history if "loss" in h]

            def summary(self) -> dict:
                (t0, n0), (t1, n1), (tn, nn) = self.marks[0], self.marks[1], self.marks[-1]
                return {"tokens": nn - n0, "steps": len(self.marks) - 1, "seconds": tn - t0,
                        "tokens_per_step": (nn - n0) / (len(self.marks) - 1), "first_step_s": t1 - t0,
                        "tokens_per_s": (nn - n1) / (tn - t1), "tokens_per_s_all_steps": (nn - n0) / (tn - t0),
                        "peak_rss_mb": self.peak_rss_mb, "final_train_loss": self.losses[-1]}

        return _Timer()


def heldout_dpo(peft_model, tokenizer, path: Path) -> dict:
    """Mean sigmoid-DPO loss and reward accuracy over the held-out pairs: policy = the trained model, reference =
    its adapters disabled; summed log-probs of the answer tokens (chatforge's labels), full logits, fp32."""
    import torch
    import torch.nn.functional as F

    from chatforge.data.preference import prepare_preferences

    pairs = prepare_preferences(path, tokenizer).examples
    peft_model = peft_model.float().eval()

    def logp(model, example) -> float:
        ids = torch.tensor([example.input_ids])
        labels = torch.tensor(example.labels[1:])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        mask = labels != -100
        return -F.cross_entropy(logits[mask], labels[mask], reduction="sum").item()

    losses, correct = [], []
    for p in pairs:
        pc, pr = logp(peft_model, p.chosen), logp(peft_model, p.rejected)
        with peft_model.disable_adapter():
            rc, rr = logp(peft_model, p.chosen), logp(peft_model, p.rejected)
        margin = BETA * ((pc - rc) - (pr - rr))
        losses.append(-F.logsigmoid(torch.tensor(margin)).item())
        correct.append(margin > 0)
    return {"heldout_dpo_loss": sum(losses) / len(losses), "heldout_reward_accuracy": sum(correct) / len(correct)}


def chatforge_worker(args, workdir: Path, compile: bool) -> dict:
    from chatforge.models.resolve import resolve  # first: chatforge quiets torchao's import-time warnings
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import fit, save, setup
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = workdir / "train.jsonl"
    mean_pair = _mean_pair_tokens(data, args.max_length, args.model)
    # chatforge's batch is a token budget: pairs per micro-batch = micro_batch_tokens // mean pair length
    budget = int(args.pairs_per_step * mean_pair) + 1
    cfg = TrainConfig(model=args.model, data=str(data), method="dpo", beta=BETA, eval_split=0.0,
                      max_length=args.max_length,
                      micro_batch_tokens=budget, batch_tokens=budget, max_steps=args.steps, lr=LR, lora_rank=16,
                      save_every=args.steps, tensorboard=False, compile=compile,
                      out=str(workdir / ("chatforge-compile-run" if compile else "chatforge-run")))
    run = setup(cfg)
    timer = StepTimer()
    run.trainer.add_callback(timer)
    fit(run)
    save(run)
    result = timer.summary()
    result["precision"] = run.precision
    result["pairs_per_step"] = run.stats["batching"]["pairs_per_step"]
    base = AutoModelForCausalLM.from_pretrained(str(resolve(cfg.model).path), dtype="float32")
    model = PeftModel.from_pretrained(base, str(run.dir / "final"))
    result.update(heldout_dpo(model, run.trainer.processing_class, workdir / "heldout.jsonl"))
    return result


def _mean_pair_tokens(path: Path, max_length: int, model: str) -> float:
    from chatforge.data.preference import prepare_preferences
    from chatforge.models.load import load_tokenizer

    pairs = prepare_preferences(path, load_tokenizer(model), max_length=max_length).examples
    return sum(len(p) for p in pairs) / len(pairs)


def trl_worker(args, workdir: Path) -> dict:
    import datasets
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from chatforge.models.load import cpu_prefers_bf16, load_tokenizer, quiet_transformers, set_threads
    from chatforge.models.resolve import resolve

    quiet_transformers()
    set_threads()
    bf16 = cpu_prefers_bf16()  # the precision chatforge's auto picks here, so both run the same arithmetic
    model_dir = str(resolve(args.model).path)
    tokenizer = load_tokenizer(args.model)
    accum = max(1, args.pairs_per_step // TRL_BATCH)
    config = DPOConfig(output_dir=str(workdir / "trl-run"), max_steps=args.steps, per_device_train_batch_size=TRL_BATCH,
                       gradient_accumulation_steps=accum, learning_rate=LR, max_length=args.max_length, bf16=bf16,
                       beta=BETA, use_cpu=True, report_to="none", include_num_input_tokens_seen="non_padding",
                       seed=42, logging_steps=1, save_strategy="no")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    train = datasets.load_dataset("json", data_files=str(workdir / "train.jsonl"))["train"]
    trainer = DPOTrainer(model=model_dir, args=config, train_dataset=train, processing_class=tokenizer,
                         peft_config=lora)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    result = timer.summary()
    result["precision"] = "bf16" if bf16 else "fp32"
    result["pairs_per_step"] = TRL_BATCH * accum
    result.update(heldout_dpo(trainer.model, tokenizer, workdir / "heldout.jsonl"))
    return result


def report(results: dict, args) -> None:
    rows = [("tokens/s (steady)", "tokens_per_s", "{:.0f}"),
            ("tokens/s (all steps)", "tokens_per_s_all_steps", "{:.0f}"),
            ("first step (s)", "first_step_s", "{:.1f}"), ("tokens trained", "tokens", "{:,}"),
            ("optimizer steps", "steps", "{}"), ("pairs per step", "pairs_per_step", "{}"),
            ("peak RSS (MiB)", "peak_rss_mb", "{:.0f}"), ("final train loss", "final_train_loss", "{:.4f}"),
            ("held-out DPO loss", "heldout_dpo_loss", "{:.4f}"),
            ("held-out reward accuracy", "heldout_reward_accuracy", "{:.3f}")]
    print(f"\nDPO throughput: {args.model}, LoRA r=16 all linear, beta {BETA}, max length {args.max_length}, "
          f"lr {LR:g}, {os.cpu_count()} CPU threads\n")
    print(f"{'':28} {'chatforge':>12} {'--compile':>12} {'TRL DPOTrainer':>15}")
    for label, key, fmt in rows:
        print(f"{label:28} " + " ".join(f"{fmt.format(results[w][key]):>{12 if w != 'trl' else 15}}" for w in WORKERS))
    trl = results["trl"]
    for name in ("chatforge", "chatforge-compile"):
        cf = results[name]
        print(f"\n{name} vs TRL: speed-up (steady tokens/s) {cf['tokens_per_s'] / trl['tokens_per_s']:.2f}x   "
              f"RSS ratio {cf['peak_rss_mb'] / trl['peak_rss_mb']:.2f}   final train loss "
              f"{cf['final_train_loss']:.4f} vs {trl['final_train_loss']:.4f}   held-out DPO loss "
              f"{cf['heldout_dpo_loss']:.4f} vs {trl['heldout_dpo_loss']:.4f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
