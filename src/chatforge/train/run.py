"""`chatforge train` as a function: setup -> fit -> save.

    from chatforge.train.config import AUTO_COMPILE_TOKENS, TrainConfig
    from chatforge.train.run import train
    run_dir = train(TrainConfig(data="examples/data/lumora_train.jsonl"))

setup:  resolve the model, read + encode + pack the data (chatforge.data), apply the method (LoRA / full /
        freeze), make the run directory (config.yaml, run.json, data_stats.json) and the Trainer.
fit:    Trainer.train(), resuming from the last complete checkpoint with --resume.
save:   final eval, final/ (adapter or model + tokenizer, written atomically), run.json (with the summary), model
        card; the "done" event carries the summary, which `chatforge train` prints (print_summary).

Under torchrun every process runs this same function; only process 0 writes to the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chatforge.atomic import usual_modes
from chatforge.config import check_values, save_yaml
from chatforge.errors import ChatforgeError
from chatforge.train import checkpoints
from chatforge.train.config import AUTO_COMPILE_TOKENS, PREFERENCE_METHODS, TrainConfig

MAX_EVAL_EXAMPLES = 200


@dataclass
class Run:
    cfg: TrainConfig  # resolved: automatic values filled in
    dir: Path
    trainer: Any
    kind: str  # "chat" | "text"
    resume_from: Path | None
    stats: dict
    is_main: bool
    precision: str
    started: float
    emit: Any = None  # chatforge.events listener: RUN/events.jsonl (process 0) + the caller's on_event
    attention: str = "model default"  # "packed": chatforge.train.attention
    flops_per_token: float = 0.0  # model FLOPs of one trained token (chatforge.train.mfu)
    peak_flops: float = 0.0  # measured matmul peak of the machine, FLOP/s


def train(cfg: TrainConfig, on_event=None) -> Path:
    """Fine-tune per `cfg`; return the run directory (status in its run.json: complete / interrupted).

    `on_event` receives the run's chatforge.events.Event (start, step, eval, done / stopped / error); they are
    also appended to RUN/events.jsonl, which another process (chatforge studio) can follow."""
    from chatforge.events import Event

    run = setup(cfg, on_event)
    try:
        stopped = fit(run)
    except KeyboardInterrupt:  # Ctrl-C: not a failure; the last complete checkpoint continues it
        last = checkpoints.last(run.dir / "checkpoints")
        done, resumes = run.trainer.state.global_step, checkpoints.step_of(last) if last else 0
        _update_run_json(run, status="interrupted", stopped_at_step=done, resumes_from_step=resumes)
        run.emit(Event("train", "stopped", step=done))
        if run.is_main:
            if last:
                print(f"\nchatforge train: interrupted after step {done}; the last complete checkpoint is {last}. "
                      f"Continue with: chatforge train --out {run.dir} --resume", file=sys.stderr)
            else:
                print(f"\nchatforge train: interrupted after step {done}, before the first checkpoint (every "
                      f"{run.cfg.save_every} steps): nothing to continue from. Run the same command again to start "
                      "over (--resume would start over too)", file=sys.stderr)
        raise
    except BaseException as e:
        message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        try:
            _update_run_json(run, status="failed", error=message)
        except OSError:  # e.g. the disk is full: the error being raised says more than the status would
            pass
        run.emit(Event("train", "error", message=message))
        raise
    if stopped is not None:
        _update_run_json(run, status="interrupted", stopped_at_step=stopped, resumes_from_step=stopped)
        run.emit(Event("train", "stopped", step=stopped))
        if run.is_main:
            print(f"stopped by SIGTERM at step {stopped}; checkpoint saved in {run.dir / 'checkpoints'}. "
                  f"Continue with: chatforge train --out {run.dir} --resume", file=sys.stderr)
        return run.dir
    return save(run)


# ---- setup -------------------------------------------------------------------------------------------------
def setup(cfg: TrainConfig, on_event=None) -> Run:
    check_request(cfg)
    device = one_gpu(cfg.device)  # first: before anything asks CUDA about its devices
    from chatforge.models.load import load_model, pick_device, quiet_transformers, set_threads

    quiet_transformers()
    set_threads()
    loaded = load_model(cfg.model, dtype="float32", device="cpu", trust_remote_code=cfg.trust_remote_code,
                        allow_pickle=cfg.allow_pickle)
    tokenizer = loaded.tokenizer
    kind, train_examples, eval_examples, stats = _load_data(cfg, tokenizer)
    cfg = _resolve(cfg, n_examples=len(train_examples), n_tokens=sum(len(e) for e in train_examples),
                   n_trained=sum(e.trained for e in train_examples) if kind in ("chat", "text") else 0)
    from transformers import set_seed

    set_seed(cfg.seed)  # LoRA's initial weights come from the seed: the same config gives the same run
    device = pick_device(device)
    bf16 = use_bf16(cfg.precision, device)
    model = apply_method(loaded.model, cfg, bf16=bf16)
    from chatforge.train.attention import use_packed_attention

    packed_attention = use_packed_attention(model)  # attention per example of a packed row: sum(len^2), not T^2
    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(cfg.out)
    resume_from = _prepare_run_dir(run_dir, cfg, is_main=rank == 0)
    from chatforge.events import JsonlSink, fan_out

    emit = fan_out([JsonlSink(run_dir / "events.jsonl") if rank == 0 else None, on_event])
    trainer = _make_trainer(cfg, model, tokenizer, train_examples, eval_examples, run_dir, stats, device, bf16,
                            emit, share_prefixes=packed_attention)
    if cfg.compile:  # after the Trainer's one-off check of the model's head, which runs another shape
        compile_layers(model, fixed_rows=cfg.method not in PREFERENCE_METHODS)
    run = Run(cfg, run_dir, trainer, kind, resume_from, stats, trainer.is_world_process_zero(),
              "bf16" if bf16 else "fp32", time.time(), emit, "packed" if packed_attention else "model default")
    _measure_mfu_scale(run, model, bf16)
    if run.is_main:
        _write_json(run_dir / "data_stats.json", stats)
        _update_run_json(run, status="running", **_run_facts(run))
    return run


def _measure_mfu_scale(run: Run, model, bf16: bool) -> None:
    """MFU = tokens/s x model FLOPs per token / peak FLOP/s (chatforge.train.mfu): tell the metrics log."""
    import torch

    from chatforge.train import mfu

    args = run.trainer.args
    run.flops_per_token = mfu.flops_per_token(model)
    run.peak_flops = mfu.measure_peak(torch.bfloat16 if bf16 else torch.float32, str(args.device)) * args.world_size
    metrics = next(cb for cb in run.trainer.callback_handler.callbacks if type(cb).__name__ == "MetricsLog")
    metrics.mfu_scale = run.flops_per_token / run.peak_flops


def one_gpu(device: str | None) -> str | None:
    """A single-process run trains on exactly the GPU asked for (default: the first visible one).

    The Trainer would take cuda:0 whatever --device says, and spread each batch over every visible GPU with
    DataParallel (changing the tokens per step). So the GPU is chosen with CUDA_VISIBLE_DEVICES, which CUDA
    reads once, when it starts: this runs before anything queries CUDA. Under torchrun / accelerate launch each
    process already has the GPU of its local rank. Returns the device name to use from then on.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device and device.startswith("cuda:"):
            raise ChatforgeError(f"--device {device}: under torchrun / accelerate launch each process uses the GPU "
                                 "of its local rank", hint="drop --device (choose GPUs with CUDA_VISIBLE_DEVICES)")
        return device
    if device not in (None, "cuda") and not (device or "").startswith("cuda:"):
        return device  # cpu, mps, or a name pick_device will refuse
    index = (device or "").partition(":")[2] or "0"
    if not index.isdigit():
        return device  # pick_device gives the error
    import torch

    if torch.cuda.is_initialized():  # too late to choose (the Python API after other CUDA work)
        return device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in visible.split(",")] if visible else None
    if ids is not None and int(index) >= len(ids):
        raise ChatforgeError(f"--device {device}: CUDA_VISIBLE_DEVICES={visible} shows {len(ids)} device(s)",
                             hint=f"use cuda:0 to cuda:{len(ids) - 1}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[int(index)] if ids is not None else index
    return "cuda" if device else None


def check_request(cfg: TrainConfig) -> None:
    """What `chatforge train` refuses before loading anything (each option's rule, the rules between options, an
    --out that is not a run): a ChatforgeError naming the option. The studio checks its form with it too."""
    check_values(cfg)  # the Python API's config gets the CLI's checks (--lr > 0, --warmup in [0, 1), ...)
    from chatforge.data import check_options

    # the data layer's rules, before any model or data is read (--format and --columns: of chat data, as _load_data)
    chat = {} if cfg.method in PREFERENCE_METHODS else dict(format=cfg.format, columns=cfg.columns or None,
                                                             column_separator=cfg.column_separator)
    check_options(max_length=cfg.max_length, overlong=cfg.overlong, **chat)
    out = Path(cfg.out) if cfg.out else None
    if cfg.resume and out is None:  # the default --out is a new directory: there would be nothing to continue
        raise ChatforgeError("--resume needs --out: the run directory to continue",
                             hint="e.g. chatforge train --out runs/NAME --resume")
    if out is not None and out.exists() and not out.is_dir():
        raise ChatforgeError(f"--out {out}: is a file, not a run directory", hint="choose another --out")
    if out is not None and out.is_dir() and not _holds_run(out) and any(out.iterdir()):
        # a run writes config.yaml, README.md (its model card), final/ ... there: never over the user's own files
        raise ChatforgeError(f"--out {out}: the directory exists and holds files that are not a chatforge run",
                             hint="choose a new (or empty) directory for --out")
    if cfg.method not in PREFERENCE_METHODS and cfg.batch_tokens < cfg.max_length:
        raise ChatforgeError(f"--batch-tokens {cfg.batch_tokens} is less than one row of --max-length "
                             f"{cfg.max_length} tokens (an optimizer step trains at least one row)",
                             hint=f"raise --batch-tokens to >= {cfg.max_length}, or lower --max-length")
    if not cfg.data:
        raise ChatforgeError("--data is required (a chat JSONL/JSON file, a directory, or raw .txt)",
                             hint="e.g. chatforge train --data examples/data/lumora_train.jsonl")
    if cfg.objective == "mlm":
        raise ChatforgeError(f"--objective mlm: {cfg.model} is a causal (decoder-only) language model; masked-LM "
                             "training needs an encoder model such as BERT, which chatforge does not train",
                             hint="drop --objective: raw text trains with the causal LM objective "
                                  "(continued pretraining)")


def _load_data(cfg: TrainConfig, tokenizer) -> tuple[str, list, list, dict]:
    """Read, validate and encode (chatforge.data); hold out an eval split when there is no --eval-data."""
    from chatforge.data import prepare

    opts = dict(format=cfg.format, max_length=cfg.max_length, overlong=cfg.overlong, lenient=cfg.lenient)
    if cfg.method in PREFERENCE_METHODS:
        from chatforge.train.preference import load_preference_data

        prepare = load_preference_data(cfg)  # same signature: path, tokenizer, **opts -> prepared
    else:  # the column mapping reads chat/SFT formats (preference formats have their own fields)
        opts.update(columns=cfg.columns, column_separator=cfg.column_separator)
    prepared = prepare(cfg.data, tokenizer, eval_path=cfg.eval_data, **opts)  # eval_path: leakage check
    examples = list(prepared.examples)
    stats = {"kind": prepared.kind, "train": prepared.stats}
    if cfg.eval_data:
        eval_prepared = prepare(cfg.eval_data, tokenizer, **opts)
        if eval_prepared.kind != prepared.kind:  # a loss on raw text says nothing of a chat model, and back
            kinds = {"chat": "conversations", "text": "raw text"}
            raise ChatforgeError(f"--eval-data {cfg.eval_data}: {kinds.get(eval_prepared.kind, eval_prepared.kind)}"
                                 f", but the training data {cfg.data} is "
                                 f"{kinds.get(prepared.kind, prepared.kind)}",
                                 hint="evaluate on held-out data of the same kind as the training data")
        eval_examples = list(eval_prepared.examples)
        stats["eval"] = eval_prepared.stats
    elif held := held_out(len(examples), cfg.eval_split, cfg.seed):
        eval_examples = [e for i, e in enumerate(examples) if i in held]
        examples = [e for i, e in enumerate(examples) if i not in held]
        stats["eval"] = {"examples": len(eval_examples), "held_out_from_train": cfg.eval_split}
    else:
        eval_examples = []
    stats["train_examples_used"] = len(examples)
    return prepared.kind, examples, eval_examples, stats


def held_out(n: int, split: float, seed: int) -> set[int]:
    """Indices of the n examples held out for evaluation when there is no --eval-data (none below 10)."""
    import random

    if split <= 0 or n < 10:
        return set()
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return set(order[:min(MAX_EVAL_EXAMPLES, max(1, round(n * split)))])


def _resolve(cfg: TrainConfig, *, n_examples: int, n_tokens: int = 0, n_trained: int = 0) -> TrainConfig:
    """Fill in the automatic values, so config.yaml records exactly what ran."""
    from chatforge.data.stats import auto_epochs

    epochs = auto_epochs(n_examples, n_trained) if cfg.epochs == "auto" else cfg.epochs
    if cfg.method in PREFERENCE_METHODS and cfg.epochs == "auto":
        epochs = min(epochs, 3)  # preference tuning moves away from the reference quickly: a few passes
    if cfg.compile is None:
        planned = cfg.max_steps * cfg.batch_tokens if cfg.max_steps else n_tokens * int(epochs)
        cfg = dataclasses.replace(cfg, compile=planned >= AUTO_COMPILE_TOKENS and can_compile(cfg.device))
    out = cfg.out or str(Path("runs") / f"{Path(cfg.data).stem}-{cfg.method}-"
                                        f"{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_rank
    return dataclasses.replace(cfg, epochs=int(epochs), lr=cfg.learning_rate, out=out, lora_alpha=alpha)


def can_compile(device: str | None) -> bool:
    """torch.compile (inductor) works here: a CUDA device (Triton comes with torch), or a CPU with a C++
    compiler for its generated kernels."""
    if device and not device.startswith(("cpu", "cuda")):
        return False
    if device is None or device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return True
    return any(shutil.which(c) for c in (os.environ.get("CXX") or "", "g++", "c++", "clang++") if c)


def apply_method(model, cfg: TrainConfig, *, bf16: bool = False):
    """lora: adapters on every linear layer of the body; full: all weights; freeze: the last N layers + norm."""
    if cfg.method in ("lora", "dpo", "kto"):  # dpo / kto: adapters on the starting model (the reference)
        from chatforge.train.lora import add_lora

        return add_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, bf16=bf16)
    if cfg.method == "full":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    layers, norms = _layers_and_final_norm(model)
    if cfg.freeze_layers > len(layers):  # a larger count would silently train every layer: say so instead
        raise ChatforgeError(f"--freeze-layers {cfg.freeze_layers}: the model has {len(layers)} transformer layers",
                             hint=f"use 1 to {len(layers)}, or --method full to train every weight")
    for module in list(layers)[-cfg.freeze_layers:] + norms:
        module.requires_grad_(True)
    return model


def compile_layers(model, *, fixed_rows: bool = True) -> None:
    """torch.compile each transformer block: one graph for all of them (same code, same shapes), fusing the
    element-wise work (norms, rotary, activations, LoRA) that eager mode runs op by op. The fused head and loss,
    PEFT and the Trainer stay eager.

    fixed_rows=False (dpo / kto: a micro-batch's pairs pack into a varying number of rows of --max-length):
    sizes are symbolic from the start (dynamic=True), so a new row count reuses the graph; a dynamic first
    compile measured no slower per step than static ones (bench/dpo_throughput.py) and saves a ~20 s recompile
    at every new count. Their passes are separate graphs (the policy with grad -- its first block once more, as
    its input needs no grad --, the reference without grad and with the adapters off, evaluation's two, and a
    single row is a size torch specializes): up to ~10, over dynamo's default limit of 8 graphs per function, past
    which it would run the blocks eagerly."""
    import torch._dynamo.config

    torch._dynamo.config.suppress_errors = True  # a compiler problem means eager execution, not a failed run
    if not fixed_rows:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers, _ = _layers_and_final_norm(base)
    for layer in layers:
        layer.compile(dynamic=not fixed_rows)


def _layers_and_final_norm(model):
    """The transformer blocks (the body's ModuleList) and the norm(s) after them, for any decoder-only model."""
    import torch.nn as nn

    body = model.base_model
    layers, norms = None, []
    for name, child in body.named_children():
        if isinstance(child, nn.ModuleList):
            layers = child
        elif "norm" in name or name.startswith("ln_f"):
            norms.append(child)
    if layers is None:
        raise ChatforgeError(f"--method freeze: cannot find the transformer layers of {type(model).__name__}",
                             hint="use --method lora or --method full")
    return layers, norms


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig, *, is_main: bool) -> Path | None:
    """New run: the directory must not hold another run. --resume: the last complete, verified checkpoint."""
    ckpt_root = run_dir / "checkpoints"
    exists = _holds_run(run_dir)
    if exists and not cfg.resume and is_main and _failed_without_checkpoint(run_dir):
        # nothing of it can be continued: the same command, corrected, starts it again (no --resume needed)
        print(f"chatforge train: {run_dir} holds a run that failed before its first checkpoint; starting it again",
              file=sys.stderr)
        for name in ("run.json", "events.jsonl", "metrics.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
    elif exists and not cfg.resume and is_main:  # (other processes would see the directory process 0 made)
        raise ChatforgeError(f"{run_dir} already holds a training run",
                             hint="continue it with --resume, or choose another --out")
    resume_from = checkpoints.last(ckpt_root) if cfg.resume else None
    if resume_from is not None:
        _check_resume(run_dir, cfg)
        checkpoints.verify(resume_from)
    elif cfg.resume and is_main:
        print(f"chatforge train: no complete checkpoint in {ckpt_root}; starting from the beginning",
              file=sys.stderr)
    if is_main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        checkpoints.clean_partial(ckpt_root)
        shutil.rmtree(run_dir / "final.tmp", ignore_errors=True)
        save_yaml(_recorded_config(cfg), run_dir / "config.yaml")
        _truncate_metrics(run_dir / "metrics.jsonl", checkpoints.step_of(resume_from) if resume_from else 0)
    return resume_from


def _recorded_config(cfg: TrainConfig) -> TrainConfig:
    """The config as RUN/config.yaml records it: local paths absolute, so `--config RUN/config.yaml` (and its
    --resume) works from any directory."""
    paths = {k: _portable_spec(getattr(cfg, k)) for k in ("model", "data", "eval_data", "out") if getattr(cfg, k)}
    return dataclasses.replace(cfg, resume=False, **paths)


# Options a resumed run may change: where and how fast it computes, what it keeps and reports (not what it trains).
# The data is compared by its content (run.json's data_sha256), not by its path.
RESUME_MAY_CHANGE = ("out", "resume", "data", "device", "compile", "gradient_checkpointing", "tensorboard",
                     "keep_checkpoints", "save_every", "eval_every", "trust_remote_code", "allow_pickle")


def _check_resume(run_dir: Path, cfg: TrainConfig) -> None:
    """--resume continues a run exactly: refuse changed data, and changed options that would train another run
    (compared with the resolved config the run recorded in RUN/config.yaml)."""
    from chatforge.config import from_mapping, load_yaml

    how = "start a new run with another --out"
    facts = _read_json(run_dir / "run.json")
    for key, what, path in (("data_sha256", "the training data", cfg.data),
                            ("eval_data_sha256", "the --eval-data", cfg.eval_data)):
        # the eval data too: its loss curve (and the best checkpoint) would mix two held-out sets
        if facts.get(key) and data_sha256(path) != facts[key]:
            raise ChatforgeError(f"--resume: {what} {path} changed since the run in {run_dir} started; resuming "
                                 "would not continue that run", hint=f"to train on the changed data, {how}")
    path = run_dir / "config.yaml"
    data, lines = load_yaml(path) if path.is_file() else ({}, {})
    before = from_mapping(TrainConfig, data, str(path), lines)
    now = dataclasses.asdict(_recorded_config(cfg))
    ignored = {*RESUME_MAY_CHANGE, *(["epochs"] if now["max_steps"] and before.get("max_steps") else [])}
    changed = [k for k, v in before.items() if k not in ignored and now.get(k) != v]
    if not changed or ({"epochs", "max_steps"}.issuperset(changed) and cfg.scheduler == "constant_with_warmup"
                       and not cfg.warmup):  # only the number of steps, at a constant learning rate: the same run
        return
    steps = (f"; the learning-rate schedule ({cfg.scheduler}, warm-up {cfg.warmup:g} of the steps) is spread over "
             "all the steps: another number of steps changes it") if {"epochs", "max_steps"} & set(changed) else ""
    diffs = ", ".join(f"--{k.replace('_', '-')} {before[k]} -> {now[k]}" for k in changed)
    raise ChatforgeError(f"--resume: options changed since the run in {run_dir} started ({diffs}): resuming "
                         f"would not continue that run exactly{steps}",
                         hint=f"resume with the run's own values (drop these options), or {how}")


def _read_json(path: Path) -> dict:
    """A JSON object from a file; {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holds_run(run_dir: Path) -> bool:
    """A training run was started in this directory (run.json, or the checkpoints/ made before it)."""
    return (run_dir / "run.json").is_file() or (run_dir / "checkpoints").is_dir()


def _failed_without_checkpoint(run_dir: Path) -> bool:
    """run.json says failed and no checkpoint was completed (nor a final model saved)."""
    status = _read_json(run_dir / "run.json").get("status")
    return (status == "failed" and checkpoints.last(run_dir / "checkpoints") is None
            and not (run_dir / "final").exists())


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, forget the lines of steps after the checkpoint: they are trained again."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    tmp.replace(path)


def use_bf16(precision: str, device: str) -> bool:
    """bf16 autocast on GPUs that support it and on CPUs where bf16 matmuls are native and fast (cpu_prefers_bf16)."""
    if precision != "auto":
        return precision == "bf16"
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    from chatforge.models.load import cpu_prefers_bf16

    return all_agree(cpu_prefers_bf16())


def all_agree(flag: bool) -> bool:
    """True when every process of a torchrun job says True (one process alone: its own flag). Each CPU process
    measures bf16's speed for itself (cpu_prefers_bf16); one that measured near the threshold must not train in
    another precision than the rest. The gloo process group started here is the one the Trainer then uses."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return flag
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    votes = torch.tensor([int(flag)])
    dist.all_reduce(votes, op=dist.ReduceOp.MIN)
    return bool(votes.item())


def end_processes() -> None:
    """Close the torchrun job's process group before the process exits. Left open, gloo's threads may still run at
    interpreter exit and abort it ("terminate called without an active exception", exit -6): torchrun would then
    report a finished run as failed. Called by the process's owner (the CLI), not by train(): a Python caller may
    keep using its own group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _make_trainer(cfg, model, tokenizer, train_examples, eval_examples, run_dir: Path, stats: dict, device: str,
                  bf16: bool, emit=None, share_prefixes: bool = False):
    from transformers import PrinterCallback, ProgressCallback, TrainingArguments
    from transformers.integrations import TensorBoardCallback

    from chatforge.data.pack import pack, padding_share
    from chatforge.train.callbacks import FollowLoad, MetricsLog, ReleaseFreeMemory, StopOnSigterm, TrainEvents
    from chatforge.train.trainer import ChatforgeTrainer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    preference = cfg.method in PREFERENCE_METHODS
    if preference:  # items are pairs (examples), packed into rows per micro-batch by the collator
        from chatforge.train.preference import preference_batching

        rows, eval_rows = train_examples, eval_examples
        micro, accum, item_tokens = preference_batching(cfg, rows, world)
    else:
        rows = pack(train_examples, cfg.max_length) if cfg.packing else train_examples
        eval_rows = pack(eval_examples, cfg.max_length) if cfg.packing else eval_examples
        stats["packing"] = {"rows": len(rows), "padding_share": round(padding_share(rows, cfg.max_length), 4)}
        # rows per forward pass: within --micro-batch-tokens, and within --batch-tokens (a step smaller than one
        # forward pass would otherwise be one forward pass, larger than asked)
        micro = max(1, min(cfg.micro_batch_tokens, cfg.batch_tokens) // cfg.max_length)
        accum = max(1, round(cfg.batch_tokens / (cfg.max_length * micro * world)))
        item_tokens = cfg.max_length
    steps_per_epoch = math.ceil(math.ceil(len(rows) / (micro * world)) / accum)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    save_every = cfg.save_every or max(1, total // 10)
    eval_every = cfg.eval_every or max(1, total // 5)
    stats["batching"] = {"micro_batch_rows": micro, "gradient_accumulation": accum, "processes": world,
                         "tokens_per_step": round(item_tokens * micro * accum * world), "steps": total}
    if preference:
        stats["batching"] = {"micro_batch_" + ("pairs" if cfg.method == "dpo" else "examples"): micro,
                             **{k: v for k, v in stats["batching"].items() if k != "micro_batch_rows"},
                             "pairs_per_step" if cfg.method == "dpo" else "examples_per_step": micro * accum * world}
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), per_device_train_batch_size=micro, per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, lr_scheduler_type=cfg.scheduler, warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay, max_grad_norm=1.0, logging_steps=1, save_strategy="steps",
        save_steps=save_every, eval_strategy="steps" if eval_rows else "no", eval_steps=eval_every,
        bf16=bf16, use_cpu=device == "cpu", seed=cfg.seed, data_seed=cfg.seed, report_to="none", disable_tqdm=True,
        remove_unused_columns=False, activation_checkpointing=cfg.gradient_checkpointing, use_cache=False,
        ddp_backend="gloo" if device == "cpu" and world > 1 else None, ddp_find_unused_parameters=False,
        log_level="warning",
        dataloader_pin_memory=device != "cpu")
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    callbacks = [metrics, StopOnSigterm(), FollowLoad(emit)]
    if emit is not None:
        callbacks.append(TrainEvents(metrics, emit))
    if cfg.tensorboard:
        tb = TensorBoardCallback()
        tb.logging_dir = str(run_dir / "tb")
        callbacks.append(tb)
    width = cfg.max_length if cfg.compile else 0  # compiled: every row padded to one width
    collator = Collator(tokenizer.pad_token_id, length=width)
    trainer_cls, extra = ChatforgeTrainer, {}
    if preference:
        from chatforge.train.preference import ChosenLogpsWatch, PreferenceCollator, PreferenceTrainer

        collator = PreferenceCollator("pairs" if cfg.method == "dpo" else "unpaired", tokenizer.pad_token_id,
                                      cfg.max_length, pack=cfg.packing, length=width, share_prefixes=share_prefixes)
        trainer_cls, extra = PreferenceTrainer, dict(objective=cfg.method, beta=cfg.beta, sft_weight=cfg.sft_weight)
        callbacks += [ChosenLogpsWatch(emit), ReleaseFreeMemory()]
    trainer = trainer_cls(model=model, args=args, data_collator=collator,
                          train_dataset=rows, eval_dataset=eval_rows or None, processing_class=tokenizer,
                          callbacks=callbacks, keep_checkpoints=cfg.keep_checkpoints, **extra)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


class Collator:
    """chatforge.data.pack.collate + the number of real (non-padding) tokens, for tokens/s."""

    def __init__(self, pad_id: int, length: int = 0):
        self.pad_id, self.length = pad_id, length

    def __call__(self, rows) -> dict:
        import torch

        from chatforge.data.pack import collate

        batch = collate(rows, self.pad_id, self.length)
        batch["num_tokens"] = torch.tensor(sum(len(r) for r in rows))
        return batch


# ---- fit ---------------------------------------------------------------------------------------------------
def fit(run: Run) -> int | None:
    """Train; return the step at which SIGTERM stopped the run, or None when it ran to the end."""
    trainer = run.trainer
    if run.resume_from is not None and run.cfg.max_steps and checkpoints.step_of(run.resume_from) >= run.cfg.max_steps:
        # the checkpoint is the last step (stopped or killed after it): the Trainer would train one step more.
        # _load_from_checkpoint is the Trainer's own loader (weights, adapters, FSDP/DeepSpeed): transformers <6
        from transformers import TrainerState

        trainer._load_from_checkpoint(str(run.resume_from))
        trainer.state = TrainerState.load_from_json(str(run.resume_from / "trainer_state.json"))
        return None
    trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    stop = next(cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "StopOnSigterm")
    return stop.stopped_at


# ---- save --------------------------------------------------------------------------------------------------
def save(run: Run) -> Path:
    """Final eval, final/ (atomically), run.json and the model card; the summary goes to the "done" event."""
    trainer = run.trainer
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]  # the same on every process
    if trainer.eval_dataset is not None and (not evals or evals[-1]["step"] != trainer.state.global_step):
        trainer.evaluate()
    final = run.dir / "final"
    staging = run.dir / "final.tmp"
    trainer.save_model(str(staging))  # adapter (LoRA) or full model, + tokenizer; process 0 writes
    trainer.accelerator.wait_for_everyone()
    if run.is_main:
        _finish_final(run, staging, final)
        summary = _summary(run)
        _update_run_json(run, status="complete", **summary)
        from chatforge.train.card import write_model_card

        write_model_card(run.dir, run.cfg, summary, run.stats)
        from chatforge.events import Event

        run.emit(Event("train", "done", step=summary["steps"], total=summary["steps"], metrics=summary))
    trainer.accelerator.wait_for_everyone()
    return run.dir


def _finish_final(run: Run, staging: Path, final: Path) -> None:
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle nobody needs to load
    record = {"system_prompt": system_prompt(run.stats)} if run.kind == "chat" else {}
    if run.cfg.method in PREFERENCE_METHODS:
        from chatforge.models.resolve import resolve
        from chatforge.train.preference import finish_adapter

        finish_adapter(run.cfg.model, staging)  # a starting run's own adapter is folded in
        started = json.loads((staging / "chatforge.json").read_text(encoding="utf-8"))
        record = {**started, "system_prompt": resolve(run.cfg.model).system_prompt}  # the starting run's prompt
    elif run.cfg.method == "lora":
        record = {"base_model": _portable_spec(run.cfg.model), **record}
    if record:  # what chat, serve, eval and export read back (chatforge.models.resolve.recorded_system_prompt)
        _write_json(staging / "chatforge.json", record)
    if final.exists():  # re-finishing a resumed run that had already completed
        shutil.rmtree(final)
    usual_modes(staging)
    staging.rename(final)


def system_prompt(stats: dict) -> str | None:
    """The training data's dominant system prompt (chatforge.data.stats.system_prompt_stats), or None."""
    return (stats.get("train", {}).get("system_prompts") or {}).get("dominant")


def _portable_spec(spec: str) -> str:
    """Catalog names and hub ids as given; local paths made absolute so the run works from any directory."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _summary(run: Run) -> dict:
    history = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    state = run.trainer.state
    train_rows = [r for r in history if "loss" in r]
    evals = [r for r in history if "eval_loss" in r]
    elapsed = time.time() - run.started
    out = {"steps": state.global_step, "epochs": round(state.epoch or 0.0, 3),
           "tokens_seen": state.num_input_tokens_seen,
           "final_train_loss": train_rows[-1]["loss"] if train_rows else None,
           "first_train_loss": train_rows[0]["loss"] if train_rows else None,
           "tokens_per_sec": _mean_tokens_per_sec(train_rows), "wall_seconds": round(elapsed, 1),
           "system_prompt": system_prompt(run.stats) if run.kind == "chat" else None}
    if out["tokens_per_sec"] and run.peak_flops:
        out["mfu"] = round(out["tokens_per_sec"] * run.flops_per_token / run.peak_flops, 4)
        out["peak_tflops"] = round(run.peak_flops / 1e12, 3)
    if evals:
        out.update(eval_loss=evals[-1]["eval_loss"], first_eval_loss=evals[0]["eval_loss"],
                   **{k: evals[-1][k] for k in ("eval_token_accuracy", "eval_reward_accuracy") if k in evals[-1]})
    return out


def _mean_tokens_per_sec(rows: list[dict]) -> float | None:
    # the first steps include warm-up (allocations, kernel selection): skip them when there are enough
    rows = rows[2:] if len(rows) > 5 else rows
    return round(sum(r["tokens_per_sec"] for r in rows) / len(rows), 1) if rows else None


def print_summary(run_dir: Path, summary: dict) -> None:
    """The final table on stdout (`chatforge train`'s; `summary` as run.json records it)."""
    lines = [("run", str(run_dir)), ("steps", summary["steps"]), ("epochs", summary["epochs"]),
             ("tokens seen", f"{summary['tokens_seen']:,}"),
             ("train loss", f"{summary['first_train_loss']:.4f} -> {summary['final_train_loss']:.4f}"
              if summary["final_train_loss"] is not None else "-")]
    if "eval_loss" in summary:
        lines += [("eval loss", f"{summary['first_eval_loss']:.4f} -> {summary['eval_loss']:.4f}")]
        lines += [(k.replace("_", " "), f"{summary[k]:.3f}") for k in ("eval_token_accuracy", "eval_reward_accuracy")
                  if k in summary]
    lines += [("tokens/s", summary["tokens_per_sec"])]
    if summary.get("mfu") is not None:
        # over 100 %: the peak was measured while something else held the cores (chatforge.train.mfu); say so
        busy = " on a busy machine: too low, so this share is too high" if summary["mfu"] > 1 else ""
        lines += [("MFU", f"{100 * summary['mfu']:.1f} % of a {summary['peak_tflops']:.2f} TFLOP/s matmul peak "
                          f"(measured{busy})")]
    lines += [("time", f"{summary['wall_seconds']:.0f} s"),
              ("model", str(run_dir / "final"))]
    if summary.get("system_prompt"):
        lines.append(("system prompt", f"{summary['system_prompt']}  (the data's; applied when a request has none)"))
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in lines))
    print(f"\nnext: chatforge chat {run_dir}    chatforge eval {run_dir} --data HELDOUT")


def _run_facts(run: Run) -> dict:
    import torch

    args = run.trainer.args
    return {"base_model": _portable_spec(run.cfg.model), "method": run.cfg.method, "kind": run.kind,
            "system_prompt": system_prompt(run.stats) if run.kind == "chat" else None,
            "data": run.cfg.data, "data_sha256": data_sha256(run.cfg.data), "eval_data": run.cfg.eval_data,
            "eval_data_sha256": data_sha256(run.cfg.eval_data), "device": str(args.device),
            "precision": run.precision, "attention": run.attention,
            "processes": args.world_size, "torch": torch.__version__,
            "fused_head": run.trainer.head is not None,  # LM head + loss fused in chunks (train/loss.py)
            "resumed_from": str(run.resume_from) if run.resume_from else None,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def data_sha256(data: str | None) -> str | None:
    """One content hash of a run's data (every file, in order, with its name): which data a run was trained on."""
    import hashlib

    from chatforge.data.formats import data_files

    if not data:
        return None
    h = hashlib.sha256()
    for f in data_files(data):
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _update_run_json(run: Run, **fields) -> None:
    """Merge fields into run.json (written atomically; process 0 only)."""
    if not run.is_main:
        return
    path = run.dir / "run.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(fields)
    _write_json(path, data)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
