"""Tool-call metrics: their definitions, and `chatforge eval` on the bundled tool held-out set (generation
scripted): call accuracy, argument exact match and F1, base vs tuned with confidence intervals."""

import json
from pathlib import Path

import pytest

from chatforge.evaluate.tools import arguments_f1, tool_metrics

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def call(name, **args):
    return {"id": "x", "type": "function", "function": {"name": name, "arguments": args}}


def test_metric_definitions():
    ref = [call("get_device_status", device="Halo", home_id="H-1")]
    assert arguments_f1(ref, ref) == 1.0
    assert arguments_f1([call("get_device_status", device="Halo", home_id="H-2")], ref) == 0.5
    assert arguments_f1([call("get_device_status", device="Halo")], ref) == pytest.approx(2 / 3)
    assert arguments_f1([call("get_order_status", device="Halo", home_id="H-1")], ref) == 0.0  # other function
    assert arguments_f1([], ref) == 0.0
    predicted = [ref, [], [call("get_order_status", order_id="LM-1")], [call("get_order_status", order_id="LM-2")]]
    references = [ref, [], [], [call("get_order_status", order_id="LM-1")]]
    m = tool_metrics(predicted, references, [True, True, True, True])
    acc, exact, f1 = (m[k][0] for k in ("tool_call_accuracy", "tool_arguments_exact", "tool_arguments_f1"))
    assert acc[:, 0].tolist() == [1, 1, 0, 1] and acc[:, 1].tolist() == [1, 1, 1, 1]  # right function, or no call
    assert exact.tolist() == [[1, 1], [0, 0], [0, 0], [0, 1]]  # only turns whose reference calls count
    assert f1.tolist() == [[1, 1], [0, 0], [0, 0], [0, 1]]
    assert m["tool_arguments_exact"][1](exact.sum(0)) == 50.0


@pytest.fixture
def scripted_tool_engine(monkeypatch, fake_run):
    """Engine.generate without decoding: the run answers every held-out turn like its reference (calls written
    in the default tool format), any other model answers in words and never calls."""
    from chatforge.infer import Completion, Engine

    rows = [json.loads(x) for x in (EXAMPLES / "lumora_tools_heldout.jsonl").read_text().splitlines()]
    by_question = {r["messages"][-2]["content"]: r["messages"][-1] for r in rows}

    def generate(self, prompts, params, on_done=None):
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            question = text.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>")[0]
            ref = by_question[question]
            if self.name == str(fake_run):
                calls = ref.get("tool_calls") or []
                answer = "\n".join(f"<tool_call>\n" + json.dumps({"name": c["function"]["name"], "arguments":
                                   json.loads(c["function"]["arguments"])}) + "\n</tool_call>" for c in calls) \
                    or ref["content"]
            else:
                answer = "Let me see what I can do."
            out.append(Completion(answer, "stop", len(ids), 5, []))
            if on_done:
                on_done(1)
        return out

    monkeypatch.setattr(Engine, "generate", generate)


def test_eval_on_tool_data_base_vs_tuned(fake_run, tiny_model, scripted_tool_engine, tmp_path):
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.report import summary_table
    from chatforge.evaluate.run import evaluate

    data = EXAMPLES / "lumora_tools_heldout.jsonl"
    result = evaluate(EvalConfig(model=str(fake_run), data=str(data), max_tokens=32, bootstrap=200,
                                 out=str(tmp_path / "report")))
    n = result["examples_evaluated"]
    calling = sum(1 for r in result["examples"] if r["reference_calls"])
    assert n == 64 and calling == 56
    tuned, base, delta = result["metrics"]["tuned"], result["metrics"]["base"], result["delta"]
    assert tuned["tool_call_accuracy"]["value"] == 100 and tuned["tool_arguments_exact"]["value"] == 100
    assert tuned["tool_arguments_f1"]["value"] == 100 and tuned["exact_match"]["value"] == 100
    assert base["tool_call_accuracy"]["value"] == pytest.approx(100 * (n - calling) / n, abs=0.01)  # rightly silent
    assert base["tool_arguments_exact"]["value"] == 0 and base["tool_arguments_f1"]["value"] == 0
    lo, hi = delta["tool_call_accuracy"]["ci"]
    assert 0 < lo <= delta["tool_call_accuracy"]["value"] <= hi
    row = next(r for r in result["examples"] if r["reference_calls"])
    assert row["tuned"]["tool_calls"] == row["reference_calls"] and row["base"]["tool_calls"] == []
    table = summary_table(result)
    assert "Tool-call accuracy" in table and "Tool arguments F1 (keys)" in table
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Tool arguments exact match" in report
