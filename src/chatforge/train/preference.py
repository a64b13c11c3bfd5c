"""Preference tuning: DPO (pairs) and KTO (answers labelled good / bad) on chatforge's Trainer.

The policy is the starting model (any model or run) with fresh LoRA adapters; the reference is the same weights
with the adapters disabled, so no second copy of the model exists. A starting run that is itself a LoRA adapter
is merged into the weights first; at the end its adapter and the new one are folded into one adapter on the
original base (`fold_adapters`), so the result loads like any other run.

A micro-batch of P pairs is the 2P sequences [chosen_1..P, rejected_1..P] packed into rows of --max-length
(`chatforge.data.preference.collate_sequences`; each label knows its sequence), with packed attention each
pair's common start once: the prompt, and the answers' first words where they agree (rejected continues what
chosen starts; the tokens laid out once count for both; KTO: an example and its KL sequence). One pass of the
policy and one no-grad pass of the reference give per-sequence summed log-probs (answer tokens only), through
the fused head:

    logp[s]  = sum over answer tokens of log p(token)                 (S,) policy, ref_logp[s] the same, frozen
    DPO      loss_i = -logsigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))                 TRL's "sigmoid"
    KTO      kl = mean_i(logp(prompt_i + answer_{i-1}) - ref(...)) clamped at 0, detached (per micro-batch)
             loss_i = 1 - sigmoid(beta * (logratio_i - kl)) if desirable else 1 - sigmoid(beta * (kl - logratio_i))
    rewards  beta * (logp - ref_logp); reward accuracy = share of pairs whose chosen reward > rejected reward

The step's loss is the mean over its pairs (examples): each micro-batch's summed loss is divided by the pairs of
the whole optimizer step on all processes (`get_batch_samples`), like the SFT loss over tokens. With one
micro-batch it is exactly TRL's DPOTrainer / KTOTrainer loss (tests/unit/train/test_preference_trl.py).
--sft-weight adds w * (mean cross entropy of the chosen answers' tokens), weighted by the micro-batch's pairs.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from chatforge.train.trainer import ChatforgeTrainer, selective_outputs, trained_positions

LOGGED = ("rewards_chosen", "rewards_rejected", "rewards_margin", "reward_accuracy", "logps_chosen",
          "logps_rejected", "kl", "sft_loss")
_NOT_MODEL_INPUTS = ("sequence", "also", "count", "label")


class PreferenceCollator:
    """Pairs (DPO) or labelled examples (KTO) -> one packed batch + "count" (pairs/examples) [+ "label"]."""

    def __init__(self, kind: str, pad_id: int, max_length: int, pack: bool = True, length: int = 0,
                 share_prefixes: bool = False):
        self.kind, self.pad_id, self.max_length, self.pack = kind, pad_id, max_length, pack
        self.length = length  # rows padded at least to this (a compiled model: --max-length, one width)
        # a pair's common start once for its two sequences: only chatforge's packed attention reads that layout
        self.share_prefixes = share_prefixes

    def __call__(self, examples) -> dict:
        from chatforge.data.preference import collate_sequences, mismatched

        n = len(examples)
        if self.kind == "pairs":
            seqs = [p.chosen for p in examples] + [p.rejected for p in examples]
        else:  # each example, then its prompt with the previous example's answer (the KL estimate, as TRL's)
            seqs = [e.example for e in examples] + [mismatched(examples[i].example, examples[i - 1].example)
                                                    for i in range(n)]
        share = [(i, n + i) for i in range(n)] if self.share_prefixes else ()  # i and n + i: one prompt each
        batch = collate_sequences(seqs, self.pad_id, self.max_length, pack=self.pack, length=self.length,
                                  share=share)
        batch["count"] = torch.tensor(n)
        batch["num_tokens"] = torch.tensor(sum(len(s) for s in seqs))  # the sequences' (a shared start twice)
        if self.kind == "unpaired":
            batch["label"] = torch.tensor([bool(e.label) for e in examples])
        return batch


def unpair(pairs) -> list:
    """KTO from pairs: every chosen answer is a desirable example, every rejected one an undesirable one."""
    from chatforge.data.preference import EncodedUnpaired

    return [EncodedUnpaired(e, label) for p in pairs for e, label in ((p.chosen, True), (p.rejected, False))]


class PreferenceTrainer(ChatforgeTrainer):
    def __init__(self, *args, objective: str = "dpo", beta: float = 0.1, sft_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective, self.beta, self.sft_weight = objective, beta, sft_weight
        self._logged: dict[str, list[float]] = {}

    # ---- the step's pair count ---------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        count = torch.tensor(sum(int(b["count"]) for b in batches), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return batches, count

    # ---- log-probs ---------------------------------------------------------------------------------------
    def _sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-prob of each sequence's labels (S,) and its label count (S,), S = sequences in the batch."""
        from chatforge.train.loss import linear_token_losses

        keep = trained_positions(inputs["labels"])
        seq = inputs["sequence"][:, 1:][keep[:, :-1]]  # (N,) sequence of each trained position
        also = inputs["also"][:, 1:][keep[:, :-1]]  # (N,) the other sequence of a pair's shared start, or -1
        model_inputs = {k: v for k, v in inputs.items() if k not in _NOT_MODEL_INPUTS}
        if self.head is not None:
            hidden, targets = selective_outputs(model, model_inputs, self.head)  # (N, H), (N,)
            nll = linear_token_losses(hidden, self.head.weight, self.head.bias, targets, self._head_dtype)
        else:
            logits, targets = selective_outputs(model, model_inputs)  # (N, V)
            nll = F.cross_entropy(logits.float(), targets, reduction="none")
        n_seq = 2 * int(inputs["count"])  # DPO: chosen + rejected; KTO: example + its KL sequence
        shared = also >= 0  # a token laid out once for both sequences of a pair counts in each
        logps = nll.new_zeros(n_seq).index_add(0, seq, -nll).index_add(0, also[shared], -nll[shared])
        counts = nll.new_zeros(n_seq).index_add(0, seq, torch.ones_like(nll)).index_add(
            0, also[shared], torch.ones_like(nll[shared]))
        return logps, counts

    @contextmanager
    def _reference(self):
        """The reference model: the same weights with the LoRA adapters disabled (no grad, no second copy)."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        with torch.no_grad(), self.accelerator.autocast(), unwrapped.disable_adapter():
            yield unwrapped

    # ---- loss --------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        n = int(inputs["count"])
        logps, counts = self._sequence_logps(model, inputs)
        with self._reference() as ref_model:
            ref_logps, _ = self._sequence_logps(ref_model, inputs)
        losses, metrics = (self._dpo if self.objective == "dpo" else self._kto)(n, logps, ref_logps, inputs)
        loss_sum = losses.sum()
        if self.sft_weight and self.objective == "dpo":
            chosen_tokens = counts[:n].sum().clamp(min=1)
            sft = -logps[:n].sum() / chosen_tokens  # mean cross entropy of the chosen answers' tokens
            loss_sum = loss_sum + self.sft_weight * sft * n
            metrics["sft_loss"] = sft.detach().reshape(1)
        total = num_items_in_batch if num_items_in_batch is not None else n
        loss = loss_sum / max(total, 1)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.args.world_size
        if self.model.training:
            self._record(metrics)
        return (loss, None) if return_outputs else loss

    def _dpo(self, n, logps, ref_logps, inputs):
        chosen_ratio = logps[:n] - ref_logps[:n]  # (P,) log pi/ref of the chosen answers
        rejected_ratio = logps[n:2 * n] - ref_logps[n:2 * n]
        losses = -F.logsigmoid(self.beta * (chosen_ratio - rejected_ratio))
        chosen_r, rejected_r = self.beta * chosen_ratio.detach(), self.beta * rejected_ratio.detach()
        return losses, {"rewards_chosen": chosen_r, "rewards_rejected": rejected_r,
                        "rewards_margin": chosen_r - rejected_r, "reward_accuracy": (chosen_r > rejected_r).float(),
                        "logps_chosen": logps[:n].detach(), "logps_rejected": logps[n:2 * n].detach()}

    def _kto(self, n, logps, ref_logps, inputs):
        label = inputs["label"].bool()  # (B,)
        ratio = logps[:n] - ref_logps[:n]
        kl = (logps[n:2 * n] - ref_logps[n:2 * n]).mean().detach().clamp(min=0)
        losses = torch.where(label, 1 - torch.sigmoid(self.beta * (ratio - kl)),
                             1 - torch.sigmoid(self.beta * (kl - ratio)))
        rewards = self.beta * ratio.detach()
        out = {"kl": kl.reshape(1), "rewards_chosen": rewards[label], "rewards_rejected": rewards[~label],
               "logps_chosen": logps[:n].detach()[label], "logps_rejected": logps[:n].detach()[~label]}
        return losses, out

    # ---- metrics -----------------------------------------------------------------------------------------
    def _record(self, metrics: dict) -> None:
        for k, v in metrics.items():
            v = v.float().reshape(-1)
            if self.args.world_size > 1:  # every process's pairs (sizes may differ: pad with NaN)
                v = self._gather_ragged(v)
            self._logged.setdefault(k, []).extend(v[~torch.isnan(v)].tolist())

    def _gather_ragged(self, v: torch.Tensor) -> torch.Tensor:
        size = self.accelerator.gather(torch.tensor([v.numel()], device=v.device)).max()
        padded = torch.full((int(size),), float("nan"), device=v.device)
        padded[:v.numel()] = v
        return self.accelerator.gather(padded)

    def log(self, logs: dict, start_time=None) -> None:
        if "loss" in logs and self._logged:
            means = {k: sum(v) / len(v) for k, v in self._logged.items() if v}
            if "rewards_chosen" in means and "rewards_rejected" in means and "rewards_margin" not in means:
                means["rewards_margin"] = means["rewards_chosen"] - means["rewards_rejected"]
            logs.update({k: round(v, 6) for k, v in means.items()})
            self._logged = {}
        super().log(logs, start_time)

    # ---- evaluation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Mean preference loss, reward accuracy and margin over the held-out pairs (all processes)."""
        model = self.model_wrapped
        was_training = model.training
        model.eval()
        sums = torch.zeros(4, device=self.args.device)  # loss, correct, margin, pairs
        for batch in self.get_eval_dataloader(eval_dataset):
            batch = self._prepare_inputs(batch)
            n = int(batch["count"])
            with self.accelerator.autocast():
                logps, _ = self._sequence_logps(model, batch)
            with self._reference() as ref_model:
                ref_logps, _ = self._sequence_logps(ref_model, batch)
            losses, m = (self._dpo if self.objective == "dpo" else self._kto)(n, logps, ref_logps, batch)
            if self.objective == "dpo":
                row = torch.stack([losses.sum(), m["reward_accuracy"].sum(), m["rewards_margin"].sum(),
                                   torch.tensor(float(n), device=losses.device)])
            else:
                row = torch.stack([losses.sum(), torch.tensor(float("nan"), device=losses.device),
                                   torch.tensor(float("nan"), device=losses.device),
                                   torch.tensor(float(n), device=losses.device)])
            sums += self.accelerator.gather_for_metrics(row[None]).sum(0)
        model.train(was_training)
        n = max(sums[3].item(), 1.0)
        metrics = {f"{metric_key_prefix}_loss": sums[0].item() / n}
        if self.objective == "dpo":
            metrics[f"{metric_key_prefix}_reward_accuracy"] = sums[1].item() / n
            metrics[f"{metric_key_prefix}_rewards_margin"] = sums[2].item() / n
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class ChosenLogpsWatch(TrainerCallback):
    """Warns once (a "message" event) when the chosen answers' log-probability falls steadily: DPO lowering both
    answers, the known failure the SFT term (--sft-weight) counters."""

    WINDOW = 10

    def __init__(self, emit=None):
        self.emit = emit
        self.values: list[float] = []
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "logps_chosen" not in logs or self.warned or not state.is_world_process_zero:
            return
        self.values.append(logs["logps_chosen"])
        if falling(self.values[-self.WINDOW:], self.WINDOW) and logs.get("rewards_chosen", 0.0) < 0:
            self.warned = True
            first, last = self.values[-self.WINDOW], self.values[-1]
            message = (f"chatforge train: warning: the chosen answers' log-probability has fallen steadily for "
                       f"{self.WINDOW} steps ({first:.2f} -> {last:.2f} per answer, step {state.global_step}): "
                       "DPO is making the preferred answers less likely too. Add --sft-weight 0.1 (an SFT loss "
                       "on the chosen answers) or lower --lr.")
            if self.emit is None:
                print(message, file=sys.stderr, flush=True)
            else:
                from chatforge.events import Event

                self.emit(Event("train", "message", step=state.global_step, total=state.max_steps,
                                message=message))


def falling(values: list[float], window: int) -> bool:
    """A steady fall: `window` values whose least-squares slope is negative, where most steps go down and the
    last quarter sits clearly below the first."""
    if len(values) < window:
        return False
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    slope = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))
    downs = sum(b < a for a, b in zip(values, values[1:]))
    q = max(1, n // 4)
    return slope < 0 and downs >= 0.6 * (n - 1) and sum(values[-q:]) / q < sum(values[:q]) / q


# ---- a starting run that is itself an adapter ----------------------------------------------------------------
def fold_adapters(earlier, new, out) -> None:
    """Write to `out` one LoRA adapter equal to `earlier` followed by `new` (both PEFT LoRA directories of the
    same base): delta W = s1 B1 A1 + s2 B2 A2 = [s1 B1, s2 B2] @ [A1; A2], rank r1 + r2 with scaling 1."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    earlier, new, out = Path(earlier), Path(new), Path(out)
    cfg_old = json.loads((earlier / "adapter_config.json").read_text())
    cfg_new = json.loads((new / "adapter_config.json").read_text())
    for c in (cfg_old, cfg_new):
        if c.get("use_rslora") or c.get("use_dora") or c.get("rank_pattern") or c.get("alpha_pattern"):
            raise ValueError("only plain LoRA adapters with one rank can be folded")
    s_old, s_new = cfg_old["lora_alpha"] / cfg_old["r"], cfg_new["lora_alpha"] / cfg_new["r"]
    old, fresh = load_file(earlier / "adapter_model.safetensors"), load_file(new / "adapter_model.safetensors")
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in (*old, *fresh) if ".lora_" in k})
    folded = {}
    for m in modules:
        a_key, b_key = f"{m}.lora_A.weight", f"{m}.lora_B.weight"
        shape_src = old if a_key in old else fresh
        a_in, b_out = shape_src[a_key].shape[1], shape_src[b_key].shape[0]
        a1 = old.get(a_key, torch.zeros(cfg_old["r"], a_in))
        b1 = old.get(b_key, torch.zeros(b_out, cfg_old["r"]))
        a2 = fresh.get(a_key, torch.zeros(cfg_new["r"], a_in))
        b2 = fresh.get(b_key, torch.zeros(b_out, cfg_new["r"]))
        folded[a_key] = torch.cat([a1.float(), a2.float()], 0).contiguous()
        folded[b_key] = torch.cat([b1.float() * s_old, b2.float() * s_new], 1).contiguous()
    rank = cfg_old["r"] + cfg_new["r"]
    targets = sorted(set(_as_list(cfg_old.get("target_modules"))) | set(_as_list(cfg_new.get("target_modules"))))
    config = dict(cfg_new, r=rank, lora_alpha=rank, target_modules=targets or cfg_new.get("target_modules"))
    out.mkdir(parents=True, exist_ok=True)
    save_file(folded, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _as_list(targets) -> list[str]:
    if targets is None:
        return []
    return [targets] if isinstance(targets, str) else list(targets)


# ---- setup and save (called by train/run.py) -----------------------------------------------------------------
def load_preference_data(cfg):
    """A `prepare`-like function for cfg.method: pairs for dpo; labelled examples (or pairs, unpaired) for kto."""
    from chatforge.data.preference import is_preference_data, prepare_preferences
    from chatforge.errors import ChatforgeError

    def prepare(path, tokenizer, *, format=None, eval_path=None, **opts):
        if not is_preference_data(path):
            raise ChatforgeError(f"{path}: --method {cfg.method} needs preference data: pairs "
                                 "(input/preferred_output/non_preferred_output or prompt/chosen/rejected)"
                                 + (" or labelled answers (prompt/completion/label)" if cfg.method == "kto" else ""),
                                 hint="chat data trains with --method lora (or full); see `chatforge check "
                                      f"{path}`")
        prepared = prepare_preferences(path, tokenizer, eval_path=eval_path, **opts)
        if cfg.method == "dpo" and prepared.kind != "pairs":
            raise ChatforgeError(f"{path}: --method dpo needs pairs (chosen and rejected), but these are single "
                                 "answers with a label", hint="train them with --method kto")
        if cfg.method == "kto" and prepared.kind == "pairs":
            prepared.examples = unpair(prepared.examples)
            prepared.kind = "unpaired"
        prepared.kind = "pairs" if cfg.method == "dpo" else "unpaired"
        return prepared

    return prepare


def preference_batching(cfg, items, world: int) -> tuple[int, int, float]:
    """(pairs or examples per micro-batch, gradient accumulation, mean tokens per item) from the token budget:
    --micro-batch-tokens per forward pass, --batch-tokens per optimizer step (chosen + rejected tokens)."""
    if not items:
        return 1, 1, 0.0
    mean = sum(len(e) for e in items) / len(items) * (2 if cfg.method == "kto" else 1)  # kto: + the KL sequence
    micro = max(2 if cfg.method == "kto" else 1, int(min(cfg.micro_batch_tokens, cfg.batch_tokens) // mean))
    accum = max(1, round(cfg.batch_tokens / (mean * micro * world)))
    return micro, accum, mean


def finish_adapter(model_spec: str, staging) -> None:
    """final/ of a dpo/kto run: when the starting model was itself an adapter (a LoRA run), fold that adapter
    and the new one into one, so final/ is an adapter of the original base model."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from chatforge.models.resolve import adapter_base, resolve

    staging = Path(staging)
    start = resolve(model_spec)
    base = model_spec
    if start.adapter is not None:
        with tempfile.TemporaryDirectory(dir=staging.parent) as tmp:
            fold_adapters(start.adapter, staging, tmp)
            for name in ("adapter_model.safetensors", "adapter_config.json"):
                shutil.copyfile(Path(tmp) / name, staging / name)
        base = adapter_base(start.adapter)
    path = Path(base).expanduser()
    (staging / "chatforge.json").write_text(json.dumps(
        {"base_model": str(path.resolve()) if path.exists() else base,
         "started_from": str(Path(model_spec).resolve()) if Path(model_spec).exists() else model_spec},
        indent=2) + "\n", encoding="utf-8")
