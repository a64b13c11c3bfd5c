"""`--format gguf`: llama.cpp's converter on the merged model, read back with transformers and compared."""

import pytest

from chatforge.export.config import ExportConfig
from chatforge.export.gguf import read_metadata
from chatforge.export.run import export, manifest
from chatforge.export.verify import logits, probe_ids

PROMPTS = ["What can you help me with?", "Where is my order?"]


def _greedy(loaded):
    from chatforge.infer import Engine, SamplingParams

    engine = Engine(loaded)
    return [engine.chat([{"role": "user", "content": p}], SamplingParams(max_tokens=10)).token_ids for p in PROMPTS]


@pytest.fixture(scope="module")
def f16_pair(lora_run, tmp_path_factory):
    """The run exported twice with the same f16 weights: as safetensors and as GGUF."""
    root = tmp_path_factory.mktemp("gguf")
    hf16 = export(ExportConfig(model=str(lora_run), format="hf", quant="f16", out=str(root / "hf16"), verify=False))
    g16 = export(ExportConfig(model=str(lora_run), format="gguf", out=str(root / "g16"), verify=False))
    return hf16, next(g16.glob("*.gguf"))


def test_f16_gguf_reads_back_identical_to_the_f16_weights(f16_pair, tokenizer):
    import torch

    from chatforge.models.load import load_model

    hf16, gguf_file = f16_pair
    assert gguf_file.name == "lumora-f16.gguf"
    from_hf = load_model(str(hf16))  # float32 on CPU: the f16 values exactly
    from_gguf = load_model(str(gguf_file))  # a GGUF export is a chatforge MODEL (read by transformers)
    ids = probe_ids(tokenizer)
    assert torch.allclose(logits(from_gguf.model, ids), logits(from_hf.model, ids), atol=1e-4)
    assert _greedy(from_gguf) == _greedy(from_hf)
    assert from_gguf.tokenizer.chat_template == tokenizer.chat_template
    assert from_gguf.tokenizer("Where is my order?")["input_ids"] == tokenizer("Where is my order?")["input_ids"]


def test_gguf_metadata_keeps_tokenizer_template_and_tied_embeddings(f16_pair, tokenizer):
    meta = read_metadata(f16_pair[1])
    assert meta["architecture"] == "llama" and meta["name"] == "lumora"
    assert meta["chat_template"] == tokenizer.chat_template
    assert meta["tokenizer_model"] == "gpt2" and meta["vocab_size"] == 49152 and meta["eos_token_id"] == 2
    assert "token_embd.weight" in meta["tensors"] and "output.weight" not in meta["tensors"]  # still tied
    assert set(meta["tensor_types"]) == {"F16", "F32"}  # norms stay f32, as llama.cpp wants


def test_q8_0_with_ollama_from_the_command_line(run_cli, lora_run, f16_pair, tmp_path):
    out = tmp_path / "q8"
    code, stdout, err = run_cli("export", lora_run, "--format", "gguf", "--quant", "q8_0", "--ollama",
                                "--out", out)
    assert code == 0, err
    gguf_file = out / "lumora-q8_0.gguf"
    assert f"ollama create lumora -f {out}/Modelfile" in stdout and f"llama-cli -m {gguf_file}" in stdout
    assert f"chatforge chat {gguf_file}" in stdout and "Verified" in stdout
    assert (out / "Modelfile").read_text().startswith("FROM ./lumora-q8_0.gguf\n")
    check = manifest(out)["verification"]  # read back by transformers and compared with the merged run
    assert check["nrmse"] <= 0.1  # stated q8_0 tolerance (measured 0.037 on this tiny model)
    assert "Q8_0" in read_metadata(gguf_file)["tensor_types"]
    assert gguf_file.stat().st_size < 0.75 * f16_pair[1].stat().st_size


def test_gpt2_base_model_exports_with_the_default_template(tiny_gpt2_1024, tmp_path):
    from chatforge.models.template import DEFAULT_CHAT_TEMPLATE

    out = export(ExportConfig(model=str(tiny_gpt2_1024), format="gguf", out=str(tmp_path / "g"), ollama=True))
    gguf_file = next(out.glob("*.gguf"))
    meta = read_metadata(gguf_file)
    assert meta["architecture"] == "gpt2" and meta["chat_template"] == DEFAULT_CHAT_TEMPLATE
    assert meta["eos_token_id"] == 0
    assert manifest(out)["verification"]["nrmse"] <= 0.005  # read back by transformers, f16 tolerance
    assert 'PARAMETER stop "<|endoftext|>"' in (out / "Modelfile").read_text()


def test_plain_transformers_reads_the_export_without_chatforge(f16_pair, tokenizer, plain_transformers):
    """A user's own script: AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) in a process that never
    imports chatforge (chatforge patches nothing) gives the logits of the f16 weights."""
    import torch

    from chatforge.models.load import load_model

    hf16, gguf_file = f16_pair
    got = plain_transformers(gguf_file)[gguf_file.name]
    assert got["class"] == "LlamaForCausalLM" and got["chat_template"] == tokenizer.chat_template
    assert got["ids"] == tokenizer("Where is my order?", add_special_tokens=False)["input_ids"]
    assert torch.allclose(torch.tensor(got["logits"]), logits(load_model(str(hf16), dtype="float32").model, got["ids"]),
                          atol=1e-4)  # (load_model's auto dtype is bf16 on AMX CPUs; the GGUF reads back in fp32)


@pytest.fixture(scope="module")
def k_quant_model(tmp_path_factory):
    """A tiny llama whose rows are 256 wide: llama.cpp's k-quants need multiples of 256 (narrower tensors
    fall back to other types), so this one really holds Q4_K / Q5_K / Q6_K blocks."""
    from chatforge.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-256"), hidden_size=256, num_heads=4)


@pytest.mark.parametrize("quant, block", [("q4_k_m", "Q4_K"), ("q5_k_m", "Q5_K")])
def test_k_quants_by_llama_cpps_quantizer_verified_by_reading_back(k_quant_model, quant, block, tmp_path):
    pytest.importorskip("llama_cpp", reason="--quant q4_k_m/q5_k_m need the optional extra `llama-cpp`")
    out = export(ExportConfig(model=str(k_quant_model), format="gguf", quant=quant, out=str(tmp_path / "m.gguf")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # the f16 intermediate is gone
    types = set(read_metadata(out)["tensor_types"])
    assert block in types and "Q6_K" in types, types  # *_k_m keeps some tensors in Q6_K, as llama.cpp does
    f16 = export(ExportConfig(model=str(k_quant_model), format="gguf", out=str(tmp_path / "f16"), verify=False))
    assert out.stat().st_size < 0.6 * next(f16.glob("*.gguf")).stat().st_size
