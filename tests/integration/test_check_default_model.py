"""`chatforge check` with the real default model: the bundled examples pass with a measured time estimate,
and a broken file fails with exit code 2 and no traceback in a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHATFORGE = Path(sys.executable).with_name("chatforge")


def test_bundled_examples_check_clean_with_estimate(run_cli):
    from chatforge.models.load import load_model

    load_model()  # the embedded GGUF is converted once per CHATFORGE_HOME; not part of the timing below
    code, out, err = run_cli("check", ROOT / "examples/data/lumora_train.jsonl", "--eval-data",
                             ROOT / "examples/data/lumora_heldout.jsonl", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["errors"] == 0
    # the only warnings: two paraphrased questions with the same answer (near-duplicates, data/quality.py)
    assert set(report["counts"]) <= {"near_duplicate"} and report["warnings"] == report["counts"].get("near_duplicate", 0)
    assert report["stats"]["examples"] == 383 and report["stats"]["auto_epochs"] == 8
    est = report["estimate"]
    assert est["tokens_per_second"] > 0 and est["benchmark_steps"] >= 1
    # train's own epoch: rows of its --max-length (1024), nothing held out (--eval-data), all 383 examples
    assert est["row_length"] == 1024 and est["epochs"] == 8
    assert est["epoch_seconds"] == pytest.approx(est["epoch_rows"] * 1024 / est["tokens_per_second"], rel=0.01)
    assert est["benchmark_seconds"] < 60  # ~5 s on an idle 2-core CPU; CI machines are shared


def test_chinese_rows_of_the_bundled_data_are_trained(tokenizer):
    from chatforge.data import prepare

    prepared = prepare(ROOT / "examples/data/lumora_train.jsonl", tokenizer)
    zh = [(r, e) for r, e in zip(prepared.records, prepared.examples) if any("\u4e00" <= c <= "\u9fff"
                                                                         for c in r[-1]["content"])]
    assert zh, "the bundled data has Chinese conversations"
    for record, enc in zh:
        trained = tokenizer.decode([t for t in enc.labels if t != -100])
        assert trained.endswith(record[-1]["content"] + "<|im_end|>")


def test_broken_file_subprocess_exit_2_without_traceback(tmp_path, tiny_model):
    bad = tmp_path / "broken.jsonl"
    bad.write_bytes(b'{"messages": [{"role": "user", "content": "Hi"}]}\n{"messages": [\n\xff\xfe\n[1, 2]\n')
    p = subprocess.run([str(CHATFORGE), "check", str(bad), "--model", str(tiny_model), "--no-estimate"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    for line, cls in [(1, "no assistant turn"), (2, "invalid JSON"), (3, "invalid UTF-8"), (4, "wrong type")]:
        assert f"{bad}:{line}: {cls}" in p.stdout
    assert not [f for f in tmp_path.iterdir() if f.name != "broken.jsonl"]  # check writes nothing
