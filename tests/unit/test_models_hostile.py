"""Hostile models: each refused with a clear message (exit 2, no traceback) in bounded time and memory."""

import json
import shutil
import struct
import subprocess
import sys
import time

import pytest


def _generate(model, timeout=120):
    """`chatforge generate MODEL hi` in a child process: (exit code, stderr, seconds, peak RSS in MB)."""
    # VmHWM (this process's own peak), not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the
    # parent, so a child of a pytest that once held GBs would report the parent's peak.
    code = ("import re, sys\nfrom chatforge.cli import main\nrc = main(sys.argv[1:])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "sys.stderr.write('maxrss_kb %s' % hwm)\nsys.exit(rc)")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code, "generate", str(model), "hi", "--max-tokens", "2"],
                         capture_output=True, text=True, timeout=timeout, env={**__import__("os").environ,
                                                                               "OMP_NUM_THREADS": "1"})
    err, _, rss = out.stderr.rpartition("maxrss_kb ")
    return out.returncode, err, time.monotonic() - t0, int(rss or 0) / 1024


def _gguf_string(s: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(s) if length is None else length) + s


@pytest.mark.parametrize("kind", ["huge_kv_count", "huge_string", "huge_tensor_count", "truncated"])
def test_gguf_with_absurd_sizes(tmp_path, kind, run_cli):
    f = tmp_path / f"{kind}.gguf"
    header = b"GGUF" + struct.pack("<I", 3)
    if kind == "huge_kv_count":
        body = struct.pack("<QQ", 0, 2**62)
    elif kind == "huge_string":  # one key whose length claims 2^60 bytes
        body = struct.pack("<QQ", 0, 1) + _gguf_string(b"general.architecture", 2**60)
    elif kind == "huge_tensor_count":
        body = struct.pack("<QQ", 2**61, 0)
    else:
        body = struct.pack("<QQ", 1, 1)[:10]
    f.write_bytes(header + body + b"\0" * 64)
    if kind == "huge_string":  # in a child process, to see its memory
        code, err, seconds, rss = _generate(f)
        assert seconds < 60 and rss < 2000, (seconds, rss)
    else:
        code, _, err = run_cli("generate", f, "hi", "--max-tokens", "1")
    assert code == 2, err
    assert str(f) in err and "Traceback" not in err and "internal error" not in err, err


def test_safetensors_header_larger_than_the_file(tmp_path, tiny_model):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    weights = next(d.glob("*.safetensors"))
    weights.write_bytes(struct.pack("<Q", 10**12) + b"{}" + b"\0" * 100)
    code, err, seconds, rss = _generate(d)
    assert code == 2 and "Traceback" not in err and "internal error" not in err, err
    assert str(d) in err and "weights" in err
    assert seconds < 60 and rss < 2000


@pytest.mark.parametrize("model_type", ["evil-arch", None])
def test_config_asking_for_remote_code_never_runs_it(tmp_path, tiny_model, run_cli, model_type):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    if model_type:
        cfg["model_type"] = model_type
    (d / "config.json").write_text(json.dumps(cfg))
    marker = tmp_path / "pwned"
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    code, out, err = run_cli("generate", d, "hi", "--max-tokens", "1")
    if model_type:  # only the model's own code could load it: refused
        assert code == 2 and "--trust-remote-code" in err and "Traceback" not in err, err
    else:  # an architecture transformers knows: loaded with its own code, never the model's
        assert "--trust-remote-code" not in err and "Traceback" not in err and "cannot load" not in err, err
    assert not marker.exists()  # the model's code never ran


@pytest.mark.parametrize("template", [
    "{% for i in range(99999) %}{% for j in range(99999) %}{% for k in range(99999) %}{% endfor %}{% endfor %}"
    "{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
])
def test_chat_template_that_never_ends_is_refused(tmp_path, tiny_model, template, run_cli, monkeypatch):
    from chatforge.models import template as tpl

    monkeypatch.setattr(tpl, "PROBE_SECONDS", 2.0)
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    for name in ("chat_template.jinja",):
        (d / name).unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    t0 = time.monotonic()
    code, _, err = run_cli("generate", d, "hi", "--max-tokens", "1")
    assert code == 2 and "chat template" in err and "Traceback" not in err, err
    assert time.monotonic() - t0 < 30
