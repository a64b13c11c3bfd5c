"""Export options as a new user types them: llama.cpp's own spelling of a quant type (Q8_0, Q4_K_M), and a
system prompt no Modelfile can hold, refused before minutes of converting, not after."""

import pytest

from chatforge.errors import ChatforgeError
from chatforge.export.config import ExportConfig
from chatforge.export.run import setup


@pytest.mark.parametrize("typed, quant", [("Q8_0", "q8_0"), ("F16", "f16"), ("Q4_K_M", "q4_k_m")])
def test_quant_types_are_case_insensitive(lora_run, tmp_path, typed, quant, monkeypatch):
    import chatforge.export.gguf as gguf

    monkeypatch.setattr(gguf, "check_quantizer", lambda q: None)  # llama-cpp-python is optional
    plan = setup(ExportConfig(model=str(lora_run), format="gguf", quant=typed, out=str(tmp_path / "x")))
    assert plan.quant == quant


def test_hf_quant_is_case_insensitive_too(lora_run, tmp_path):
    assert setup(ExportConfig(model=str(lora_run), quant="BF16", out=str(tmp_path / "x"))).quant == "bf16"


def test_a_modelfile_system_prompt_with_triple_quotes_fails_before_loading(run_cli, lora_run, tmp_path, monkeypatch):
    import chatforge.export.hf as hf

    def never(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(hf, "load_merged", never)
    code, out, err = run_cli("export", lora_run, "--format", "gguf", "--ollama", "--out", tmp_path / "x",
                             "--system", 'Say """hi"""')
    assert code == 2 and '--system: a system prompt for a Modelfile cannot contain """' in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.partial-*"))
