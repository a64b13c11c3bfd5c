"""An export of a run carries the system prompt it was trained with (chat template default, Modelfile SYSTEM),
and a GGUF export may go to a .gguf file name with the Modelfile beside it."""

import json
import shutil

import pytest

from chatforge.export.config import ExportConfig
from chatforge.export.run import export, manifest

LUMORA = "You are Lumora Home's customer support assistant. Answer briefly and accurately."
USER = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def lumora_run(lora_run, tmp_path_factory):
    """The LoRA run, trained (as recorded) on data whose conversations share LUMORA."""
    run = tmp_path_factory.mktemp("trained") / "lumora"
    shutil.copytree(lora_run, run)
    for name in ("final/chatforge.json", "run.json"):
        data = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**data, "system_prompt": LUMORA}))
    return run


def _render(tok, messages):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_hf_export_template_applies_the_trained_prompt(lumora_run, tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from chatforge.models.resolve import resolve

    out = export(ExportConfig(model=str(lumora_run), format="hf", out=str(tmp_path / "hf")))
    tok = AutoTokenizer.from_pretrained(out)  # plain transformers: the template itself carries the default
    assert _render(tok, USER) == _render(tokenizer, [{"role": "system", "content": LUMORA}] + USER)
    other = [{"role": "system", "content": "Be a pirate."}] + USER
    assert _render(tok, other) == _render(tokenizer, other)  # an explicit system message still wins
    assert manifest(out)["system_prompt"] == LUMORA and resolve(str(out)).system_prompt == LUMORA
    assert manifest(out)["verification"]["nrmse"] < 1e-4  # verified with the prompt in the probe
    # --system '' exports the model's own template (SmolLM2's stock default)
    plain = export(ExportConfig(model=str(lumora_run), format="hf", system="", out=str(tmp_path / "plain")))
    assert _render(AutoTokenizer.from_pretrained(plain), USER) == _render(tokenizer, USER)
    assert not (plain / "chatforge.json").exists() and manifest(plain)["system_prompt"] is None


def test_gguf_file_out_with_the_modelfile_beside_it(run_cli, lumora_run, tokenizer, tmp_path):
    from chatforge.export.gguf import read_metadata

    target = tmp_path / "models" / "lumora-q8.gguf"
    code, out, err = run_cli("export", lumora_run, "--format", "gguf", "--quant", "q8_0", "--ollama",
                             "--out", target)
    assert code == 0, err
    assert sorted(p.name for p in target.parent.iterdir()) == ["Modelfile", "lumora-q8.gguf"]  # nothing else
    modelfile = (target.parent / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./lumora-q8.gguf\n")
    assert f'SYSTEM """{LUMORA}"""' in modelfile and "SmolLM" not in modelfile  # the trained prompt
    assert f"ollama create lumora-q8 -f {target.parent}/Modelfile" in out and f"llama-cli -m {target}" in out
    assert "Verified" in out and f"Default system prompt (when a conversation has none): {LUMORA}" in out
    template = read_metadata(target)["chat_template"]
    tokenizer_copy = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer_copy.chat_template = template  # what llama.cpp renders from the GGUF
    assert _render(tokenizer_copy, USER) == _render(tokenizer, [{"role": "system", "content": LUMORA}] + USER)
    # again: refused without --force, replaced with it
    code, _, err = run_cli("export", lumora_run, "--format", "gguf", "--quant", "q8_0", "--ollama", "--out", target)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli("export", lumora_run, "--format", "gguf", "--ollama", "--system", "Be brief.",
                           "--out", target, "--force", "--no-verify")
    assert code == 0, err
    assert 'SYSTEM """Be brief."""' in (target.parent / "Modelfile").read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["Modelfile", "lumora-q8.gguf"]
