"""The real embedded default model: conversion once, fast reload, and a correct answer."""

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration


def test_default_model_answers_paris_and_reloads_fast():
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model

    load_model("smollm2-135m-instruct")  # converts the embedded GGUF once (if not yet in CHATFORGE_HOME)
    t = time.perf_counter()
    loaded = load_model("smollm2-135m-instruct")
    load_seconds = time.perf_counter() - t
    answer = Engine(loaded).chat([{"role": "user", "content": "What is the capital of France?"}],
                                 SamplingParams(max_tokens=30))
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"
    assert load_seconds < 5, f"reloading the converted default model took {load_seconds:.1f}s"


def test_generate_cli_answers_paris():
    p = subprocess.run([sys.executable, "-m", "chatforge", "generate", "smollm2-135m-instruct",
                        "What is the capital of France?"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Paris" in p.stdout
