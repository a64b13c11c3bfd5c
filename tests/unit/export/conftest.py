"""A fake training run (runs/NAME/final = a LoRA adapter on the tiny llama / tiny gpt2) to export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def make_lora_run(base: Path, run_dir: Path, *, seed: int = 0) -> Path:
    """Wrap `base` with a LoRA on every linear layer, perturb the B matrices so the adapter changes the
    outputs (fresh LoRA B is zero), and save it as run_dir/final like training does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    final = run_dir / "final"
    peft_model.save_pretrained(final)
    AutoTokenizer.from_pretrained(base).save_pretrained(final)
    (final / "chatforge.json").write_text(json.dumps({"base_model": str(base)}), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps({"base_model": str(base), "method": "lora",
                                                  "status": "complete", "kind": "chat"}), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="session")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    """runs/lumora: a LoRA adapter (changing the outputs) on the tiny llama."""
    return make_lora_run(tiny_model, tmp_path_factory.mktemp("runs") / "lumora")


@pytest.fixture(scope="session")
def tiny_gpt2_1024(tmp_path_factory) -> Path:
    """A tiny GPT-2 with GPT-2's own 1024 positions: transformers' GGUF reader assumes that context length."""
    from chatforge.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2-1024"), arch="gpt2", max_positions=1024)


# Run with `python -I` (no PYTHONPATH, no user site) and with chatforge made unimportable: what a user of
# plain transformers has. Prints the logits of a few tokens for each GGUF file given.
PLAIN_TRANSFORMERS = r"""
import json, sys
class NoChatforge:
    def find_spec(self, name, path=None, target=None):
        if name == "chatforge" or name.startswith("chatforge."):
            raise ImportError("this check must not import chatforge")
sys.meta_path.insert(0, NoChatforge())
import torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
out = {}
for f in map(Path, sys.argv[2:]):
    model = AutoModelForCausalLM.from_pretrained(f.parent, gguf_file=f.name).eval()
    tok = AutoTokenizer.from_pretrained(f.parent, gguf_file=f.name)
    ids = tok(sys.argv[1], add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    out[f.name] = {"class": type(model).__name__, "ids": ids, "logits": logits.tolist(),
                   "chat_template": tok.chat_template}
assert not any(m == "chatforge" or m.startswith("chatforge.") for m in sys.modules)
print(json.dumps(out))
"""
TEXT = "Where is my order?"


def _read_with_plain_transformers(*gguf_files: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", PLAIN_TRANSFORMERS, TEXT, *map(str, gguf_files)],
                          capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def plain_transformers():
    """read(*gguf_files) -> {file name: {"class", "ids", "logits", "chat_template"}}, read in a fresh
    `python -I` that cannot import chatforge (plain transformers, as a user's own script)."""
    return _read_with_plain_transformers
