"""Export the real default model (SmolLM2-135M-Instruct): GGUF f16 and q8_0 read back by transformers, and
a plain-transformers `generate` on the hf export, compared with chatforge's own greedy answers."""

import json
import subprocess
import sys

import pytest

from chatforge.export.config import ExportConfig
from chatforge.export.run import export

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
PROMPTS = ["What is the capital of France?", "Give me one tip for sleeping better.", "What is 12 + 7?"]


@pytest.fixture(scope="module")
def reference():
    """The source model and its greedy answers (chatforge Engine, float32)."""
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model

    loaded = load_model(MODEL)
    engine = Engine(loaded)
    params = SamplingParams(max_tokens=16)
    return loaded, [engine.chat([{"role": "user", "content": p}], params) for p in PROMPTS]


def _read_back(gguf_file, tokenizer):
    """The GGUF as transformers reads it, in an Engine with the source tokenizer."""
    from chatforge.export.gguf import load_gguf_for_check
    from chatforge.infer import Engine
    from chatforge.models.load import LoadedModel

    return Engine(LoadedModel(load_gguf_for_check(gguf_file), tokenizer, None))


def _greedy(engine):
    from chatforge.infer import SamplingParams

    return [engine.chat([{"role": "user", "content": p}], SamplingParams(max_tokens=16)) for p in PROMPTS]


def test_gguf_f16_gives_identical_answers_and_keeps_tokenizer(reference, tmp_path):
    from chatforge.export.gguf import read_metadata

    loaded, answers = reference
    out = export(ExportConfig(model=MODEL, format="gguf", quant="f16", out=str(tmp_path / "f16"), ollama=True,
                              verify=False))
    gguf_file = out / "smollm2-135m-instruct-f16.gguf"
    meta = read_metadata(gguf_file)
    assert meta["architecture"] == "llama" and meta["vocab_size"] == 49152 and meta["eos_token_id"] == 2
    assert "output.weight" not in meta["tensors"]  # tied embeddings stay tied
    assert meta["chat_template"] == loaded.tokenizer.chat_template and "<|im_start|>" in meta["chat_template"]
    assert 'PARAMETER stop "<|im_end|>"' in (out / "Modelfile").read_text()
    got = _greedy(_read_back(gguf_file, loaded.tokenizer))
    assert [c.text for c in got] == [c.text for c in answers]


def test_gguf_q8_0_within_stated_logit_tolerance(reference, tmp_path):
    import torch

    from chatforge.export.verify import logits, probe_ids

    loaded, answers = reference
    out = export(ExportConfig(model=MODEL, format="gguf", quant="q8_0", out=str(tmp_path / "q8"), verify=False))
    engine = _read_back(out / "smollm2-135m-instruct-q8_0.gguf", loaded.tokenizer)
    ids = probe_ids(loaded.tokenizer)
    ref, got = logits(loaded.model, ids), logits(engine.model, ids)  # (T, V)
    nrmse = ((got - ref).pow(2).mean().sqrt() / ref.std()).item()
    top1 = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    # Stated q8_0 tolerance (measured: nrmse 0.033, top-1 0.95, max |diff| 1.3 on logits up to ~38).
    assert nrmse <= 0.1 and top1 >= 0.9 and (got - ref).abs().max().item() <= 4.0
    same_start = sum(a.token_ids[:5] == b.token_ids[:5] for a, b in zip(_greedy(engine), answers))
    assert same_start >= 2, "q8_0 should rarely change the first greedy tokens"
    assert torch.isfinite(got).all()


_PLAIN_GENERATE = """
import json, sys
sys.modules["chatforge"] = None  # chatforge cannot be imported here
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompts = sys.argv[1], json.loads(sys.argv[2])
tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
out = []
for p in prompts:
    ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    new = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1]:]
    out.append(tok.decode(new, skip_special_tokens=True))
print(json.dumps(out))
"""


def test_hf_export_answers_the_same_with_plain_transformers(reference, tmp_path):
    _, answers = reference
    out = export(ExportConfig(model=MODEL, format="hf", out=str(tmp_path / "hf"), verify=False))
    proc = subprocess.run([sys.executable, "-I", "-c", _PLAIN_GENERATE, str(out), json.dumps(PROMPTS)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # generation_config.json's eos ids make plain `generate` stop at <|im_end|>, like chatforge.
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [c.text for c in answers]


def test_gguf_q4_k_m_by_llama_cpps_quantizer_to_a_file(reference, tmp_path):
    """--quant q4_k_m (llama.cpp's own quantizer, the optional extra) to --out NAME.gguf, verified on read-back."""
    pytest.importorskip("llama_cpp", reason="--quant q4_k_m needs the optional extra `llama-cpp`")
    from chatforge.export.gguf import read_metadata
    from chatforge.export.run import export_with_manifest

    loaded, answers = reference
    target = tmp_path / "smollm2-q4_k_m.gguf"
    out, info = export_with_manifest(ExportConfig(model=MODEL, format="gguf", quant="q4_k_m", out=str(target),
                                                  ollama=True))
    assert out == target and sorted(p.name for p in tmp_path.iterdir()) == ["Modelfile", "smollm2-q4_k_m.gguf"]
    assert {"Q4_K", "Q6_K"} <= set(read_metadata(target)["tensor_types"])
    check = info["verification"]  # read back by transformers and compared with the source's logits
    assert check["nrmse"] <= check["tolerance"] and check["top1_agreement"] >= 0.6
    assert target.stat().st_size < 0.45 * 2 * 134_515_008  # under 45 % of the f16 file (2 bytes a weight)
    got = _greedy(_read_back(target, loaded.tokenizer))
    assert all(c.text.strip() for c in got)  # still answers
