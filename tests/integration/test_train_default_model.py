"""Fine-tune the real default model (SmolLM2-135M-Instruct) for a few LoRA steps on the bundled example data."""

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.mark.integration
def test_lora_on_the_default_model_learns_and_the_run_is_a_model(tmp_path):
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import fit, save, setup

    run = setup(TrainConfig(data=str(EXAMPLES / "lumora_train.jsonl"), max_steps=4, batch_tokens=2048,
                            max_length=512, eval_every=4, save_every=4, out=str(tmp_path / "run")))
    before = run.trainer.evaluate()["eval_loss"]  # the base model on the held-out split
    assert fit(run) is None
    run_dir = save(run)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["base_model"] == "smollm2-135m-instruct"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in rows if "loss" in r]
    assert len(train_losses) == 4 and all(0 < x < 10 for x in train_losses)
    stats = json.loads((run_dir / "data_stats.json").read_text())
    assert stats["train"]["examples"] > 300 and stats["eval"]["examples"] > 10
    assert info["eval_loss"] < before  # 4 LoRA steps on this data already lower the held-out loss

    engine = Engine(load_model(str(run_dir)))
    answer = engine.chat([{"role": "user", "content": "What does Lumora Home sell?"}],
                         SamplingParams(max_tokens=8))
    assert answer.completion_tokens >= 1
