"""`chatforge eval` on preference pairs honours the options it shares with the answer evaluation: --quantize
loads the model it names (not silently the full-precision one), and the Python API gets the CLI's checks."""

from pathlib import Path

import pytest

from chatforge.errors import ChatforgeError
from chatforge.evaluate.config import EvalConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture
def pairs(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((EXAMPLES / "lumora_pairs_heldout.jsonl").read_text(encoding="utf-8")
                            .splitlines(True)[:2]), encoding="utf-8")
    return path


def test_quantize_reaches_the_model_loader(tiny_model, pairs, tmp_path, monkeypatch):
    import chatforge.models.load
    from chatforge.evaluate.preference import evaluate_preferences

    seen = {}

    def load_model(spec, **kw):
        seen.update(kw)
        raise ChatforgeError("stop here")

    monkeypatch.setattr(chatforge.models.load, "load_model", load_model)
    with pytest.raises(ChatforgeError, match="stop here"):
        evaluate_preferences(EvalConfig(model=str(tiny_model), data=str(pairs), baseline="none", quantize="int8",
                                        out=str(tmp_path / "report")))
    assert seen.get("quantize") == "int8"


@pytest.mark.parametrize("field, value, flag", [("batch_size", 0, "--batch-size"), ("bootstrap", 0, "--bootstrap"),
                                                ("max_examples", -1, "--max-examples")])
def test_python_api_values_are_checked_on_pairs_too(tiny_model, pairs, tmp_path, field, value, flag):
    from chatforge.evaluate.run import evaluate

    with pytest.raises(ChatforgeError) as e:
        evaluate(EvalConfig(model=str(tiny_model), data=str(pairs), baseline="none", out=str(tmp_path / "report"),
                            **{field: value}))
    assert e.value.message.startswith(f"{flag} {value}:")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("data", ["heldout", "pairs"])
def test_a_missing_baseline_is_named_as_the_baseline(run_cli, fake_run, heldout_file, pairs, tmp_path, data):
    path = heldout_file if data == "heldout" else pairs
    code, out, err = run_cli("eval", fake_run, "--data", path, "--baseline", tmp_path / "gone",
                             "--out", tmp_path / "report")
    assert code == 2 and f"--baseline: {tmp_path / 'gone'}: no such file" in err and "--no-baseline" in err
    assert "Traceback" not in err and not (tmp_path / "report").exists()


def test_a_runs_base_model_that_is_gone_says_it_is_the_default_baseline(run_cli, fake_run, heldout_file, tmp_path):
    import json
    import shutil

    run = tmp_path / "moved"
    shutil.copytree(fake_run, run)
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()),
                                              "base_model": str(tmp_path / "old-base")}))
    code, _, err = run_cli("eval", run, "--data", heldout_file, "--out", tmp_path / "report")
    assert code == 2 and f"the base model of {run} (the default --baseline): {tmp_path / 'old-base'}" in err


def test_pairs_without_a_system_message_are_scored_with_the_trained_one(tiny_model, pairs, tmp_path, monkeypatch):
    # a model trained with a system prompt (MODEL/chatforge.json) is asked with it by chat, serve and the answer
    # eval: its pairs are scored the same way
    import json
    import shutil

    import numpy as np

    import chatforge.evaluate.preference as P

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "chatforge.json").write_text(json.dumps({"system_prompt": "You answer for Lumora."}))
    bare = tmp_path / "bare.jsonl"  # the pairs without their system message
    records = [json.loads(line) for line in pairs.read_text().splitlines()]
    for r in records:
        r["input"]["messages"] = [m for m in r["input"]["messages"] if m["role"] != "system"]
    bare.write_text("".join(json.dumps(r) + "\n" for r in records))
    seen = []

    def pair_scores(spec, records, cfg, label, emit):
        seen.extend(records)
        return np.zeros((len(records), 2))

    monkeypatch.setattr(P, "pair_scores", pair_scores)
    result = P.evaluate_preferences(EvalConfig(model=str(model), data=str(bare), baseline="none",
                                               out=str(tmp_path / "report")))
    assert len(seen) == 2 and all(r.prompt[0] == {"role": "system", "content": "You answer for Lumora."}
                                  for r in seen)
    assert "2 of 2 pairs have no system message" in result["notes"][0]
    assert "You answer for Lumora." in (tmp_path / "report" / "report.md").read_text()


def test_scoring_batches_are_bounded_in_padded_tokens():
    """One very long pair (a 5,000-word prompt) must not pad a whole batch to its length (the run seemed hung)."""
    from chatforge.evaluate.preference import BATCH_TOKENS, _batches

    lengths = [7000, 7000, 300, 300, 300, 120, 120, 100]
    batches = _batches(list(range(8)), lengths, batch_size=4)
    assert batches == [[0], [1], [2, 3, 4, 5], [6, 7]]  # a 7,000-token pair alone; then batch_size bounds them
    assert all(len(b) * lengths[b[0]] <= BATCH_TOKENS or len(b) == 1 for b in batches)
    assert sorted(i for b in _batches(list(range(8)), [10] * 8, batch_size=3) for i in b) == list(range(8))


def test_scores_do_not_depend_on_how_the_answers_are_batched(tiny_model, monkeypatch):
    import numpy as np

    from chatforge.evaluate import preference
    from chatforge.models.load import load_model

    loaded = load_model(str(tiny_model), dtype="float32")
    convs = [[{"role": "user", "content": "Hello " * n}, {"role": "assistant", "content": "Hi there " * (n % 3 + 1)}]
             for n in (40, 3, 7, 1)]
    done = []
    together = preference.answer_logprobs(loaded.model, loaded.tokenizer, convs, on_done=done.append)
    monkeypatch.setattr(preference, "BATCH_TOKENS", 1)  # every conversation alone
    alone = preference.answer_logprobs(loaded.model, loaded.tokenizer, convs)
    assert sum(done) == 4 and np.allclose(together, alone, atol=1e-5)
