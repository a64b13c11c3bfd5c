"""`--format hf`: the LoRA merged into a plain Hugging Face directory that answers exactly like the run."""

import json
import os
import subprocess
import sys

import pytest

from chatforge.export.config import ExportConfig
from chatforge.export.run import export, manifest

PROMPTS = ["What can you help me with?", "Where is my order?", "Bonjour, comment ça va ?"]


def _answers(model_spec, max_tokens=12):
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model

    # fp32, as plain transformers reads the export: --dtype auto picks bf16 where a bf16 matmul measures fast,
    # which under a busy test run may or may not be so, and bf16's rounding breaks the tiny model's near-ties
    engine = Engine(load_model(str(model_spec), dtype="float32"))
    return [engine.chat([{"role": "user", "content": p}], SamplingParams(max_tokens=max_tokens)).token_ids
            for p in PROMPTS]


@pytest.fixture(scope="module")
def run_answers(lora_run):
    return _answers(lora_run)


@pytest.fixture(scope="module")
def hf_export(lora_run, tmp_path_factory):
    return export(ExportConfig(model=str(lora_run), format="hf", out=str(tmp_path_factory.mktemp("x") / "hf")))


def test_merged_export_answers_exactly_like_the_run(hf_export, run_answers, tiny_model):
    assert _answers(hf_export) == run_answers
    assert _answers(tiny_model) != run_answers, "the adapter must change the answers, or this test proves nothing"
    assert not (hf_export / "adapter_config.json").exists()


def test_directory_has_config_tokenizer_template_and_stop_ids(hf_export, tokenizer):
    from chatforge.models.template import end_of_turn_ids

    names = {p.name for p in hf_export.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    assert (hf_export / "chat_template.jinja").read_text(encoding="utf-8") == tokenizer.chat_template
    gen = json.loads((hf_export / "generation_config.json").read_text(encoding="utf-8"))
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert eos == end_of_turn_ids(tokenizer)
    info = manifest(hf_export)
    assert info["format"] == "hf" and info["quant"] == "f32"
    assert info["verification"]["nrmse"] <= 1e-4 and info["files"]["model.safetensors"] > 0
    # safetensors writes its file 0600; the weights must be as readable as the config beside them
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in hf_export.iterdir()}
    assert set(modes.values()) == {oct(0o666 & ~_umask())}, modes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Runs in a fresh interpreter where chatforge cannot be imported: only transformers reads the directory.
_PLAIN_TRANSFORMERS = """
import json, sys
sys.modules["chatforge"] = None  # any import of chatforge now fails
try:
    import chatforge
    raise SystemExit("chatforge is importable")
except ImportError:
    pass
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompt = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
out = model.generate(ids, max_new_tokens=12, do_sample=False)
# the run's own answer, teacher-forced: how far each of its tokens is below the likeliest one here (0 = greedy)
answer = torch.tensor([json.loads(sys.argv[3])])
with torch.no_grad():
    logits = model(torch.cat([ids, answer], 1)).logits[0, ids.shape[1] - 1:-1].float()  # (answer, V)
gaps = (logits.max(-1).values - logits.gather(1, answer[0, :, None])[:, 0]).tolist()
print(json.dumps({"ids": out[0, ids.shape[1]:].tolist(), "eos": model.generation_config.eos_token_id,
                  "template": tok.chat_template, "gaps": gaps}))
"""


def test_plain_transformers_loads_it_without_chatforge(hf_export, run_answers, tokenizer):
    answer = run_answers[0]
    proc = subprocess.run([sys.executable, "-I", "-c", _PLAIN_TRANSFORMERS, str(hf_export), PROMPTS[0],
                           json.dumps(answer)], capture_output=True, text=True, cwd=hf_export.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["template"] == tokenizer.chat_template
    # Plain transformers finds the run's answer greedy at every step, up to float noise: a random tiny model
    # has near-ties, and another thread count or kernel may break one the other way (seen under pytest -n 2).
    assert max(got["gaps"]) < 1e-3, got["gaps"]
    eos = got["eos"] if isinstance(got["eos"], list) else [got["eos"]]
    ids = got["ids"]
    ids = ids[:min([ids.index(e) for e in eos if e in ids], default=len(ids))]  # generate keeps the EOS
    tie = next((i for i, gap in enumerate(got["gaps"]) if gap > 0), None)  # generate agrees up to a near-tie
    assert ids == answer if tie is None else ids[:tie] == answer[:tie]


def test_base_model_export_carries_chatforge_default_template(tiny_gpt2, tmp_path):
    from transformers import AutoTokenizer

    from chatforge.models.template import DEFAULT_CHAT_TEMPLATE

    out = export(ExportConfig(model=str(tiny_gpt2), format="hf", quant="bf16", out=str(tmp_path / "gpt2-hf")))
    assert AutoTokenizer.from_pretrained(out).chat_template == DEFAULT_CHAT_TEMPLATE
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 0  # <|endoftext|>
    src = (tiny_gpt2 / "model.safetensors").stat().st_size
    assert (out / "model.safetensors").stat().st_size < 0.6 * src  # bf16 halves the weights
