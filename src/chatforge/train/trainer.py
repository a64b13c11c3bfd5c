"""ChatforgeTrainer: transformers.Trainer with chatforge's loss, evaluation, checkpoints and safety stops.

Only hooks are overridden; the training loop, gradient accumulation, DDP/FSDP/DeepSpeed, the optimizer,
the scheduler's decay and resume bookkeeping are the Trainer's own.

- compute_loss: only positions whose next token carries a label go through the LM head. The model is called
  with `logits_to_keep=<bool mask (B, T)>`, so the body runs on every token but the (large) vocabulary
  projection and the cross entropy only on the N trained positions: hidden (B, T, H) -> (N, H) -> logits (N, V).
  Where the model allows it (loss.HeadBypass), the model returns the (N, H) hidden states instead and the head
  and the loss run fused, chunk by chunk (loss.linear_cross_entropy): the (N, V) logits never exist at once.
  Calling the model's own forward keeps DDP's gradient hooks, PEFT and autocast working.
  The loss is the mean over the trained tokens of the whole optimizer step: each micro-batch's summed loss is
  divided by `num_items_in_batch` (trained tokens of all accumulated micro-batches, on all processes).
- evaluate: eval loss and token accuracy over the trained tokens of the eval split.
- _save_checkpoint: atomic, signed checkpoints (see checkpoints.py); a full disk is a clear error.
- training_step: a NaN/inf loss stops the run naming the step (before the optimizer applies it).
- create_scheduler: transformers' schedule, but the first warm-up step does not run at learning rate 0.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from chatforge.atomic import is_disk_full
from chatforge.errors import ChatforgeError
from chatforge.train import checkpoints
from chatforge.train.loss import HeadBypass, linear_cross_entropy, token_scores

IGNORE = -100


class NonFiniteLoss(ChatforgeError):
    """The loss became NaN or inf; the run stops without saving the broken weights."""


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: position t predicts a label (labels[t + 1] != -100)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def selective_outputs(model, inputs: dict, head: HeadBypass | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model on the batch; for the N positions that predict a label return the logits (N, V), or with
    `head` the final hidden states (N, H), and those labels (N,)."""
    labels = inputs["labels"]  # (B, T), -100 where no loss is taken
    keep = trained_positions(labels)
    model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_tokens")}
    targets = labels[:, 1:][keep[:, :-1]]
    if head is not None:
        return head(model, **model_inputs, logits_to_keep=keep, use_cache=False), targets
    return model(**model_inputs, logits_to_keep=keep, use_cache=False).logits, targets


class ChatforgeTrainer(Trainer):
    # Our loss is already normalised over the whole accumulated batch: the Trainer must not divide it again.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, keep_checkpoints: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_checkpoints = keep_checkpoints
        self._staging: Path | None = None
        # Ask the Trainer to count trained tokens over the accumulated micro-batches (num_items_in_batch).
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True
        self.head = self._fused_head()

    def _fused_head(self) -> HeadBypass | None:
        """The fused head + loss, unless the head's weight is sharded (FSDP, ZeRO-3) or the model does more
        than head(hidden) to make its logits."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return None
        head = HeadBypass(self.model)
        with self.accelerator.autocast():
            return head if head.matches(self.model, self.args.device, self._head_dtype) else None

    @property
    def _head_dtype(self) -> torch.dtype | None:
        # accelerate runs only the model's forward under autocast (and returns fp32 outputs): the fused head
        # runs after it, so it is told the mixed-precision dtype.
        return torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None

    # ---- loss ------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.head is not None and not return_outputs:
            hidden, targets = selective_outputs(model, inputs, self.head)  # (N, H), (N,)
            loss_sum = linear_cross_entropy(hidden, self.head.weight, self.head.bias, targets, self._head_dtype)
        else:
            logits, targets = selective_outputs(model, inputs)  # (N, V), (N,)
            loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        if num_items_in_batch is None:  # called outside the training loop
            num_items_in_batch = targets.numel()
        loss = loss_sum / max(num_items_in_batch, 1)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts every process's tokens, and DDP averages gradients over processes.
            loss = loss * self.args.world_size
        return (loss, logits) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = (~torch.isfinite(loss)).float()
        if self.args.world_size > 1:  # every process must stop together, or the others hang in all-reduce
            torch.distributed.all_reduce(bad)
        if bad.item():
            step = self.state.global_step + 1
            raise NonFiniteLoss(f"the training loss became {loss.item()} at step {step}; training stopped "
                                "before applying it", exit_code=1,
                                hint="lower --lr (or check the data); the last checkpoint is intact, so "
                                     "--resume continues from it")
        return loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers' schedule (--scheduler), except that warm-up starts above zero: optimizer step s (0-based)
        of the W warm-up steps runs at (s + 1) / (W + 1) of the peak, as nanoGPT's warm-up does. transformers'
        runs step 0 at s / W = 0, a step that changes nothing: a 1-step run would save the base model unchanged.
        After warm-up, transformers' own decay (taken from its scheduler, built on a throwaway optimizer)."""
        from torch.optim.lr_scheduler import LambdaLR
        from transformers import get_scheduler

        if self.lr_scheduler is not None:
            return self.lr_scheduler
        warmup = self.args.get_warmup_steps(num_training_steps)
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        decay = get_scheduler(self.args.lr_scheduler_type, optimizer=probe, num_warmup_steps=warmup,
                              num_training_steps=num_training_steps,
                              scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
        if not isinstance(decay, LambdaLR):  # (no such --scheduler choice today)
            return super().create_scheduler(num_training_steps, optimizer)
        after = decay.lr_lambdas[0]
        self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                     lambda step: (step + 1) / (warmup + 1) if step < warmup else after(step))
        return self.lr_scheduler

    def _track_num_input_tokens(self, inputs):
        """Tokens seen = real (non-padding) input tokens on all processes; kept in the saved TrainerState."""
        n = torch.as_tensor(inputs["num_tokens"], device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += int(self.accelerator.gather(n).sum().item())

    # ---- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Mean loss and next-token accuracy over the trained tokens of the eval split (all processes)."""
        model = self.model_wrapped
        was_training = model.training
        model.eval()
        totals = torch.zeros(3, device=self.args.device)  # loss sum, correct, tokens
        for batch in self.get_eval_dataloader(eval_dataset):
            batch = self._prepare_inputs(batch)
            with self.accelerator.autocast():  # also before training, when the model is not prepared yet
                loss, correct = self._token_scores(model, batch)  # (N,), (N,)
            per_token = torch.stack([loss, correct.float(), torch.ones_like(loss)], 1)
            rows = trained_positions(batch["labels"]).nonzero()[:, 0]  # (N,) row of each position
            per_row = per_token.new_zeros(len(batch["labels"]), 3).index_add_(0, rows, per_token)  # (B, 3)
            # gather_for_metrics drops the rows repeated to give every process the same number of batches
            totals += self.accelerator.gather_for_metrics(per_row).sum(0)
        model.train(was_training)
        n = max(totals[2].item(), 1.0)
        metrics = {f"{metric_key_prefix}_loss": totals[0].item() / n,
                   f"{metric_key_prefix}_token_accuracy": totals[1].item() / n}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _token_scores(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (N,) and next-token correctness (N,) at the N trained positions of the batch."""
        if self.head is not None:
            hidden, targets = selective_outputs(model, batch, self.head)
            return token_scores(hidden, self.head.weight, self.head.bias, targets, self._head_dtype)
        logits, targets = selective_outputs(model, batch)
        logits = logits.float()
        return F.cross_entropy(logits, targets, reduction="none"), logits.argmax(-1) == targets

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _get_output_dir(self, trial) -> str:
        # While saving, the Trainer writes into the staging directory; commit() renames it into place.
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        root = Path(self.args.output_dir)
        self._staging = root / checkpoints.STAGING
        staged = self._staging / f"checkpoint-{self.state.global_step}"
        try:
            if self.args.should_save:
                checkpoints.clean_partial(root)
            self.accelerator.wait_for_everyone()
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                checkpoints.commit(staged, root, self.keep_checkpoints)
            self.accelerator.wait_for_everyone()
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError("iostream error")
            full = is_disk_full(e) or shutil.disk_usage(root).free < (1 << 20)
            if isinstance(e, RuntimeError) and not full:
                raise
            checkpoints.clean_partial(root)
            previous = checkpoints.last(root)
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            what = "the disk is full" if full else (getattr(e, "strerror", None) or str(e))
            raise ChatforgeError(f"cannot save checkpoint-{self.state.global_step} to {root}: {what}; {kept}",
                                 hint="free some space (or lower --keep-checkpoints), then re-run with --resume",
                                 exit_code=1) from None
        finally:
            self._staging = None
