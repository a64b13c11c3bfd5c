"""`chatforge eval RUN --data PAIRS`: preference accuracy and margin of a DPO run vs its base, with CIs, the
paired delta and the pairs each model gets wrong. DPO on the tiny model raises accuracy on its training pairs."""

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture(scope="module")
def pairs_and_run(tmp_path_factory, tiny_model):
    import torch

    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    rows = [json.loads(line)["messages"] for line in (EXAMPLES / "lumora_train.jsonl").read_text().splitlines()[:40]]
    rows = [m for m in rows if len(m) == 3]
    pairs = [{"prompt": m[:2], "chosen": [m[2]], "rejected": [{"role": "assistant",
                                                               "content": rows[(i + 5) % len(rows)][2]["content"]}]}
             for i, m in enumerate(rows) if rows[(i + 5) % len(rows)][2]["content"] != m[2]["content"]][:12]
    tmp = tmp_path_factory.mktemp("pref-eval")
    path = tmp / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(TrainConfig(model=str(tiny_model), data=str(path), method="dpo", out=str(tmp / "run"),
                                max_length=128, micro_batch_tokens=2048, batch_tokens=2048, max_steps=15, lr=1e-2,
                                precision="fp32", eval_split=0.0, save_every=15, tensorboard=False))
    finally:
        torch.set_num_threads(threads)
    return path, run


def test_dpo_run_beats_its_base_on_its_pairs(run_cli, pairs_and_run):
    path, run = pairs_and_run
    code, out, err = run_cli("eval", run, "--data", path, "--bootstrap", "200")
    assert code == 0, err
    assert "Preference accuracy" in out and "Delta (tuned - base)" in out and "held-out pairs" in out
    result = json.loads((run / "eval" / "metrics.json").read_text())
    assert result["kind"] == "preference" and result["examples_evaluated"] == len(path.read_text().splitlines())
    tuned, base = result["metrics"]["tuned"], result["metrics"]["base"]
    assert tuned["preference_accuracy"]["value"] >= 90 > base["preference_accuracy"]["value"]
    assert tuned["logprob_margin"]["value"] > base["logprob_margin"]["value"]
    delta = result["delta"]["preference_accuracy"]
    assert delta["ci"][0] <= delta["value"] <= delta["ci"][1] and delta["value"] > 0
    lo, hi = tuned["preference_accuracy"]["ci"]
    assert lo <= tuned["preference_accuracy"]["value"] <= hi
    # the pairs each model gets wrong: consistent with its accuracy, listed in the report
    n = result["examples_evaluated"]
    for label in ("tuned", "base"):
        accuracy = result["metrics"][label]["preference_accuracy"]["value"] / 100
        assert len(result["wrong"][label]) == round(n * (1 - accuracy))
    report = (run / "eval" / "report.md").read_text()
    assert f"Pairs the base model ({result['baseline']}) gets wrong: {len(result['wrong']['base'])}" in report
    first_wrong = result["pairs"][result["wrong"]["base"][0]]
    assert first_wrong["question"] in report and (run / "eval" / "report.html").is_file()


def test_chat_data_keeps_the_answer_metrics(pairs_and_run, tmp_path):
    """Preference detection does not capture chat data: a chat file still goes to the answer metrics."""
    from chatforge.data.preference import is_preference_data

    assert not is_preference_data(EXAMPLES / "lumora_heldout.jsonl")
    assert is_preference_data(pairs_and_run[0])


def test_labelled_answers_are_refused_with_a_reason(run_cli, pairs_and_run, tmp_path):
    path, run = pairs_and_run
    kto = tmp_path / "kto.jsonl"
    kto.write_text(json.dumps({"prompt": "Hi", "completion": "Hello", "label": True}) + "\n")
    code, _, err = run_cli("eval", run, "--data", kto, "--out", tmp_path / "r")
    assert code == 2 and "no pairs" in err
