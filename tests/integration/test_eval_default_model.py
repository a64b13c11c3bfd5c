"""`chatforge eval` with the real default model on a few bundled held-out questions."""

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HELDOUT = Path(__file__).resolve().parents[2] / "examples" / "data" / "lumora_heldout.jsonl"


def test_eval_default_model_on_heldout(run_cli, tmp_path):
    out = tmp_path / "report"
    code, stdout, err = run_cli("eval", "smollm2-135m-instruct", "--data", HELDOUT, "--max-examples", 5,
                                "--max-tokens", 24, "--no-baseline", "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    m = {k: v["value"] for k, v in result["metrics"]["tuned"].items()}
    assert result["examples_evaluated"] == 5 and result["baseline"] is None
    # a real instruct model knows English: the reference answers are far likelier than under a random model
    assert 1 < m["perplexity"] < 200 and 20 < m["token_accuracy"] < 100
    assert 0 < m["f1"] < 100 and 0 < m["rougeL"] < 100 and 0 < m["chrf"] < 100
    assert 0 <= m["stop_rate"] <= 100 and 0 < m["answer_tokens"] <= 24
    saved = json.loads((out / "metrics.json").read_text())
    for row in saved["examples"]:
        assert row["tuned"]["answer"].strip() and row["question"] and row["reference"]
        assert row["tuned"]["finish_reason"] in ("stop", "length") and not math.isnan(row["tuned"]["f1"])
    assert "<table>" in (out / "report.html").read_text()
