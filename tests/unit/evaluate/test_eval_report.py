"""Report files from a hand-made result: the table, the examples (worst first), the loss curve, atomic writes."""

import base64
import json

import pytest

from chatforge.evaluate import report as R

METRIC_KEYS = [k for k, _, _ in R.METRICS]


def _entry(value, half=1.0):
    return {"value": value, "ci": [value - half, value + half]}


def _example(i, base_f1, tuned_f1, question=None):
    def side(answer, f1):
        return {"answer": answer, "finish_reason": "stop", "f1": f1, "rougeL": f1, "answer_tokens": 7}
    return {"index": i, "question": question or f"question {i}?", "reference": f"reference {i}",
            "base": side(f"base answer {i}", base_f1), "tuned": side(f"tuned answer {i}", tuned_f1)}


@pytest.fixture
def result():
    examples = [_example(0, 50, 40), _example(1, 10, 90), _example(2, 30, 30, question="<b>x</b> & 退货？")]
    return {"model": "runs/demo", "baseline": "smollm2-135m-instruct", "data": "heldout.jsonl",
            "examples_evaluated": 3, "settings": {"confidence": 0.95, "max_tokens": 64, "bootstrap": 1000, "seed": 0},
            "metrics": {"base": {k: _entry(20.0) for k in METRIC_KEYS},
                        "tuned": {k: _entry(55.0) for k in METRIC_KEYS}},
            "delta": {k: _entry(35.0, half=5.0) for k in METRIC_KEYS}, "examples": examples}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    lines = [{"step": s, "epoch": s / 10, "tokens_seen": s * 1000, "loss": 3.0 - s * 0.2, "learning_rate": 1e-4,
              "tokens_per_sec": 500.0} for s in range(1, 8)]
    lines.insert(4, {"step": 4, "epoch": 0.4, "tokens_seen": 4000, "eval_loss": 2.5, "eval_token_accuracy": 0.4})
    text = "\n".join(json.dumps(x) for x in lines) + "\n" + '{"step": 8, "lo'  # a half-written last line
    (d / "metrics.jsonl").write_text(text)
    return d


def test_summary_table_has_base_tuned_delta_with_ci(result):
    text = R.summary_table(result)
    assert "runs/demo vs smollm2-135m-instruct on 3 held-out examples" in text
    assert "Delta (tuned - base) [95% CI]" in text
    f1_line = next(line for line in text.splitlines() if line.startswith("Token F1"))
    assert f1_line.split()[2:] == ["20.0", "55.0", "+35.0", "[+30.0,", "+40.0]"]


def test_summary_table_without_baseline(result):
    result.update(baseline=None, delta=None)
    del result["metrics"]["base"]
    text = R.summary_table(result)
    assert "Delta" not in text and "Base" not in text
    assert "55.0 [54.0, 56.0]" in text


def test_examples_ranked_worst_first_by_gain(result):
    assert [ex["index"] for ex in R.ranked_examples(result)] == [0, 2, 1]  # gains -10, 0, +80


def test_read_metrics_log_skips_bad_lines(run_dir):
    train, evals = R.read_metrics_log(run_dir / "metrics.jsonl")
    assert len(train) == 7 and len(evals) == 1 and evals[0]["eval_loss"] == 2.5


def test_write_report_files(result, run_dir, tmp_path):
    out = R.write_report(result, tmp_path / "eval", run_dir)
    assert sorted(p.name for p in out.iterdir()) == ["loss_curve.png", "metrics.json", "report.html", "report.md"]
    png = (out / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    data = json.loads((out / "metrics.json").read_text())
    assert data["delta"]["f1"]["ci"] == [30.0, 40.0] and data["loss_curve"] == "loss_curve.png"
    md = (out / "report.md").read_text()
    assert "| Token F1 | 20.0 | 55.0 | +35.0 [+30.0, +40.0] |" in md
    assert "![train and eval loss](loss_curve.png)" in md
    assert md.index("base answer 0") < md.index("base answer 1")  # worst (a loss) first
    assert "| Question | Reference | Base answer | Tuned answer |" in md
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," + base64.b64encode(png).decode() in page  # self-contained
    assert "&lt;b&gt;x&lt;/b&gt; &amp; 退货？" in page and "<b>x</b>" not in page  # escaped
    assert 'class="n up"' in page  # a gain whose interval excludes 0 is marked


def test_report_without_run_notes_the_missing_curve(result, tmp_path):
    out = R.write_report(result, tmp_path / "eval", None)
    assert not (out / "loss_curve.png").exists()
    assert "not a training run directory" in (out / "report.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["loss_curve"] is None


def test_write_report_replaces_an_earlier_report_and_leaves_no_temp_dirs(result, tmp_path):
    out = tmp_path / "eval"
    R.write_report(result, out, None)
    result["model"] = "second"
    R.write_report(result, out, None)
    assert json.loads((out / "metrics.json").read_text())["model"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["eval"]
