"""A measured training step, as `chatforge train` runs it by default, for `chatforge check`'s time estimate.

The estimate is only as good as its likeness to the real step: the default method (LoRA on every linear layer),
the default precision (bf16 autocast where the CPU runs bf16 matmuls natively and fast), packed attention over rows of
several examples, the fused LM head + loss on the trained positions, and the AdamW step over the adapters.
data.stats.estimate_epoch_seconds times it on random tokens and scales it to one packed epoch.

A measured step is remembered (`recall` / `remember`, CHATFORGE_HOME/speed.json, owned here): the same model on
the same machine (CPU, device, threads, torch and chatforge versions) at the same shape runs as fast the next
time, so `chatforge check` on the same kind of data answers in seconds instead of loading the model and timing it
again (`--remeasure` times it anew, e.g. after the machine got busier or freer).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch

IGNORE = -100


class DefaultStep:
    """step(model, ids (B, T)): one forward + backward + optimizer step of the default recipe on `ids`, cut
    into examples of `example_length` tokens (position ids restarting at 0, the prompt's first half untrained)."""

    def __init__(self, model, *, example_length: int):
        from chatforge.train.attention import use_packed_attention
        from chatforge.train.config import TrainConfig
        from chatforge.train.loss import HeadBypass
        from chatforge.train.run import apply_method, use_bf16

        cfg = TrainConfig()
        device = str(next(model.parameters()).device)
        self.bf16 = use_bf16(cfg.precision, device)
        self.model = apply_method(model, _resolved(cfg), bf16=self.bf16)
        use_packed_attention(self.model)
        self.head = HeadBypass(self.model)
        self.example_length = max(2, example_length)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-12)  # a step that changes (next to) nothing
        self.method = cfg.method
        self.precision = "bf16" if self.bf16 else "fp32"

    def __call__(self, model, ids: torch.Tensor) -> None:
        from chatforge.train.loss import linear_cross_entropy
        from chatforge.train.trainer import selective_outputs

        t = ids.shape[1]
        pos = (torch.arange(t, device=ids.device) % self.example_length).expand_as(ids)  # (B, T)
        labels = ids.clone()
        labels[(pos < self.example_length // 2)] = IGNORE  # the prompt half of each example
        batch = {"input_ids": ids, "position_ids": pos, "labels": labels}
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden, targets = selective_outputs(self.model, batch, self.head)
        loss = linear_cross_entropy(hidden, self.head.weight, self.head.bias, targets,
                                    torch.bfloat16 if self.bf16 else None) / max(targets.numel(), 1)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _resolved(cfg):
    import dataclasses

    return dataclasses.replace(cfg, lr=cfg.learning_rate, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank)


def epoch_rows(examples: list, kind: str, max_length: int, *, eval_split: float, seed: int) -> tuple[int, list]:
    """(packed rows, the examples that train) of one epoch of `chatforge train` on these encoded examples: rows of
    `max_length` (chats longer than it are dropped, raw text is cut into blocks of it), the eval split held out
    (chatforge.train.run.held_out; 0 when there is --eval-data). Examples encoded at a longer --max-length
    (chatforge check's default is 2048) give the rows of the train run's own encoding."""
    from chatforge.data.encode import Encoded
    from chatforge.data.pack import pack
    from chatforge.train.run import held_out

    if kind == "text":  # one token stream cut into blocks: the same tokens in blocks of max_length
        stream = sum(len(e) for e in examples)
        lengths = [min(max_length, stream - s) for s in range(0, stream, max_length)]
        examples = [Encoded([0] * n, [0] * n) for n in lengths if n > 1]
    else:
        examples = [e for e in examples if len(e) <= max_length]
    held = held_out(len(examples), eval_split, seed)
    kept = [e for i, e in enumerate(examples) if i not in held]
    return len(pack(kept, max_length)), kept


def example_bucket(mean_length: int) -> int:
    """The example length the step is timed with: the data's mean rounded to a power of two (>= 16), so that data
    of about the same shape shares one measurement (attention inside a packed row costs ~ its examples'
    length; within a factor of two that is a few percent of a step)."""
    return max(16, 1 << round(math.log2(max(1, mean_length))))


def step_key(model_path: Path, adapter: Path | None, *, device: str, row_length: int, rows: int,
             example_length: int) -> str:
    """What a measured step's speed depends on, as one string: the model (its config and weight files), the
    machine (CPU model, device, torch's threads), the software (torch, chatforge) and the step's shape."""
    import platform

    import chatforge

    def files(d: Path | None) -> list:
        if d is None:
            return []
        out = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(d).glob("*.safetensors"))]
        config = Path(d) / ("adapter_config.json" if d == adapter else "config.json")
        return out + [hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None]

    facts = {"model": [str(Path(model_path).resolve()), files(Path(model_path))],
             "adapter": [str(Path(adapter).resolve()), files(Path(adapter))] if adapter else None,
             "cpu": _cpu_name(), "machine": platform.machine(), "device": device, "threads": torch.get_num_threads(),
             "torch": torch.__version__, "chatforge": chatforge.__version__,
             "shape": [rows, row_length, example_length]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


def _cache_file() -> Path:
    from chatforge.home import chatforge_home

    return chatforge_home() / "speed.json"


def recall(key: str) -> dict | None:
    """The figures `remember` kept for `key`, or None (never measured, or an unreadable cache: measure again)."""
    try:
        entry = json.loads(_cache_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("tokens_per_second"), (int, float)) else None


def remember(key: str, figures: dict) -> None:
    """Keep a measured step's figures (with when it was measured) for `recall`; the file is replaced whole, so a
    crash leaves the old one. A cache that cannot be written costs only the next measurement."""
    path = _cache_file()
    try:
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
            cache = cache if isinstance(cache, dict) else {}
        except (OSError, ValueError):
            cache = {}
        cache[key] = dict(figures, measured_at=time.strftime("%Y-%m-%d %H:%M"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
