"""Options of `chatforge check` (the data layer's stage). Light imports only: no torch, no transformers."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import option
from chatforge.data.formats import FORMATS


# `chatforge train`'s --max-length too (TrainConfig reads it from here): check judges the data by the rows train
# packs, so what check passes, train does not then drop as too long
MAX_LENGTH = 1024


@dataclass
class CheckConfig:
    model: str | None = option(None, "Model whose tokenizer and chat template count the tokens "
                                     "(default: smollm2-135m-instruct).")
    max_length: int = option(MAX_LENGTH, "Longest example in tokens (the block size for raw text), as "
                                         "`chatforge train --max-length`.")
    format: str | None = option(None, "Force a data format instead of detecting it.", choices=list(FORMATS))
    columns: list[str] = option([], "Map your file's own columns to format fields: FIELD=COLUMN, several columns "
                                    "joined in order with +, e.g. question=title+ask answer=answer system=department.",
                                metavar="FIELD=COL[+COL]")
    column_separator: str = option("\\n", "What joins several mapped columns (\\n = newline, \\t = tab).",
                                   metavar="TEXT")
    overlong: str | None = option(None, "Examples longer than --max-length: drop (default for chats), truncate "
                                        "(default for raw text) or error.", choices=["drop", "truncate", "error"])
    eval_data: str | None = option(None, "A held-out file: its rows must not also be in the training data.",
                                   metavar="FILE")
    estimate: bool = option(True, "Estimate the training time per epoch with a short measured benchmark of "
                                  "the model (--no-estimate to skip). The measurement is kept under "
                                  "CHATFORGE_HOME and reused for the same model, machine and row shape.")
    remeasure: bool = option(False, "Time the training step again instead of reusing the one measured before "
                                    "(after the machine got busier or freer).")
    strict: bool = option(False, "Treat data-quality warnings (near-duplicates, contradictions, personal data, "
                                 "answers in another language, empty-looking or cut-off answers) as errors: exit 2.")
    json: bool = option(False, "Print one JSON object (problems, counts, statistics) instead of a report.")
    trust_remote_code: bool = option(False, "Allow a model's own Python code to run (off by default).")
