"""What keeping every exchange costs: store writes per second and the model fingerprint, measured in one run.

    .venv/bin/python bench/store_cost.py                 # the default model's weights, 300 writes
    .venv/bin/python bench/store_cost.py --model runs/x --writes 1000 --json

Writes: `Store.log_completion` (one committed, fsynced transaction each: WAL + synchronous=FULL, what serve and
chat use) against the same rows with synchronous=NORMAL (no fsync per commit; survives kill -9 but not a power
cut), in one temporary directory on this disk. Fingerprint: the first `register_model` (sha256 of every weight
and tokenizer file) against a second one (the cached hashes: one stat per file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def writes_per_second(store, model_id: int, n: int, tag: str) -> float:
    start = time.perf_counter()
    for i in range(n):
        store.log_completion(id=f"chatcmpl-{tag}-{i}", model_id=model_id,
                             messages=[{"role": "user", "content": f"question {i}"}], answer="an answer " * 20,
                             finish_reason="stop", sampling={"temperature": 0.7}, prompt_tokens=12,
                             completion_tokens=40, latency_s=0.5, source="bench")
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model whose files are fingerprinted (default model).")
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from chatforge.models.resolve import resolve
    from chatforge.store import Store

    resolved = resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "chatforge.db")
        t = time.perf_counter()
        model_id = store.register_model(resolved.name, resolved.path, resolved.adapter)
        first = time.perf_counter() - t
        t = time.perf_counter()
        store.register_model(resolved.name, resolved.path, resolved.adapter)
        cached = time.perf_counter() - t
        full = writes_per_second(store, model_id, args.writes, "full")
        store.close()
        store = Store(Path(tmp) / "chatforge.db", fsync=False)  # the comparison only: serve and chat never do this
        normal = writes_per_second(store, model_id, args.writes, "normal")
        store.close()
    size = sum(f.stat().st_size for f in Path(resolved.path).iterdir() if f.is_file())
    out = {"model": resolved.name, "model_bytes": size, "fingerprint_first_s": first, "fingerprint_cached_s": cached,
           "fingerprint_ratio": first / cached, "writes_per_s_full": full, "writes_per_s_normal": normal,
           "fsync_cost_ratio": normal / full}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"fingerprint of {resolved.name} ({size / 2**20:.0f} MiB): first {first:.2f} s, cached "
              f"{cached * 1000:.2f} ms ({first / cached:.0f}x)")
        print(f"store writes: {full:.0f}/s fsynced (synchronous=FULL, used) vs {normal:.0f}/s without fsync "
              f"(NORMAL): {normal / full:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
