"""Run the whole product on the embedded default model, offline: check the bundled example data, ask the
base model three held-out questions, fine-tune it with LoRA (runs/demo), evaluate base vs tuned, ask the
tuned model the same questions, and export it (merged safetensors and GGUF). About ten minutes on 2 CPU cores.
"""

from chatforge import config
from chatforge.demo import DemoConfig


def add_arguments(parser):
    config.add_arguments(parser, DemoConfig)


def run(args) -> int:
    from chatforge.demo import run_demo

    return run_demo(config.build(DemoConfig, args))
