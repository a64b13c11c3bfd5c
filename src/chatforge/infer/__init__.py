"""The inference engine chat, generate, eval, serve and the arena share (precision and --quantize int8 are
chosen when the model is loaded: models/load.py, models/int8.py).

    sampling.py  SamplingParams (every sampling setting, checked) and `sample`: logits -> next tokens
    text.py      incremental detokenizer and stop-string filter (constant work per token)
    sequence.py  one sequence: tokens, streamed text, finish; Update and Completion
    prefix.py    the prefix cache (keys/values of recent sequences, reused by prompts that share a beginning)
    batch.py     Batch: the one step-level decode loop (admit, step, evict)
    engine.py    Engine: prompts/messages -> Completions or streamed text, over a Batch
"""

from chatforge.infer.batch import AdmitFailed, Batch
from chatforge.infer.engine import Engine
from chatforge.infer.sampling import SamplingParams
from chatforge.infer.sequence import Completion, Update

__all__ = ["AdmitFailed", "Batch", "Completion", "Engine", "SamplingParams", "Update"]
