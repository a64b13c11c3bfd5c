"""Throughput of `chatforge serve`: one client vs N concurrent clients (tokens/s and time to first token).

    .venv/bin/python bench/serve_throughput.py                   # the default model, 1 vs 8 clients
    .venv/bin/python bench/serve_throughput.py --model runs/x --clients 8 --requests 3 --max-tokens 64

The server runs in this process (a real HTTP server on 127.0.0.1, uvicorn in a thread) and the clients are
threads using the official openai client with streaming, so the figures include HTTP, SSE and the scheduler.
Each client sends its requests one after another; aggregate tokens/s = completion tokens of all clients / wall
time. The issue's target: N=8 clients get >= 3x the aggregate tokens/s of one client.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

QUESTIONS = [
    "Explain how a refrigerator keeps food cold.",
    "Write a short story about a lighthouse keeper.",
    "What are the benefits of regular exercise?",
    "Describe the water cycle in simple terms.",
    "How do I make a good cup of tea?",
    "Why is the sky blue?",
    "Give me tips for learning a new language.",
    "What should I pack for a weekend hiking trip?",
]


def one_request(client, model: str, question: str, max_tokens: int) -> tuple[float, int]:
    """Stream one answer; return (seconds to the first content token, completion tokens)."""
    start = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            usage = chunk.usage
    return (first if first is not None else time.perf_counter() - start), usage.completion_tokens


def run_clients(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    """`clients` threads, each sending `requests` requests in a row; aggregate figures."""
    from openai import OpenAI

    ttfts: list[float] = []
    tokens = [0] * clients
    errors: list[BaseException] = []

    def client_loop(k: int) -> None:
        client = OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
        try:
            for r in range(requests):
                ttft, n = one_request(client, model, QUESTIONS[(k + r) % len(QUESTIONS)], max_tokens)
                ttfts.append(ttft)
                tokens[k] += n
        except BaseException as e:  # reported after the run
            errors.append(e)

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {"clients": clients, "requests": clients * requests, "completion_tokens": sum(tokens),
            "seconds": round(wall, 2), "tokens_per_s": round(sum(tokens) / wall, 1),
            "ttft_median_s": round(statistics.median(ttfts), 3), "ttft_max_s": round(max(ttfts), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="Model or run directory (default: smollm2-135m-instruct).")
    p.add_argument("--clients", type=int, default=8, help="Concurrent clients in the second run (default: 8).")
    p.add_argument("--requests", type=int, default=3, help="Requests per client (default: 3).")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default: 64).")
    p.add_argument("--dtype", default="auto", help="Weights dtype (default: auto).")
    p.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = p.parse_args(argv)

    from chatforge.generation_config import GenerateConfig
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = GenerateConfig(dtype=args.dtype).engine(args.model)
    app = create_app(engine, ServeConfig(max_concurrency=args.clients, max_queue=args.clients))
    model = app.state.model_id
    with background(app) as url:
        run_clients(url, model, 1, 1, 8)  # warm-up: first-call costs are not throughput
        single = run_clients(url, model, 1, args.requests, args.max_tokens)
        many = run_clients(url, model, args.clients, args.requests, args.max_tokens)
    speedup = round(many["tokens_per_s"] / single["tokens_per_s"], 2)
    result = {"model": model, "max_tokens": args.max_tokens, "single": single, "concurrent": many,
              "speedup": speedup, "scheduler": dict(app.state.scheduler.stats)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model {model}, max_tokens {args.max_tokens}, {args.requests} requests per client")
        for label, r in (("1 client", single), (f"{args.clients} clients", many)):
            print(f"  {label:>11}: {r['tokens_per_s']:8.1f} tokens/s  ({r['completion_tokens']} tokens in "
                  f"{r['seconds']} s)  time to first token: median {r['ttft_median_s']} s, max {r['ttft_max_s']} s")
        print(f"  aggregate speed-up: {speedup}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
