"""Bad options fail fast with one clear error; an interrupted export leaves nothing at --out that looks valid."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatforge.errors import ChatforgeError
from chatforge.export.config import ExportConfig
from chatforge.export.run import _inside, export, safe_name


def test_unsupported_quant_lists_what_is_supported(run_cli, lora_run, tmp_path):
    code, _, err = run_cli("export", lora_run, "--format", "gguf", "--quant", "q4_k", "--out", tmp_path / "x")
    assert code == 2
    assert "--quant q4_k" in err and "f32, f16, bf16, q8_0, q4_k_m, q5_k_m" in err and "llama-quantize" in err
    code, _, err = run_cli("export", lora_run, "--format", "hf", "--quant", "q8_0", "--out", tmp_path / "x")
    assert code == 2 and "supported: f32, bf16, f16" in err
    assert not (tmp_path / "x").exists()


def test_unsupported_architecture_lists_what_is_supported(tiny_model, tmp_path):
    other = tmp_path / "falcon"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["FalconForCausalLM"]}))
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(model=str(other), format="gguf", out=str(tmp_path / "out")))
    assert "FalconForCausalLM" in e.value.message
    assert all(a in e.value.message for a in ("LlamaForCausalLM", "GPT2LMHeadModel"))


@pytest.mark.parametrize("cfg, needle", [
    (dict(format="onnx"), "supported: hf, gguf"),
    (dict(format="hf", ollama=True), "--ollama needs --format gguf"),
    (dict(format="hf", out=None), "--out PATH is required"),
    (dict(format="hf", out="lumora.gguf"), "a .gguf file name needs --format gguf"),
])
def test_bad_options(cfg, needle, lora_run, tmp_path):
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(**{"model": str(lora_run), "out": str(tmp_path / "o"), **cfg}))
    assert needle in e.value.message


def test_k_quants_without_llama_cpp_name_the_extra(run_cli, lora_run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    for quant in ("q4_k_m", "q5_k_m"):
        code, _, err = run_cli("export", lora_run, "--format", "gguf", "--quant", quant, "--out", tmp_path / "x")
        assert code == 2 and f"--quant {quant}" in err and "chatforge[llama-cpp]" in err and "llama-cpp-python" in err
        assert "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_gguf_file_out_refuses_what_is_there(lora_run, tmp_path):
    taken = tmp_path / "m.gguf"
    taken.write_bytes(b"mine")
    (tmp_path / "Modelfile").write_text("mine")
    for out, ollama, needle in ((taken, False, "already exists"), (tmp_path / "new.gguf", True, "Modelfile")):
        with pytest.raises(ChatforgeError) as e:
            export(ExportConfig(model=str(lora_run), format="gguf", out=str(out), ollama=ollama))
        assert needle in e.value.message and "--force" in e.value.hint
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(model=str(lora_run), format="gguf", out=str(tmp_path / "dir.gguf"), force=True))
    assert "is a directory" in e.value.message
    assert taken.read_bytes() == b"mine" and (tmp_path / "Modelfile").read_text() == "mine"
    assert _leftovers(tmp_path) == ["Modelfile", "dir.gguf", "m.gguf"]


def test_existing_output_is_refused_without_force(run_cli, lora_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli("export", lora_run, "--out", out)
    assert code == 2 and "already exists" in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("text, expected", [
    ("runs/lumora", "lumora"), ("runs/lumora/", "lumora"), ("..", "model"), ("../../etc/passwd", "passwd"),
    ("/abs/path/My Model!", "My-Model"), ("~/m/SmolLM2.Q4_1.gguf", "SmolLM2.Q4_1"), ("a\\..\\..\\b", "b"),
    (".hidden", "hidden"), ("模型", "model"),
])
def test_names_are_sanitized(text, expected):
    assert safe_name(text) == expected


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", ".."])
def test_paths_are_confined_to_the_output(bad, tmp_path):
    with pytest.raises(ChatforgeError):
        _inside(tmp_path, bad)
    assert _inside(tmp_path, "ok-f16.gguf") == tmp_path / "ok-f16.gguf"


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_failure_mid_export_leaves_nothing_and_keeps_the_old_output(lora_run, tmp_path, monkeypatch):
    import chatforge.export.hf as hf

    def half_written(loaded, out_dir, quant="f32"):
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"\0" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(hf, "save_hf", half_written)
    with pytest.raises(OSError):
        export(ExportConfig(model=str(lora_run), out=str(tmp_path / "new")))
    assert _leftovers(tmp_path) == []  # no target, no temporary directory
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text('{"old": true}')
    (old / "export.json").write_text("{}")  # an earlier export: --force may replace it
    with pytest.raises(OSError):
        export(ExportConfig(model=str(lora_run), out=str(old), force=True))
    assert _leftovers(tmp_path) == ["old"] and (old / "config.json").read_text() == '{"old": true}'


def test_failed_verification_keeps_nothing(lora_run, tiny_model, tmp_path, monkeypatch):
    import chatforge.export.hf as hf
    from transformers import AutoModelForCausalLM

    # The reloaded model is a different one (the base without the adapter): verification must catch it.
    monkeypatch.setattr(hf, "load_hf_for_check", lambda d: AutoModelForCausalLM.from_pretrained(tiny_model))
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(model=str(lora_run), out=str(tmp_path / "out")))
    assert "verification failed" in e.value.message and e.value.exit_code == 1
    assert _leftovers(tmp_path) == []


def test_force_replaces_an_earlier_export_only(lora_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "export.json").write_text("{}")
    (out / "stale.txt").write_text("old export")
    export(ExportConfig(model=str(lora_run), out=str(out), force=True))
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert _leftovers(tmp_path) == ["out"]
    # Not an export (think `--out . --force` in a project): refused, untouched.
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("precious")
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(model=str(lora_run), out=str(project), force=True))
    assert "not a chatforge export" in e.value.message and (project / "notes.txt").read_text() == "precious"


# The process is killed (SIGKILL: no cleanup runs) while the weights are being written.
_KILLED = """
import os, signal, sys
import chatforge.export.hf as hf
real = hf.save_hf
def save_then_die(loaded, out_dir, quant="f32"):
    real(loaded, out_dir, quant)
    os.kill(os.getpid(), signal.SIGKILL)
hf.save_hf = save_then_die
from chatforge.export.config import ExportConfig
from chatforge.export.run import export
export(ExportConfig(model=sys.argv[1], out=sys.argv[2]))
"""


def test_killed_export_leaves_no_valid_looking_output(lora_run, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(lora_run), str(out)], capture_output=True,
                          text=True, timeout=300, env={**os.environ})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists()
    # What is left is hidden and named as unfinished; chatforge never resolves it as the export.
    left = _leftovers(tmp_path)
    assert left and all(n.startswith(".out.partial-") for n in left)


def test_converter_failure_is_one_clear_error(tiny_model, tmp_path):
    from chatforge.export.gguf import convert

    broken = tmp_path / "corrupt-weights"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(ChatforgeError) as e:
        convert(broken, tmp_path / "x.gguf", "f16", name="x")
    assert e.value.exit_code == 1 and "the GGUF converter failed" in e.value.message
    assert "Traceback" not in e.value.message and len(e.value.message.splitlines()) == 1
    assert not (tmp_path / "x.gguf").exists()


def test_quantizer_failure_is_one_clear_error_and_leaves_nothing(lora_run, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp", reason="--quant q4_k_m needs the optional extra `llama-cpp`")
    import chatforge.export.gguf as gguf

    def junk(hf_dir, out_file, quant, *, name):  # the converter "wrote" a file llama.cpp cannot read
        out_file.write_bytes(b"not a gguf file")
        return out_file

    monkeypatch.setattr(gguf, "convert", junk)
    with pytest.raises(ChatforgeError) as e:
        export(ExportConfig(model=str(lora_run), format="gguf", quant="q4_k_m", out=str(tmp_path / "m.gguf")))
    assert "llama.cpp's quantizer failed" in e.value.message and e.value.exit_code == 1
    assert _leftovers(tmp_path) == []


def test_force_without_ollama_drops_the_modelfile_of_the_export_it_replaces(lora_run, tmp_path):
    """A Modelfile chatforge wrote for the GGUF being replaced would pair the new weights with the old template
    and system prompt: it goes. A Modelfile of another GGUF (or the user's own) stays."""
    out = tmp_path / "lumora.gguf"
    export(ExportConfig(model=str(lora_run), format="gguf", out=str(out), ollama=True, verify=False))
    assert (tmp_path / "Modelfile").read_text().startswith("FROM ./lumora.gguf\n")
    export(ExportConfig(model=str(lora_run), format="gguf", out=str(out), force=True, verify=False))
    assert _leftovers(tmp_path) == ["lumora.gguf"]

    (tmp_path / "Modelfile").write_text("FROM ./other.gguf\n")  # another export's
    export(ExportConfig(model=str(lora_run), format="gguf", out=str(out), force=True, verify=False))
    assert (tmp_path / "Modelfile").read_text() == "FROM ./other.gguf\n"

    folder = tmp_path / "folder"  # a directory export is replaced whole: nothing of the old one stays
    export(ExportConfig(model=str(lora_run), format="gguf", out=str(folder), ollama=True, verify=False))
    export(ExportConfig(model=str(lora_run), format="gguf", out=str(folder), force=True, verify=False))
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "lumora-f16.gguf"]
