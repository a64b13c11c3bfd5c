"""Trainer callbacks: metrics.jsonl, progress events (and the CLI's bar that shows them), a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

PREFERENCE_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margin", "reward_accuracy", "logps_chosen",
                   "logps_rejected", "kl", "sft_loss")  # dpo / kto (train/preference.py)
TRAIN_KEYS = ("loss", "learning_rate") + PREFERENCE_KEYS
EVAL_KEYS = ("eval_loss", "eval_token_accuracy", "eval_reward_accuracy", "eval_rewards_margin")


class MetricsLog(TrainerCallback):
    """Appends one JSON line per log event to RUN/metrics.jsonl (train lines and eval lines, see CONTRACTS.md)."""

    def __init__(self, path: Path):
        self.path = path
        self.last = None  # (time, tokens_seen) at the previous train line, for tokens/s over the interval
        self.history: list[dict] = []
        self.mfu_scale: float | None = None  # MFU per (token/s): model FLOPs per token / peak FLOP/s (mfu.py)

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
               "tokens_seen": state.num_input_tokens_seen}
        if "loss" in logs:
            now = time.perf_counter()
            then, tokens = self.last
            row.update({k: logs[k] for k in TRAIN_KEYS if k in logs})
            row["tokens_per_sec"] = round((state.num_input_tokens_seen - tokens) / max(now - then, 1e-9), 1)
            if self.mfu_scale is not None:
                row["mfu"] = round(row["tokens_per_sec"] * self.mfu_scale, 4)
            self.last = (now, state.num_input_tokens_seen)
        elif "eval_loss" in logs:
            row.update({k: logs[k] for k in EVAL_KEYS if k in logs})
            if self.last is not None:  # (None: an evaluation before training started)
                self.last = (time.perf_counter(), self.last[1])  # eval time is not training time
        else:
            return
        self.history.append(row)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class TrainEvents(TrainerCallback):
    """Turns the Trainer's progress into chatforge.events.Event for `on_event` (process 0 only):
    start (total steps), step (each metrics.jsonl train line), eval (each eval line)."""

    def __init__(self, metrics: MetricsLog, on_event):
        self.metrics, self.on_event = metrics, on_event
        self.shown = 0  # metrics rows already sent

    def _emit(self, phase, state, **kw):
        from chatforge.events import Event

        self.on_event(Event("train", phase, step=state.global_step, total=state.max_steps, **kw))

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._emit("start", state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        for row in self.metrics.history[self.shown:]:
            self._emit("step" if "loss" in row else "eval", state, metrics=dict(row))
        self.shown = len(self.metrics.history)


class ProgressBar:
    """The CLI's view of training events: one tqdm bar (step / total, loss, tokens/s, tqdm's ETA)."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        if event.stage != "train":
            return
        if event.phase == "start":
            from tqdm.auto import tqdm

            self.close()
            self.bar = tqdm(total=event.total, initial=event.step or 0, desc="train", unit="step",
                            file=sys.stderr, dynamic_ncols=True)
        elif event.phase == "message":  # a line for the user (e.g. a training warning)
            (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr, flush=True))(
                event.message)
        elif self.bar is None:
            return
        elif event.phase == "step":
            self.bar.update((event.step or 0) - self.bar.n)
            m = event.metrics
            self.bar.set_postfix(loss=f"{m.get('loss', float('nan')):.4f}",
                                 tok_s=f"{m.get('tokens_per_sec', 0):.0f}", refresh=True)
        elif event.phase == "eval":
            m = event.metrics
            accuracy = ", ".join(f"{k[5:].replace('_', ' ')} {m[k]:.3f}" for k in EVAL_KEYS[1:] if k in m)
            self.bar.write(f"step {event.step}: eval loss {m.get('eval_loss', float('nan')):.4f}"
                           + (f", {accuracy}" if accuracy else ""))
        elif event.phase in ("done", "stopped", "error"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class FollowLoad(TrainerCallback):
    """Follows the machine's load during training (chatforge/threads.py Follow): a process that starts competing
    for a core after the run began makes the run drop a thread instead of stalling at every operator's barrier;
    when it ends, the thread comes back. Each change is a message event."""

    def __init__(self, emit=None, follow=None):
        from chatforge.threads import Follow

        self.follow = follow or Follow()
        self.emit = emit

    def on_step_end(self, args, state, control, **kwargs):
        n = self.follow.poll()
        if n is not None and self.emit is not None and state.is_world_process_zero:
            from chatforge.events import Event

            self.emit(Event("train", "message", step=state.global_step, total=state.max_steps,
                            message=f"threads: {n} (the machine's load changed)"))


class ReleaseFreeMemory(TrainerCallback):
    """After each optimizer step, hand the allocator's free memory back to the system (chatforge/memory.py):
    preference micro-batches pack into a varying number of rows, and without it the freed activations of one
    step fit the next step's badly and the run's RSS grows step by step."""

    def on_step_end(self, args, state, control, **kwargs):
        from chatforge.memory import release_free_memory

        release_free_memory()


class StopOnSigterm(TrainerCallback):
    """SIGTERM (a scheduler's preemption, `kill`) -> finish the current step, save a checkpoint, stop."""

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.requested
        if args.world_size > 1:  # all processes must stop at the same step
            import torch
            import torch.distributed as dist

            flag = torch.tensor([float(requested)], device=args.device)
            dist.all_reduce(flag)
            requested = bool(flag.item())
        if requested:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
