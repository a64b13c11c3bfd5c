"""Where a training step's time goes: torch.profiler over a few optimizer steps of `chatforge train`.

Runs the real `chatforge train` setup (default model, default method and settings unless overridden) on the
first MedQuAD pairs, profiles optimizer steps 3..(3+N) (after warm-up) and prints a table of self CPU time
by category, each a share of the profiled time:

  attention   scaled-dot-product attention forward + backward, the mask that feeds it
  matmuls     every GEMM of the body (linear layers, LoRA A/B) forward + backward
  LM head     the fused chunked head + cross entropy (chatforge.train.loss), all of its ops
  casts       dtype conversions and copies (aten::copy_, aten::to, _to_copy) outside the head
  optimizer   AdamW step, gradient clipping, zero_grad
  other       element-wise work: norms, rotary, activations, autograd bookkeeping ...

    .venv/bin/python bench/train_profile.py                       # defaults (LoRA, 1024-token rows)
    .venv/bin/python bench/train_profile.py --max-length 2048 --method full
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDQUAD = ROOT.parent / "shared" / "data" / "medquad" / "medquad_train.jsonl"

RANGES = {"chatforge::lm_head": "LM head", "Optimizer.step": "optimizer", "Optimizer.zero_grad": "optimizer",
          "chatforge::clip_grad": "optimizer"}
ATTENTION = ("attention", "sdpa", "flex", "_safe_softmax", "mask")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm", "mkldnn",
          "onednn")
CASTS = ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous")


def category(event, ranges: dict) -> str:
    parent = event
    while parent is not None:
        for prefix, name in ranges.items():
            if parent.name.startswith(prefix):
                return name
        parent = parent.cpu_parent
    name = event.name.lower()
    # a compiled graph is one event: keep it apart (its insides are fused)
    if "compiled" in name or "torchinductor" in name or name.startswith("graph_"):
        return "compiled graphs"
    parent = event
    while parent is not None:  # an op called from attention (its softmax, its mask) is attention
        if any(k in parent.name.lower() for k in ATTENTION):
            return "attention"
        parent = parent.cpu_parent
    if any(event.name.startswith(k) for k in MATMUL):
        return "matmuls"
    if any(event.name.startswith(k) for k in CASTS):
        return "casts"
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=600)
    p.add_argument("--steps", type=int, default=2, help="optimizer steps profiled (after 2 warm-up steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig overrides, e.g. --set max_length=2048 --set method=full")
    p.add_argument("--attention", choices=["packed", "sdpa"], default="packed",
                   help="sdpa: transformers' masked sdpa over the whole row (before chatforge.train.attention)")
    p.add_argument("--top", type=int, default=15, help="also print the N most expensive ops")
    args = p.parse_args()

    import torch
    from transformers import TrainerCallback

    from chatforge.train.config import TrainConfig
    from chatforge.train.run import fit, setup

    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    data = work / "train.jsonl"
    with open(MEDQUAD, encoding="utf-8") as f, open(data, "w", encoding="utf-8") as out:
        for _, line in zip(range(args.examples), f):
            rec = json.loads(line)
            out.write(json.dumps({"messages": [{"role": "user", "content": rec["question"]},
                                               {"role": "assistant", "content": rec["answer"]}]}) + "\n")
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
    cfg = TrainConfig(data=str(data), out=str(work / "run"), eval_split=0.0, max_steps=2 + args.steps,
                      save_every=1000, **overrides)
    run = setup(cfg)
    if args.attention == "sdpa":
        model = run.trainer.model
        (model.get_base_model() if hasattr(model, "get_base_model") else model).set_attn_implementation("sdpa")
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    tokens = {}

    class Window(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step == 2:
                tokens["start"] = state.num_input_tokens_seen
                prof.start()
            elif state.global_step == 2 + args.steps:
                prof.stop()
                tokens["end"] = state.num_input_tokens_seen

    run.trainer.add_callback(Window())
    fit(run)
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    by_cat = collections.Counter()
    by_op = collections.Counter()
    for e in events:
        by_cat[category(e, RANGES)] += e.self_cpu_time_total
        by_op[e.name] += e.self_cpu_time_total
    total = sum(by_cat.values())
    n_tokens = tokens["end"] - tokens["start"]
    b = run.stats["batching"]
    print(f"\nprofile: {cfg.model}, {cfg.method}, rows of {cfg.max_length}, {b['micro_batch_rows']} rows per forward, "
          f"{b['tokens_per_step']} tokens/step, precision {run.precision}, compile {cfg.compile}, "
          f"attention {args.attention}, {torch.get_num_threads()} threads; {args.steps} steps, {n_tokens} real tokens, "
          f"{total / 1e6:.1f} s profiled ({n_tokens / (total / 1e6):.0f} tokens/s under the profiler)\n")
    print("| part | share of step time |\n|---|---|")
    for name in ("attention", "matmuls", "LM head", "casts", "optimizer", "compiled graphs", "other"):
        if by_cat[name]:
            print(f"| {name} | {100 * by_cat[name] / total:.1f} % |")
    print(f"\ntop {args.top} ops by self CPU time:", file=sys.stderr)
    for name, t in by_op.most_common(args.top):
        print(f"  {100 * t / total:5.1f} %  {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
