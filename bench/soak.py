"""Soak test of `chatforge serve`: N concurrent streaming clients for M minutes against the real server.

A real `chatforge serve` child process (loopback only) on the default model; each client thread loops:
mixed prompt lengths (short / medium / long; half of them new questions of 2-250 words), streaming with the
official openai client; every 7th request disconnects mid-stream; every 11th is a bad request (expects a 4xx
OpenAI error). A monitor polls /health every second (must answer within 2 s) and samples the server's RSS.
Reports: requests served, expected and unexpected errors (target 0 unexpected), p50/p95 time to first token,
aggregate tokens/s, server RSS at the start and the end (target: growth < 5%), slowest /health. The start is
the end of a warm-up under the same load (--warmup-seconds, default 30 s, counted in the run): the allocator
first grows to the largest batch and prompt shapes, which is not a leak; growth after that is. The server's
prefix cache (keys/values of recent sequences, bounded: 8,192 tokens, ~190 MB for this model in bf16) fills as
answers come, so the growth is also reported from the moment /health says it is full (>= 90 % of its tokens;
an insert evicts down to below its capacity: rss_growth_after_cache_full). The RSS at every minute too. Under
load the RSS also holds the running batch's keys/values (up to 8 long prompts: ~200 MB), so it swings with the
prompt mix; the leak figure is therefore taken at rest: the clients pause once after the warm-up and once the
cache is full, the server finishes what it has, and the RSS is read (rss_at_rest_start_mb); the same after the
last request (rss_at_rest_end_mb; rss_growth_at_rest).

    flock /tmp/chatforge-heavy.lock .venv/bin/python bench/soak.py              # 8 clients, 5 minutes
    .venv/bin/python bench/soak.py --minutes 1 --clients 4 --model /path/to/model
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = ["Hi!", "What is the capital of France?",
           "Explain in a few sentences how a refrigerator keeps food cold, and why the back of it is warm.",
           "Write a detailed story about a lighthouse keeper who finds a message in a bottle. " * 6]
BAD = [{"messages": [{"role": "robot", "content": "x"}]}, {"messages": [{"role": "user", "content": "x"}], "n": 5},
       {"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 5}}, {"messages": "nope"}]
REST_SECONDS = 3.0  # after the last request ends: the worker trims as its batch empties
WORDS = ("the kettle filter light warranty battery water screen door cable order store price week colour room "
         "cold warm quiet fast small large blue green first last daily manual setting reset button app phone "
         "night morning garden kitchen window noise smell leak repair return refund delivery").split()


def prompt_for(k: int, n: int) -> str:
    """Every other request repeats one of PROMPTS (their prefixes are cached); the others are new questions of
    2-250 words, so prompt lengths, and with them the batch's shapes, keep changing as on a real server."""
    if n % 2:
        return PROMPTS[(n * 3 + k) % len(PROMPTS)]
    rng = random.Random(k * 100_003 + n)
    words = rng.randint(*((2, 12), (20, 60), (100, 250))[rng.randrange(3)])
    return "Question: " + " ".join(rng.choice(WORDS) for _ in range(words)) + "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--warmup-seconds", type=float, default=30.0,
                   help="the RSS baseline is taken after this long under the full load")
    args = p.parse_args()
    import httpx
    import openai

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "chatforge", "serve", args.model, "--host", "127.0.0.1",
                               "--port", str(port), "--max-concurrency", str(args.clients)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the server did not start: {server.stderr.read()[-2000:]}")
        time.sleep(0.5)
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
    client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "warm up"}], max_tokens=8)
    rss_first = rss_mb(server.pid)  # after one request

    stats = {"served": 0, "disconnected": 0, "expected_errors": 0, "unexpected": [], "tokens": 0, "ttft": []}
    lock = threading.Lock()
    clock = {"stop_at": time.monotonic() + args.minutes * 60, "paused": 0.0}  # a pause moves stop_at
    going = threading.Event()  # cleared while the clients pause (the RSS at rest)
    going.set()
    in_flight = [0]
    health = {"max_s": 0.0, "failures": 0, "rss": [], "cache_full_at": None}  # rss: (seconds since start, MB)
    started = time.monotonic()

    def client_loop(k: int) -> None:
        n = 0
        with httpx.Client(base_url=base, timeout=60) as http:
            while going.wait() and time.monotonic() < clock["stop_at"]:
                n += 1
                with lock:
                    in_flight[0] += 1
                try:
                    if (n + k) % 11 == 0:
                        r = http.post("/v1/chat/completions", json=BAD[(n + k) % len(BAD)])
                        ok = 400 <= r.status_code < 500 and "error" in r.json()
                        with lock:
                            if ok:
                                stats["expected_errors"] += 1
                            else:
                                stats["unexpected"].append(f"bad request got {r.status_code}")
                        continue
                    prompt = prompt_for(k, n)
                    t0 = time.monotonic()
                    first, tokens = None, 0
                    stream = client.chat.completions.create(
                        model=args.model, messages=[{"role": "user", "content": prompt}], stream=True,
                        max_tokens=args.max_tokens, temperature=0.7, seed=n)
                    drop = (n + k) % 7 == 0
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            tokens += 1
                            if first is None:
                                first = time.monotonic() - t0
                            if drop and tokens >= 3:
                                stream.close()  # disconnect mid-stream
                                break
                    with lock:
                        stats["disconnected" if drop else "served"] += 1
                        stats["tokens"] += tokens
                        if first is not None:
                            stats["ttft"].append(first)
                except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                    with lock:
                        stats["unexpected"].append(f"{type(e).__name__}: {e}"[:200])
                finally:
                    with lock:
                        in_flight[0] -= 1

    def monitor() -> None:
        while time.monotonic() < clock["stop_at"]:
            t0 = time.monotonic()
            try:
                r = httpx.get(base + "/health", timeout=2)
                ok = r.status_code == 200
                cache = r.json().get("prefix_cache") if ok else None
                if cache and health["cache_full_at"] is None and cache["tokens"] >= 0.9 * cache["capacity"]:
                    health["cache_full_at"] = time.monotonic() - started
            except httpx.HTTPError:
                ok = False
            health["max_s"] = max(health["max_s"], time.monotonic() - t0)
            health["failures"] += not ok
            health["rss"].append((time.monotonic() - started, rss_mb(server.pid)))
            time.sleep(1)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
    threads.append(threading.Thread(target=monitor))

    def at_rest() -> float:
        """The server's RSS once every request has ended and its worker has trimmed (it does when idle)."""
        deadline = time.monotonic() + 120
        while in_flight[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(REST_SECONDS)
        return rss_mb(server.pid)

    t0 = time.monotonic()
    for t in threads:
        t.start()
    # pause the clients once, after the warm-up and once the prefix cache is full (both hold memory on purpose)
    latest = started + max(args.warmup_seconds, args.minutes * 20)  # a third of the run at most
    while time.monotonic() < latest and (time.monotonic() - started < args.warmup_seconds
                                         or health["cache_full_at"] is None):
        time.sleep(0.5)
    going.clear()
    paused = time.monotonic()
    rest_start, rest_start_at = at_rest(), time.monotonic() - started
    clock["paused"] = time.monotonic() - paused
    clock["stop_at"] += clock["paused"]
    going.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0 - clock["paused"]
    rss_end = rss_mb(server.pid)
    rest_end = at_rest()
    after = [mb for t, mb in health["rss"] if t >= args.warmup_seconds]
    rss_start = after[0] if after else rss_first
    full_at = health["cache_full_at"]
    full = [mb for t, mb in health["rss"] if full_at is not None and t >= max(full_at, args.warmup_seconds)]
    per_minute = [round(next(mb for t, mb in health["rss"] if t >= 60 * m), 1)
                  for m in range(1, int(wall // 60) + 1) if any(t >= 60 * m for t, _ in health["rss"])]
    alive = server.poll() is None
    server.terminate()
    server.wait(30)
    ttft = sorted(stats["ttft"])
    q = statistics.quantiles(ttft, n=20) if len(ttft) >= 20 else [float("nan")] * 19
    result = {
        "minutes": args.minutes, "clients": args.clients, "requests_served": stats["served"],
        "disconnected_mid_stream": stats["disconnected"], "bad_requests_answered_4xx": stats["expected_errors"],
        "unexpected_errors": len(stats["unexpected"]), "unexpected_examples": stats["unexpected"][:5],
        "ttft_p50_s": round(statistics.median(ttft), 3) if ttft else None, "ttft_p95_s": round(q[18], 3),
        "aggregate_tokens_per_s": round(stats["tokens"] / wall, 1),
        "rss_after_first_request_mb": round(rss_first, 1), "warmup_seconds": args.warmup_seconds,
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1), "rss_max_mb": round(max(
            [mb for _, mb in health["rss"]] + [rss_end]), 1), "rss_each_minute_mb": per_minute,
        "rss_growth": round(rss_end / rss_start - 1, 4) if rss_start else None,
        "prefix_cache_full_at_s": round(full_at, 1) if full_at is not None else None,
        "rss_when_cache_full_mb": round(full[0], 1) if full else None,
        "rss_growth_after_cache_full": round(rss_end / full[0] - 1, 4) if full else None,
        "rss_at_rest_start_mb": round(rest_start, 1), "rss_at_rest_start_at_s": round(rest_start_at, 1),
        "rss_at_rest_end_mb": round(rest_end, 1), "rss_growth_at_rest": round(rest_end / rest_start - 1, 4),
        "health_max_s": round(health["max_s"], 3), "health_failures": health["failures"], "server_alive": alive,
        "threads_env": os.environ.get("CHATFORGE_THREADS"),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
