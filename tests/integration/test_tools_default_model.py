"""The default model (SmolLM2-135M-Instruct, no tool support of its own) fine-tuned briefly on the bundled tool
data calls the right tool for held-out requests measurably more often than the base model.

The figures printed here are the README's (run: `flock /tmp/chatforge-heavy.lock pytest -s THIS_FILE`)."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
STEPS, LR, HELDOUT = 24, 2e-3, 32


def test_brief_tool_fine_tuning_calls_the_right_tool_more_often(tmp_path):
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import evaluate
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    run = train(TrainConfig(data=str(EXAMPLES / "lumora_tools_train.jsonl"), max_steps=STEPS, lr=LR,
                            batch_tokens=1024, max_length=512, warmup=0.1, eval_split=0.0, tensorboard=False,
                            out=str(tmp_path / "run")))
    result = evaluate(EvalConfig(model=str(run), data=str(EXAMPLES / "lumora_tools_heldout.jsonl"),
                                 max_examples=HELDOUT, max_tokens=40, bootstrap=1000, out=str(tmp_path / "eval")))
    base, tuned, delta = result["metrics"]["base"], result["metrics"]["tuned"], result["delta"]
    for k in ("tool_call_accuracy", "tool_arguments_exact", "tool_arguments_f1"):
        print(f"{k}: base {base[k]['value']} -> tuned {tuned[k]['value']} "
              f"(delta {delta[k]['value']}, 95% CI {delta[k]['ci']})")
    assert result["baseline"] == "smollm2-135m-instruct"
    assert tuned["tool_call_accuracy"]["value"] > base["tool_call_accuracy"]["value"]
    assert delta["tool_call_accuracy"]["ci"][0] > 0  # measurably: the whole interval is above zero
    assert tuned["tool_arguments_f1"]["value"] > base["tool_arguments_f1"]["value"]
