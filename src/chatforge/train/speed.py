"""A measured training step, as `chatforge train` runs it by default, for `chatforge check`'s time estimate.

The estimate is only as good as its likeness to the real step: the default method (LoRA on every linear layer),
the default precision (bf16 autocast where the CPU runs bf16 matmuls natively and fast), packed attention over rows of
several examples, the fused LM head + loss on the trained positions, and the AdamW step over the adapters.
data.stats.estimate_epoch_seconds times it on random tokens and scales it to one packed epoch.
"""

from __future__ import annotations

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
