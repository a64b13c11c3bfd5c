"""The typed configuration of `chatforge eval` (also the Python API: `evaluate(EvalConfig(...))`)."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import option, positive_int
from chatforge.generation_config import DTYPE_HELP, QUANTIZE_HELP


def _confidence(s: str) -> float:
    import argparse

    v = float(s)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.95), got {v}")
    return v


@dataclass
class EvalConfig:
    model: str | None = option(None, "The model to evaluate: a run directory, adapter, model dir, .gguf or "
                               "catalog name.", cli=False)
    data: str | None = option(None, "Held-out conversations (any format `chatforge check` reads). For each, the "
                              "model answers the last user turn and is scored against the last assistant message. "
                              "Preference pairs: preference accuracy and log-prob margin instead.",
                              metavar="HELDOUT")
    columns: list[str] = option([], "Map your file's own columns to format fields: FIELD=COLUMN, several columns "
                                    "joined in order with +, e.g. question=title+ask answer=answer system=department.",
                                metavar="FIELD=COL[+COL]")
    column_separator: str = option("\\n", "What joins several mapped columns (\\n = newline, \\t = tab).",
                                   metavar="TEXT")
    baseline: str | None = option(None, "Model to compare with (default for a run or adapter: its base model; "
                                  "'none' = no comparison).", metavar="MODEL")
    max_examples: int | None = option(None, "Evaluate only the first N held-out conversations.",
                                      parse=positive_int, metavar="N")
    lenient: bool = option(False, "Skip invalid held-out records instead of stopping (they are counted and named "
                                  "in the report; every model is asked the same valid ones).")
    max_tokens: int | None = option(None, "Most new tokens per generated answer (default: twice the longest "
                                    "reference answer, at least 64).", parse=positive_int, metavar="N")
    batch_size: int = option(32, "Conversations generated at once (lower it if memory runs out).",
                             parse=positive_int, metavar="B")
    out: str | None = option(None, "Report directory (default: RUN/eval for a run, else ./eval-report).",
                             metavar="DIR")
    bootstrap: int = option(1000, "Bootstrap resamples for the confidence intervals.", parse=positive_int,
                            metavar="N")
    confidence: float = option(0.95, "Confidence level of the intervals.", parse=_confidence)
    seed: int = option(0, "Seed of the bootstrap resampling (the answers themselves are greedy).")
    dtype: str = option("auto", DTYPE_HELP, choices=["auto", "float32", "bfloat16", "float16"])
    quantize: str | None = option(None, QUANTIZE_HELP, choices=["int8"])
    device: str | None = option(None, "Device: cpu, cuda, cuda:1 ... (default: cuda when present).")
    trust_remote_code: bool = option(False, "Allow a model's own Python code to run (off by default).")
