"""A busy machine: training and decoding tokens/s, idle vs one core taken by a CPU-bound competitor.

For each thread policy, in ONE run (each measurement in its own child process, one after the other):
  - train:  forward + backward + AdamW step of the default model (fp32, full fine-tuning, 1 x 256 tokens),
            tokens/s over the steps after a warm-up step;
  - decode: single-stream greedy decoding with chatforge's engine (64 new tokens), tokens/s after a warm-up.
Each is measured idle, then with a competitor: a `while True: pass` process pinned to core 0 that starts before
chatforge does ("busy"), and one that starts after chatforge's warm-up, when its thread count is already chosen
("late": the count must follow the load while the loop runs, chatforge.threads.Follow).

Policies: `cores` = one thread per core (chatforge before issue #17), `auto` = chatforge's default now
(available cores minus those other processes keep busy, chatforge/threads.py).
Target: busy >= 0.45x idle for training and decoding under `auto`.

    flock /tmp/chatforge-heavy.lock .venv/bin/python bench/busy_machine.py            # ~3 minutes, 2 cores
    .venv/bin/python bench/busy_machine.py --seconds 4 --policies auto
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODEL = "smollm2-135m-instruct"


def worker(kind: str, policy: str, seconds: float, model: str, late: bool = False) -> dict:
    if policy == "cores":
        os.environ["CHATFORGE_THREADS"] = str(os.cpu_count())
    from chatforge.models.load import load_model, quiet_transformers, set_threads

    quiet_transformers()
    set_threads()
    import torch

    threads = torch.get_num_threads()
    loaded = load_model(model, dtype="float32", device="cpu")
    if kind == "train":
        model = loaded.model
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        ids = torch.randint(0, model.config.vocab_size, (1, 256))

        def step():
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return ids.numel()
    else:
        try:
            from chatforge.infer import Engine, SamplingParams
        except ImportError:
            from chatforge.infer import Engine, SamplingParams
        engine = Engine(loaded)
        prompt = engine.encode_chat([{"role": "user", "content": "Write a long story about a lighthouse keeper."}])
        params = SamplingParams(max_tokens=64, temperature=0.0)

        def step():
            return engine.generate([prompt], [params])[0].completion_tokens
    from chatforge.threads import Follow

    follow = Follow()  # what chatforge's training and decode loops do once per step
    step()  # warm-up: first-call allocations, kernel selection
    hog = competitor() if late else None
    try:
        tokens, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            tokens += step()
            follow.poll()
        return {"tokens_per_s": tokens / (time.perf_counter() - t0), "threads": threads,
                "threads_at_end": torch.get_num_threads()}
    finally:
        if hog:
            hog.kill()
            hog.wait()


def competitor() -> subprocess.Popen:
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def measure(kind: str, policy: str, seconds: float, busy: bool, model: str, late: bool = False) -> dict:
    hog = competitor() if busy else None
    try:
        if hog:
            time.sleep(0.5)  # the competitor is running before the worker looks at the machine
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--policy", policy, "--seconds",
                              str(seconds), "--model", model] + (["--late"] if late else []),
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if hog:
            hog.kill()
            hog.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per configuration")
    p.add_argument("--policies", nargs="+", default=["cores", "auto"], choices=["cores", "auto"])
    p.add_argument("--kinds", nargs="+", default=["train", "decode"], choices=["train", "decode"])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--worker", choices=["train", "decode"], help=argparse.SUPPRESS)
    p.add_argument("--policy", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--late", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.policy, args.seconds, args.model, args.late)))
        return
    print(f"cores: {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}; competitor: 1 busy loop on core 0")
    print(f"{'policy':<7} {'what':<7} {'idle tok/s':>11} {'busy tok/s':>11} {'busy/idle':>10} {'late tok/s':>11} "
          f"{'late/idle':>10}  threads idle/busy/late (at the end)")
    results = {}
    for policy in args.policies:
        for kind in args.kinds:
            idle = measure(kind, policy, args.seconds, busy=False, model=args.model)
            busy = measure(kind, policy, args.seconds, busy=True, model=args.model)
            late = measure(kind, policy, args.seconds, busy=False, model=args.model, late=True)
            ratio = busy["tokens_per_s"] / idle["tokens_per_s"]
            late_ratio = late["tokens_per_s"] / idle["tokens_per_s"]
            results[f"{policy}/{kind}"] = {"idle": idle, "busy": busy, "late": late, "ratio": round(ratio, 3),
                                           "late_ratio": round(late_ratio, 3)}
            print(f"{policy:<7} {kind:<7} {idle['tokens_per_s']:>11.1f} {busy['tokens_per_s']:>11.1f} "
                  f"{ratio:>9.2f}x {late['tokens_per_s']:>11.1f} {late_ratio:>9.2f}x  "
                  f"{idle['threads']}/{busy['threads']}/{late['threads']} ({late['threads_at_end']})", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
