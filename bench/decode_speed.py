"""Decode speed of chatforge's engine against its peers on this machine, measured in one run.

    .venv/bin/python bench/decode_speed.py                    # the default model, every figure
    .venv/bin/python bench/decode_speed.py --tokens 64 --skip-agreement --skip-eval

Prints, each as tokens/s and as a ratio to the memory-bandwidth bound measured here (bytes of weights read per
token / measured read bandwidth over a buffer of that size, so an L3 that holds the weights counts):
  - single-stream greedy decode: chatforge fp32, bf16, int8 (torchao), eager and with the compiled decode step
    (Engine(compile=True): torch.compile, frozen weights; its first-call compile time too); HF `generate`
    (fp32, bf16); llama.cpp (llama-cpp-python, f16 GGUF of the same model) when installed, else skipped;
  - time to first token of a 1,000-token prompt (chatforge, bf16), and of a follow-up turn (prefix cache);
  - aggregate tokens/s of 8 concurrent streams (chatforge's Batch) against one stream, and transformers' own
    continuous batching (`generate_batch`) on the same 8 prompts;
  - answering the demo's 60 held-out questions: this engine (auto dtype) vs the engine before issue #14
    (commit ad73fe4's generation.py, fp32), and greedy token agreement of bf16 / int8 with fp32, two ways:
    free-running (each precision answers on its own; tokens of the common prefix / fp32 tokens: one early
    flip of a near tie makes the rest of the answer count as disagreement) and teacher-forced (given the
    fp32 answer so far, the share of its positions where the other precision's argmax is the same token:
    llama.cpp's "same top token" figure for quantizations).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "examples" / "data" / "lumora_heldout.jsonl"
BEFORE = "ad73fe4"  # main before issue #14: generation.py's fixed-batch, re-decoding loop
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm at sea."}]


def _quiet():
    import logging

    from chatforge.models.load import quiet_transformers

    quiet_transformers()
    warnings.filterwarnings("ignore")
    for name in ("torchao", "torch.utils._pytree", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---- the bound --------------------------------------------------------------------------------------------------
def read_bandwidth(nbytes: int) -> float:
    """Bytes/s of reading a buffer of `nbytes` (best of several passes; a sum reads every byte once)."""
    import torch

    x = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
    x.sum()
    best = float("inf")
    for _ in range(8):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def bytes_per_token(model) -> int:
    """Weight bytes one decode step reads: every linear layer (the LM head too), not the embedding table."""
    import torch

    from chatforge.models.int8 import Int8Linear

    total = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, Int8Linear)):
            w = m.weight
            inner = getattr(w, "qdata", None)  # torchao's Int8Tensor keeps int8 data + per-row scales
            if inner is not None:
                total += inner.numel() * inner.element_size() + getattr(w, "scale").numel() * 4
            else:
                total += w.numel() * w.element_size()
    return total


# ---- chatforge ----------------------------------------------------------------------------------------------
MODEL: str | None = None  # --model (default: the embedded default model)
THREADS = os.cpu_count() or 1  # --threads: torch's and llama.cpp's


def load(dtype: str, quantize: str | None = None, prefix_cache_tokens: int = 8192):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model

    return Engine(load_model(MODEL, dtype=dtype, quantize=quantize), prefix_cache_tokens=prefix_cache_tokens)


def stream_timing(engine, prompt: list[int], tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens/s after it, tokens) of one greedy stream."""
    from chatforge.infer import SamplingParams

    start = time.perf_counter()
    first = None
    done = None
    batch = engine.new_batch()
    batch.admit([0], [prompt], [SamplingParams(max_tokens=tokens)])
    first = time.perf_counter()
    while batch.size:
        for u in batch.step():
            done = u.done or done
    end = time.perf_counter()
    n = done.completion_tokens if done else tokens
    return first - start, (n - 1) / (end - first), n


def single_stream(engine, tokens: int) -> dict:
    prompt = engine.encode_chat(STORY)
    t = time.perf_counter()
    stream_timing(engine, prompt, 8)  # warm-up (compiles the decode step with compile=True)
    warm = time.perf_counter() - t
    ttft, tps, n = stream_timing(engine, prompt, tokens)
    r = {"tokens_per_s": round(tps, 1), "tokens": n}
    if engine.compile:
        r["first_call_s"] = round(warm, 1)  # of 8 tokens: mostly the compile (inductor's cache makes reruns quicker)
    return r


def concurrent(engine, tokens: int, streams: int) -> dict:
    from chatforge.infer import SamplingParams

    prompts = _story_prompts(engine, streams)
    engine.generate(prompts[:2], [SamplingParams(max_tokens=4)] * 2)  # warm-up
    start = time.perf_counter()
    out = engine.generate(prompts, [SamplingParams(max_tokens=tokens)] * streams)
    wall = time.perf_counter() - start
    return {"tokens_per_s": round(sum(c.completion_tokens for c in out) / wall, 1),
            "tokens": sum(c.completion_tokens for c in out), "seconds": round(wall, 2)}


def _story_prompts(engine, n: int) -> list[list[int]]:
    subjects = ["a lighthouse keeper", "a baker in Lyon", "two robots", "a lost cat", "a mountain village",
                "a space station", "an old violin", "a river boat"]
    return [engine.encode_chat([{"role": "user", "content": f"Write a long story about {subjects[i % len(subjects)]}."}])
            for i in range(n)]


def long_prompt_ttft(engine, n_tokens: int = 1000) -> dict:
    """TTFT of a fresh ~1,000-token prompt, then of a follow-up turn that shares it (prefix cache)."""
    from chatforge.infer import SamplingParams

    text = " ".join(json.loads(line)["messages"][-1]["content"] for line in HELDOUT.read_text().splitlines())
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens - 40]
    doc = engine.tokenizer.decode(ids)
    first = [{"role": "system", "content": "Answer from this manual:\n" + doc},
             {"role": "user", "content": "How do I reset the Halo?"}]
    engine.prefix_cache and engine.prefix_cache.clear()
    prompt = engine.encode_chat(first)
    ttft, _, _ = stream_timing(engine, prompt, 1)
    answer = engine.generate([prompt], [SamplingParams(max_tokens=16)])[0]
    follow = first + [{"role": "assistant", "content": answer.text}, {"role": "user", "content": "And after that?"}]
    follow_ids = engine.encode_chat(follow)
    t2, _, _ = stream_timing(engine, follow_ids, 1)
    return {"prompt_tokens": len(prompt), "ttft_s": round(ttft, 3), "follow_up_prompt_tokens": len(follow_ids),
            "follow_up_ttft_s": round(t2, 3), "follow_up_speedup": round(ttft / t2, 1)}


# ---- peers --------------------------------------------------------------------------------------------------
def hf_generate(engine, tokens: int) -> dict:
    import torch

    ids = torch.tensor([engine.encode_chat(STORY)])
    kw = dict(do_sample=False, pad_token_id=engine.pad_id)
    with torch.inference_mode():
        engine.model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)
        t = time.perf_counter()
        engine.model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = engine.model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, **kw)
        wall = time.perf_counter() - t
    n = out.shape[1] - ids.shape[1]
    return {"tokens_per_s": round((n - 1) / (wall - prefill), 1), "tokens": n}


def hf_continuous_batching(engine, tokens: int, streams: int) -> dict:
    from transformers import GenerationConfig

    prompts = _story_prompts(engine, streams)
    cfg = GenerationConfig(max_new_tokens=tokens, do_sample=False, eos_token_id=-1, pad_token_id=engine.pad_id)
    try:
        engine.model.generate_batch(prompts[:2], generation_config=GenerationConfig(
            max_new_tokens=4, do_sample=False, eos_token_id=-1, pad_token_id=engine.pad_id))
        start = time.perf_counter()
        out = engine.model.generate_batch(prompts, generation_config=cfg)
        wall = time.perf_counter() - start
    except Exception as e:  # an API or backend this install does not support: say so, keep benchmarking
        return {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    n = sum(len(o.generated_tokens) for o in out.values())
    return {"tokens_per_s": round(n / wall, 1), "tokens": n, "seconds": round(wall, 2)}


def llama_cpp(tokens: int, tmp: Path) -> dict:
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"skipped": "llama-cpp-python is not installed (pip install 'chatforge[llama-cpp]')"}
    gguf = tmp / "model-f16.gguf"
    if not gguf.exists():
        from chatforge.export.config import ExportConfig
        from chatforge.export.run import export

        export(ExportConfig(model=MODEL, format="gguf", quant="f16", out=str(gguf), verify=False))  # kept for the next run
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=THREADS, verbose=False)
    prompt = llm.tokenize(b"<|im_start|>user\n" + STORY[0]["content"].encode() + b"<|im_end|>\n<|im_start|>assistant\n",
                          add_bos=False, special=True)
    _llama_stream(llm, prompt, 8)  # warm-up
    _, tps, n = _llama_stream(llm, prompt, tokens)
    return {"tokens_per_s": round(tps, 1), "tokens": n, "gguf_bytes": gguf.stat().st_size}


def _llama_stream(llm, prompt: list[int], tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens/s after it, tokens) of one greedy llama.cpp stream, timed as
    stream_timing times chatforge's (token by token, so no separately timed prefill is subtracted)."""
    start = time.perf_counter()
    first = None
    n = 0
    for token in llm.generate(prompt, temp=0.0, reset=True):  # temp 0: llama.cpp's greedy sampler
        n += 1
        if first is None:
            first = time.perf_counter()
        if token == llm.token_eos() or n >= tokens:
            break
    end = time.perf_counter()
    return first - start, (n - 1) / (end - first), n


# ---- the demo's eval answers ----------------------------------------------------------------------------------
def heldout_conversations(n: int = 60) -> list[list[dict]]:
    rows = [json.loads(line)["messages"] for line in HELDOUT.read_text().splitlines()][:n]
    return [m[:-1] for m in rows]


def old_engine_class():
    """The Engine of commit BEFORE (generation.py as it was), loaded from git under another module name."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:src/chatforge/generation.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "generation_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("generation_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def answer_time(engine, convs, params) -> tuple[float, list]:
    t = time.perf_counter()
    out = engine.chat_batch(convs, params)
    return time.perf_counter() - t, out


def agreement(reference: list, other: list) -> dict:
    """Free-running greedy agreement with the reference: tokens of the common prefix / reference tokens (after
    the first different token the answers part ways, so the rest counts as disagreement); exact answers."""
    same = total = exact = 0
    for a, b in zip(reference, other):
        n = len(os.path.commonprefix([a.token_ids, b.token_ids]))
        same, total, exact = same + n, total + max(len(a.token_ids), 1), exact + (a.token_ids == b.token_ids)
    return {"token_agreement_pct": round(100 * same / total, 1), "exact_answers_pct": round(100 * exact / len(reference), 1)}


def teacher_forced_agreement(engine, convs, reference: list) -> float:
    """% of the reference answers' positions where `engine`'s greedy choice, given the reference's prompt and
    answer so far, is the reference's token (one forward over prompt + answer per question)."""
    import torch

    same = total = 0
    with torch.inference_mode():
        for conv, ref in zip(convs, reference):
            answer = ref.token_ids + ([min(engine.eot_ids)] if ref.finish_reason == "stop" else [])
            if not answer:
                continue
            prompt = engine.encode_chat(conv)
            logits = engine.model(input_ids=torch.tensor([prompt + answer[:-1]])).logits[0, len(prompt) - 1:]
            choice = logits.argmax(-1).tolist()  # (len(answer),): the choice at each answer position
            same += sum(c == t or (t in engine.eot_ids and c in engine.eot_ids) for c, t in zip(choice, answer))
            total += len(answer)
    return round(100 * same / total, 1)


# ---- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="Model (default: smollm2-135m-instruct).")
    p.add_argument("--threads", type=int, default=None, help="Threads for torch and llama.cpp (default: all cores).")
    p.add_argument("--tokens", type=int, default=64, help="New tokens per timed stream (default: 64).")
    p.add_argument("--streams", type=int, default=8, help="Concurrent streams (default: 8).")
    p.add_argument("--skip-agreement", action="store_true", help="Skip the held-out answers (agreement, eval time).")
    p.add_argument("--skip-compile", action="store_true", help="Skip the compiled decode step (it compiles twice).")
    p.add_argument("--eval-only", action="store_true", help="Only the held-out answers (agreement, eval time).")
    p.add_argument("--json", action="store_true", help="Print the results as JSON only.")
    args = p.parse_args(argv)
    global MODEL, THREADS
    MODEL, THREADS = args.model, args.threads or THREADS
    # chatforge's decode loop follows the machine's load (threads.Follow) unless a count is given: give it this
    # one, so every engine here runs on the same THREADS
    os.environ["CHATFORGE_THREADS"] = str(THREADS)
    _quiet()
    import torch

    torch.set_num_threads(THREADS)
    R: dict = {"threads": THREADS}
    key = hashlib.sha1(str(MODEL).encode()).hexdigest()[:12]
    tmp = Path(tempfile.gettempdir()) / f"chatforge-bench-decode-{key}"  # the GGUF is kept for the next run
    tmp.mkdir(exist_ok=True)

    def say(*a):
        if not args.json:
            print(*a, flush=True)

    engines = {"fp32": load("float32"), "bf16": load("bfloat16"), "int8": load("bfloat16", "int8")}
    if not args.eval_only:
        bounds = {}
        for name, e in engines.items():
            b = bytes_per_token(e.model)
            bw = read_bandwidth(b)
            bounds[name] = bw / b
            R[f"bound_{name}"] = {"weight_bytes_per_token": b, "read_GBps": round(bw / 1e9, 1),
                                  "tokens_per_s": round(bw / b, 1)}
            say(f"bound {name}: {b / 1e6:.0f} MB/token at {bw / 1e9:.1f} GB/s -> {bw / b:.0f} tokens/s")

        def ratio(r: dict, bound: str) -> dict:
            if "tokens_per_s" in r:
                r["of_bound"] = round(r["tokens_per_s"] / bounds[bound], 2)
                r["bound"] = bound
            return r

        for name, e in engines.items():
            R[f"chatforge_{name}"] = ratio(single_stream(e, args.tokens), name)
            say(f"single stream chatforge {name}: {R[f'chatforge_{name}']}")
        from chatforge.models import int8

        rows, int8.SMALL_ROWS = int8.SMALL_ROWS, 0  # every product through torchao's own eager linear (before)
        R["torchao_int8_eager"] = ratio(single_stream(engines["int8"], args.tokens), "int8")
        int8.SMALL_ROWS = rows
        say(f"single stream int8, torchao's eager linear in every layer: {R['torchao_int8_eager']}")
        for name in ("bf16", "int8") if not args.skip_compile else ():
            e = engines[name]
            e.compile = True  # the same model: only its single-stream decode step is compiled
            R[f"chatforge_{name}_compiled"] = ratio(single_stream(e, args.tokens), name)
            import torch

            e._compiled = None  # compile again, as a second process would: dynamo traces anew, inductor's
            torch._dynamo.reset()  # on-disk caches (FX graphs, C++ kernels) now hold this graph
            t = time.perf_counter()
            stream_timing(e, e.encode_chat(STORY), 4)
            R[f"chatforge_{name}_compiled"]["cached_first_call_s"] = round(time.perf_counter() - t, 1)
            e.compile = False  # what follows measures the eager engine (batched steps are eager anyway)
            say(f"single stream chatforge {name}, compiled decode step: {R[f'chatforge_{name}_compiled']}")
        for name in ("fp32", "bf16"):
            R[f"hf_generate_{name}"] = ratio(hf_generate(engines[name], args.tokens), name)
            say(f"single stream HF generate {name}: {R[f'hf_generate_{name}']}")
        R["llama_cpp_f16"] = ratio(llama_cpp(args.tokens, tmp), "bf16")  # f16 reads as many bytes as bf16
        say(f"single stream llama.cpp f16: {R['llama_cpp_f16']}")
        if "tokens_per_s" in R["llama_cpp_f16"]:
            best = max((k for k in R if k.startswith("chatforge_")), key=lambda k: R[k]["tokens_per_s"])
            R["best_single_stream_vs_llama_cpp"] = {
                "chatforge": best, "ratio": round(R[best]["tokens_per_s"] / R["llama_cpp_f16"]["tokens_per_s"], 2)}
            say(f"fastest chatforge single stream vs llama.cpp f16: {R['best_single_stream_vs_llama_cpp']}")

        R["ttft_bf16"] = long_prompt_ttft(engines["bf16"])
        say(f"time to first token, bf16: {R['ttft_bf16']}")
        R["concurrent_bf16"] = ratio(concurrent(engines["bf16"], args.tokens, args.streams), "bf16")
        R["concurrent_vs_single"] = round(R["concurrent_bf16"]["tokens_per_s"] / R["chatforge_bf16"]["tokens_per_s"], 2)
        say(f"{args.streams} streams chatforge bf16: {R['concurrent_bf16']}  ({R['concurrent_vs_single']}x one stream)")
        R["hf_continuous_batching_bf16"] = hf_continuous_batching(engines["bf16"], args.tokens, args.streams)
        say(f"{args.streams} streams transformers generate_batch bf16: {R['hf_continuous_batching_bf16']}")

    if not args.skip_agreement:
        from chatforge.infer import SamplingParams

        convs = heldout_conversations()
        params = SamplingParams(max_tokens=64)
        outs = {}
        for name, e in engines.items():
            R[f"heldout_seconds_{name}"], outs[name] = answer_time(e, convs, params)
        for name in ("bf16", "int8"):
            R[f"agreement_{name}_vs_fp32"] = agreement(outs["fp32"], outs[name])
            R[f"agreement_{name}_vs_fp32"]["teacher_forced_pct"] = teacher_forced_agreement(
                engines[name], convs, outs["fp32"])
            say(f"greedy agreement {name} vs fp32 on {len(convs)} held-out questions: "
                f"{R[f'agreement_{name}_vs_fp32']}")
        from chatforge.evaluate.config import EvalConfig

        width = EvalConfig().batch_size  # what `chatforge eval` runs at once
        bf16 = engines["bf16"]
        bf16.max_batch_size, single = width, bf16.max_batch_size
        R["heldout_seconds_bf16_eval_batch"], _ = answer_time(bf16, convs, params)
        bf16.max_batch_size = single
        old = old_engine_class().Engine(_loaded_fp32())  # its own default batch (16), eval's default then
        R["heldout_seconds_before_fp32"], _ = answer_time(old, convs, params)
        R["heldout_speedup_auto_vs_before"] = round(R["heldout_seconds_before_fp32"]
                                                    / R["heldout_seconds_bf16_eval_batch"], 2)
        say(f"answering {len(convs)} held-out questions: before (fp32) {R['heldout_seconds_before_fp32']:.1f} s, "
            f"now fp32 {R['heldout_seconds_fp32']:.1f} s, bf16 {R['heldout_seconds_bf16']:.1f} s, "
            f"int8 {R['heldout_seconds_int8']:.1f} s ({single} at once); bf16 {width} at once (eval's default) "
            f"{R['heldout_seconds_bf16_eval_batch']:.1f} s -> {R['heldout_speedup_auto_vs_before']}x")
    if args.json:
        print(json.dumps(R, indent=2))
    else:
        print(json.dumps(R))
    return 0


def _loaded_fp32():
    from chatforge.models.load import load_model

    return load_model(MODEL, dtype="float32")


if __name__ == "__main__":
    sys.exit(main())
