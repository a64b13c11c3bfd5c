"""Run the whole product on an embedded model, offline: check the bundled example data, ask the base model
three held-out questions, fine-tune it with LoRA (runs/demo), evaluate base vs tuned, ask the tuned model the
same questions, and export it (merged safetensors and GGUF). About ten minutes on 2 CPU cores.

--lang zh does the same in Chinese: the Gemma 3 270M base model learns the 青禾电器 support data
(runs/demo-zh), scored on characters, and checks its targets at the end.
"""

from chatforge import config
from chatforge.demo import DemoConfig


def add_arguments(parser):
    config.add_arguments(parser, DemoConfig)


def run(args) -> int:
    from chatforge.demo import run_demo

    return run_demo(config.build(DemoConfig, args))
