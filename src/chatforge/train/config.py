"""TrainConfig: every option of `chatforge train`, its default and its help text, in one place.

The CLI flags, the YAML file (`--config`) and the Python API all come from this dataclass; the resolved
config (automatic values filled in) is written to `runs/NAME/config.yaml`, and `--config` of that file
reproduces the run. Only the standard library, chatforge.config and the data layer's light config are imported
here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from chatforge.config import fraction, non_negative_float, non_negative_int, option, positive_float, positive_int
from chatforge.data.config import MAX_LENGTH
from chatforge.models.catalog import DEFAULT_MODEL

PREFERENCE_METHODS = ("dpo", "kto")  # trained on preference data, with LoRA over the starting model
METHODS = ("lora", "full", "freeze", *PREFERENCE_METHODS)
AUTO_COMPILE_TOKENS = 250_000  # --compile's default: on from this many planned training tokens (lora/full/freeze)
# Learning rates that work for each method on small chat models (LoRA adapters start at zero and
# need a larger step; full fine-tuning of pretrained weights needs a small one). LoRA's 5e-4 (was 2e-4): on 540
# MedQuAD pairs 3 epochs at 5e-4 reach a lower held-out loss than 6 at 2e-4 (bench/train_quality.py, README).
DEFAULT_LR = {"lora": 5e-4, "full": 2e-5, "freeze": 5e-5, "dpo": 5e-5, "kto": 5e-5}


def _short(x: float) -> str:
    """5e-4, not 0.0005 or 5e-04: as the help and the docs write learning rates."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _epochs(s: str) -> int | str:
    if s == "auto":
        return "auto"
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a whole number >= 1, got {s!r}")
    return v


def _seed(s: str) -> int:
    v = non_negative_int(s)
    if v >= 2**32:  # numpy's and torch's seeds (transformers.set_seed seeds both)
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {v}")
    return v


@dataclass
class TrainConfig:
    model: str = option(DEFAULT_MODEL, "Model to fine-tune: catalog name, model directory, .gguf or run directory.")
    data: str | None = option(None, "Training data: a file or directory (chat JSONL/JSON, ShareGPT, alpaca, "
                                    "or raw .txt for continued pretraining).")
    eval_data: str | None = option(None, "Held-out data for eval loss / token accuracy (default: --eval-split).")
    eval_split: float = option(0.1, "Share of the training examples held out for evaluation when there is no "
                                     "--eval-data (at most 200 examples; none from fewer than 10; 0 = no "
                                     "evaluation).", parse=fraction)
    format: str | None = option(None, "Data format (default: detected from the file).")
    columns: list[str] = option([], "Map your file's own columns to format fields: FIELD=COLUMN, several columns "
                                    "joined in order with +, e.g. question=title+ask answer=answer system=department.",
                                metavar="FIELD=COL[+COL]")
    column_separator: str = option("\\n", "What joins several mapped columns (\\n = newline, \\t = tab).",
                                   metavar="TEXT")
    method: str = option("lora", "lora: low-rank adapters on all linear layers; full: every weight; "
                                 "freeze: only the last --freeze-layers layers and the final norm; dpo: preference "
                                 "pairs (chosen vs rejected); kto: answers labelled good or bad (or pairs). dpo and "
                                 "kto train LoRA adapters on top of --model; the reference is --model itself (the "
                                 "adapters disabled).", choices=METHODS)
    objective: str = option("causal", "Training objective. Only causal LM is supported (chat fine-tuning and "
                                      "continued pretraining); 'mlm' is refused for causal models.",
                            choices=["causal", "mlm"])
    epochs: int | str = option("auto", "Passes over the data; 'auto': 3, more for small sets (about 3000 examples "
                                       "seen, at most 25), fewer for large ones, and no more than it takes to "
                                       "see about 250k answer tokens.",
                               parse=_epochs, metavar="N|auto")
    max_steps: int | None = option(None, "Stop after this many optimizer steps (overrides --epochs).",
                                   parse=positive_int)
    lr: float | None = option(None, "Peak learning rate (default by method: "
                              + ", ".join(f"{m} {_short(lr)}" for m, lr in DEFAULT_LR.items()) + ").",
                              parse=positive_float)
    warmup: float = option(0.03, "Linear warm-up, as a share of all steps.", parse=fraction)
    scheduler: str = option("cosine", "Learning-rate schedule after warm-up.",
                            choices=["cosine", "linear", "constant_with_warmup"])
    weight_decay: float = option(0.0, "AdamW weight decay.", parse=non_negative_float)
    batch_tokens: int = option(2048, "Tokens per optimizer step (gradient accumulation is derived from it; small "
                                     "steps learn more per minute on small data).",
                               parse=positive_int)
    micro_batch_tokens: int = option(2048, "Tokens per forward pass (lower it to save memory; the optimizer "
                                           "step stays --batch-tokens).", parse=positive_int)
    max_length: int = option(MAX_LENGTH, "Longest sequence (tokens); also the length of packed rows.",
                             parse=positive_int)
    packing: bool = option(True, "Pack several short examples into each row (examples cannot see each other).")
    overlong: str | None = option(None, "Examples longer than --max-length: drop, truncate or error "
                                        "(default: the data layer's policy).",
                                  choices=["drop", "truncate", "error"])
    lenient: bool = option(False, "Skip invalid records instead of stopping (they are counted and reported).")
    beta: float = option(0.1, "dpo / kto: how far the tuned model may move from the reference (higher = "
                              "closer to it).", parse=positive_float)
    sft_weight: float = option(0.0, "dpo: add this weight times the SFT loss on the chosen answers (keeps their "
                                    "likelihood from falling; e.g. 0.1).", parse=non_negative_float)
    lora_rank: int = option(16, "LoRA rank r.", parse=positive_int)
    lora_alpha: int | None = option(None, "LoRA alpha (default: 2 x rank).", parse=positive_int)
    lora_dropout: float = option(0.0, "Dropout on the LoRA inputs.", parse=fraction)
    freeze_layers: int = option(2, "freeze: how many of the last transformer layers are trained.",
                                parse=positive_int)
    precision: str = option("auto", "auto: bf16 autocast on a GPU, or on a CPU with AMX/AVX-512 bf16 where a "
                            "bf16 matmul measured at start is not slower than fp32's; else fp32.",
                            choices=["auto", "bf16", "fp32"])
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass (less memory, "
                                                 "~30% slower).")
    compile: bool | None = option(None, "torch.compile each transformer layer: later steps run faster (it fuses the "
                                        "element-wise work), the first ones take about a minute longer. Default: on "
                                        "for runs of at least 250,000 training tokens (where it pays back) when a "
                                        "C++ compiler is present on a CPU; if compiling fails, training goes on "
                                        "uncompiled.")
    eval_every: int | None = option(None, "Evaluate every N steps (default: 5 times per run, and at the end).",
                                    parse=positive_int)
    save_every: int | None = option(None, "Checkpoint every N steps (default: 10 times per run).",
                                    parse=positive_int)
    keep_checkpoints: int = option(2, "Complete checkpoints to keep (older ones are deleted).",
                                   parse=positive_int)
    seed: int = option(42, "Random seed (data order, LoRA init, eval split).", parse=_seed)
    out: str | None = option(None, "Run directory (default: runs/DATA-METHOD-TIMESTAMP).")
    resume: bool = option(False, "Continue the run in --out from its last complete checkpoint.")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda when present).")
    tensorboard: bool = option(True, "Write TensorBoard event files to RUN/tb.")
    trust_remote_code: bool = option(False, "Allow a model's own Python code to run (off by default).")
    allow_pickle: bool = option(False, "Allow loading pickle weights (.bin) of the base model.")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]
