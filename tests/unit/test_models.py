"""Model resolution, loading, chat templates and their error messages (tiny models, no network)."""

import json
import subprocess
import sys

import pytest

from chatforge.errors import ChatforgeError
from chatforge.models.catalog import CATALOG, DEFAULT_MODEL, closed_model_name
from chatforge.models.load import load_model, load_tokenizer
from chatforge.models.resolve import resolve
from chatforge.models.template import DEFAULT_CHAT_TEMPLATE, encode_prompt, end_of_turn_ids, render


def test_default_is_first_catalog_entry():
    assert next(iter(CATALOG)) == DEFAULT_MODEL == "smollm2-135m-instruct"


@pytest.mark.parametrize("spec,name", [("openai/gpt-4", "GPT-4"), ("gpt-4o", "GPT-4o"), ("claude-3-opus", "Claude"),
                                       ("google/gemini-pro", "Gemini")])
def test_closed_models_are_recognised(spec, name):
    assert closed_model_name(spec) == name


@pytest.mark.parametrize("spec", ["openai/gpt-oss-20b", "HuggingFaceTB/SmolLM2-360M-Instruct", "gpt2"])
def test_open_models_are_not_called_closed(spec):
    assert closed_model_name(spec) is None


def test_gpt4_error_lists_alternatives():
    with pytest.raises(ChatforgeError) as e:
        resolve("openai/gpt-4")
    assert "no open weights" in e.value.message and DEFAULT_MODEL in e.value.hint
    assert e.value.exit_code == 2


def test_uncached_hub_id_offline_says_how_to_get_it():
    with pytest.raises(ChatforgeError) as e:
        resolve("someone/not-a-cached-model")
    assert "not in the local Hugging Face cache" in e.value.message
    assert "huggingface-cli download someone/not-a-cached-model" in e.value.hint


@pytest.mark.parametrize("spec,needle", [("./no/such/dir", "no such file"), ("nonexistent-model", "unknown model"),
                                         ("missing.gguf", "no such file")])
def test_bad_model_arguments(spec, needle):
    with pytest.raises(ChatforgeError, match=needle):
        resolve(spec)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ChatforgeError, match="not a model directory"):
        resolve(str(tmp_path))
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ChatforgeError, match="not a model"):
        resolve(str(tmp_path / "weights.txt"))


def test_local_directory_loads_with_its_own_template(tiny_model):
    loaded = load_model(str(tiny_model))
    assert loaded.resolved.path == tiny_model.resolve()
    assert "<|im_start|>" in loaded.tokenizer.chat_template
    assert not loaded.model.training


def test_base_model_gets_documented_default_template(tiny_gpt2):
    tok = load_tokenizer(str(tiny_gpt2))
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    text = render(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello"}], add_generation_prompt=False)
    assert text == "### System:\nBe brief.\n\n### User:\nHi\n\n### Assistant:\nHello<|endoftext|>\n\n"
    prompt = render(tok, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert prompt.endswith("### Assistant:\n")
    assert end_of_turn_ids(tok) == [tok.eos_token_id]


def test_end_of_turn_ids_for_chatml(tokenizer):
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in end_of_turn_ids(tokenizer)
    ids = encode_prompt(tokenizer, [{"role": "user", "content": "Hi"}])
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_pickle_weights_refused_unless_allowed(tmp_path, tiny_model):
    import shutil

    import torch

    d = tmp_path / "pickled"
    shutil.copytree(tiny_model, d)
    from safetensors.torch import load_file

    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    with pytest.raises(ChatforgeError, match="pickle"):
        load_model(str(d))
    assert load_model(str(d), allow_pickle=True).model is not None


def test_adapter_directory_resolves_to_its_base(tmp_path, tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                                LoraConfig(r=4, target_modules="all-linear"))
    run = tmp_path / "run"
    peft_model.save_pretrained(run / "final")
    (run / "final" / "chatforge.json").write_text(json.dumps({"base_model": str(tiny_model)}))
    r = resolve(str(run))
    assert r.run_dir == run.resolve() and r.adapter == (run / "final").resolve()
    assert r.path == tiny_model.resolve()
    assert load_model(r).model is not None


def test_run_without_final_model_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ChatforgeError, match="no final model"):
        resolve(str(tmp_path))


def test_tiny_model_helper_builds_both_architectures(tiny_model, tiny_gpt2):
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_model).model_type == "llama"
    assert AutoConfig.from_pretrained(tiny_gpt2).model_type == "gpt2"


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t=time.time(); from chatforge.cli import build_parser; build_parser();"
            "heavy=[m for m in ('torch','transformers','peft','fastapi') if m in sys.modules];"
            "print(heavy, time.time()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 1.0


def test_auto_dtype_is_bf16_only_where_its_matmul_is_fast(monkeypatch, tiny_model):
    """--dtype auto on a CPU: bf16 where it has the instructions and its matmul measured here is >= 0.8x fp32's;
    fp32 where bf16 runs at half speed (a VM showing avx512_bf16 without AMX). int8 weights keep bf16 activations
    wherever the instructions exist (PyTorch's int8 kernel is fast for bf16 only); an explicit dtype is kept."""
    import torch

    from chatforge.models import load

    monkeypatch.setattr(load, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(load, "bf16_matmul_speed", lambda: 1.9)
    assert load._torch_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(load, "bf16_matmul_speed", lambda: 0.55)
    assert load._torch_dtype("auto", "cpu") is torch.float32
    assert load._torch_dtype(None, "cpu", "int8") is torch.bfloat16
    assert load._torch_dtype("bf16", "cpu") is torch.bfloat16
    assert load_model(str(tiny_model)).model.dtype is torch.float32
    monkeypatch.setattr(load, "cpu_supports_bf16", lambda: False)
    assert load._torch_dtype(None, "cpu", "int8") is torch.float32


def test_bf16_matmul_speed_is_measured_once():
    from chatforge.models import load

    speed = load.bf16_matmul_speed()
    assert 0 < speed < 1000 and load.bf16_matmul_speed() == speed


def test_a_typo_under_a_local_directory_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    """runs/plian (./runs exists) is a missing path with a suggestion, not a Hub id to download."""
    (tmp_path / "runs" / "plain").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ChatforgeError) as e:
        resolve("runs/plian")
    assert "runs/plian: no such file or directory" in e.value.message and e.value.hint == "did you mean: runs/plain?"
    assert e.value.exit_code == 2


def test_an_uncached_hub_id_lists_every_embedded_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ChatforgeError) as e:
        resolve("someone/uncached-model")
    assert "smollm2-135m-instruct" in e.value.hint and "gemma3-270m" in e.value.hint


def _lora_run(base, run_dir, b_scale: float):
    """A LoRA run of `base` whose B matrices are random x b_scale (a fresh LoRA's B is zero: no change at all)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * b_scale)
    model.save_pretrained(run_dir / "final")
    AutoTokenizer.from_pretrained(base).save_pretrained(run_dir / "final")
    (run_dir / "final" / "chatforge.json").write_text(json.dumps({"base_model": str(base)}))
    (run_dir / "run.json").write_text(json.dumps({"base_model": str(base), "method": "lora", "status": "complete",
                                                  "kind": "chat"}))
    return run_dir


def test_auto_dtype_keeps_float32_when_bf16_would_erase_the_adapters_change(tiny_model, tmp_path, monkeypatch):
    """A short run's LoRA change is below bf16's resolution: merged and rounded to bf16, the model answers like its
    base (seen: a 3-step run). --dtype auto then keeps fp32 and says why; a run that changed the weights enough,
    or an explicit --dtype bfloat16, stays bf16."""
    import torch

    from chatforge.models import load

    monkeypatch.setattr(load, "cpu_prefers_bf16", lambda: True)  # as on a CPU with fast bf16
    faint = load_model(str(_lora_run(tiny_model, tmp_path / "faint", 1e-6)))
    assert next(faint.model.parameters()).dtype == torch.float32
    assert len(faint.notes) == 1 and "answering in float32, not bfloat16" in faint.notes[0]
    strong = load_model(str(_lora_run(tiny_model, tmp_path / "strong", 0.5)))
    assert next(strong.model.parameters()).dtype == torch.bfloat16 and strong.notes == []
    asked = load_model(str(tmp_path / "faint"), dtype="bfloat16")
    assert next(asked.model.parameters()).dtype == torch.bfloat16 and asked.notes == []


def test_rounding_error_measures_how_much_of_the_change_bf16_keeps(tiny_model, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from chatforge.models.load import rounding_error

    def error(scale, dtype=torch.bfloat16):
        run = _lora_run(tiny_model, tmp_path / f"r{scale}", scale)
        return rounding_error(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                                        str(run / "final")), dtype)

    assert error(1e-6) > 0.9  # gone
    assert error(0.5) < 0.05  # kept
    assert error(1e-6, torch.float32) < 0.01  # fp32 keeps it (but for its own last bit)
