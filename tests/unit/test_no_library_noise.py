"""No library noise reaches the user: a real `chatforge train` and `chatforge export` (GGUF written, read back,
and a GGUF file exported again) print chatforge's own lines and progress bar, never torchao's failed CUDA kernel
loads, torch's pytree deprecation, or transformers' GGUF tensor-conversion bar."""

import os
import subprocess
import sys

import pytest

NOISE = ("Failed to load", "register_constant", "de-quantizing", "GGUF tensors", "Warning:", "warnings.warn",
         "Traceback")


def chatforge(*args, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "chatforge", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(n in line for n in NOISE)]


def test_the_libraries_would_be_noisy_without_chatforges_policy():
    """The premise (so that the tests below can fail): importing torchao first logs its kernel failures."""
    pytest.importorskip("torchao")
    proc = subprocess.run([sys.executable, "-c", "import torchao"], capture_output=True, text=True, timeout=300)
    if not noise(proc.stderr):
        pytest.skip("this torchao loads all its kernels here: nothing to quiet")
    quiet = subprocess.run([sys.executable, "-c", "import chatforge, torchao, peft"], capture_output=True, text=True,
                           timeout=300)
    assert noise(quiet.stderr) == []


@pytest.mark.slow
def test_train_and_export_print_no_library_noise(tiny_model, tmp_path):
    from chatforge.demo import EXAMPLES

    data = tmp_path / "d.jsonl"
    data.write_text("".join((EXAMPLES / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines(True)[:24]),
                    encoding="utf-8")
    train = chatforge("train", "--model", tiny_model, "--data", data, "--max-steps", "2", "--out", tmp_path / "run",
                      cwd=tmp_path)
    assert noise(train.stderr) == [], train.stderr[-3000:]
    assert "train:" in train.stderr  # chatforge's own progress bar still shows

    gguf = chatforge("export", tmp_path / "run", "--format", "gguf", "--quant", "q8_0", "--out", tmp_path / "gguf",
                     cwd=tmp_path)  # verified by reading the GGUF back with transformers
    assert noise(gguf.stderr) == [], gguf.stderr[-3000:]
    written = next((tmp_path / "gguf").glob("*.gguf"))
    again = chatforge("export", written, "--format", "hf", "--out", tmp_path / "hf", cwd=tmp_path)  # GGUF-loaded
    assert noise(again.stderr) == [], again.stderr[-3000:]
    assert "converting" in again.stderr  # chatforge says itself what it converts
