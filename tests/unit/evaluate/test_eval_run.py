"""evaluate(): prompts, baseline choice, metrics, stop rate and the report, with generation scripted."""

import json

import pytest

from chatforge.evaluate.config import EvalConfig
from chatforge.evaluate.run import cases_from_records, evaluate


def test_cases_prompt_is_everything_before_the_last_answer(heldout):
    cases = cases_from_records(heldout + [[{"role": "user", "content": "unanswered"}],
                                          [{"role": "assistant", "content": "no question"}]])
    assert len(cases) == len(heldout)  # nothing to compare with in the last two
    two_turns = cases[2]
    assert two_turns.prompt == heldout[2][:3] and two_turns.reference == heldout[2][3]["content"]
    assert two_turns.question == "Is support open on Sundays?"
    assert two_turns.messages == heldout[2]


def test_evaluate_run_against_its_base(fake_run, heldout, heldout_file, scripted_engine, tiny_model):
    result = evaluate(EvalConfig(model=str(fake_run), data=str(heldout_file), max_tokens=24, bootstrap=200))
    # baseline from run.json; report in RUN/eval
    assert result["baseline"] == str(tiny_model)
    assert result["report_dir"] == str(fake_run / "eval")
    assert [c["model"] for c in scripted_engine] == [str(fake_run), str(tiny_model)]
    for call in scripted_engine:  # greedy, the asked token limit, prompts end with the question
        assert call["params"].temperature == 0 and call["params"].max_tokens == 24
        assert [c[-1]["role"] for c in call["conversations"]] == ["user"] * len(heldout)
    tuned, base, delta = result["metrics"]["tuned"], result["metrics"]["base"], result["delta"]
    assert tuned["f1"]["value"] == 100 and tuned["exact_match"]["value"] == 100 and tuned["rougeL"]["value"] == 100
    assert base["f1"]["value"] < 20
    assert delta["f1"]["ci"][0] > 0 and delta["rougeL"]["ci"][0] > 0  # a clear gain, even on 6 examples
    assert tuned["stop_rate"]["value"] == 100 and base["stop_rate"]["value"] == 50
    # a fresh LoRA adapter (B = 0) leaves the weights unchanged: identical reference likelihoods, paired delta 0
    assert delta["perplexity"] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert tuned["perplexity"]["value"] > 1 and 0 <= tuned["token_accuracy"]["value"] <= 100
    rows = result["examples"]
    assert len(rows) == len(heldout) and rows[1]["reference"].startswith("所有 Lumora")
    assert rows[0]["tuned"]["f1"] == 100 and rows[0]["base"]["finish_reason"] == "stop"
    files = sorted(p.name for p in (fake_run / "eval").iterdir())
    assert files == ["loss_curve.png", "metrics.json", "report.html", "report.md"]
    saved = json.loads((fake_run / "eval" / "metrics.json").read_text())
    assert saved["delta"]["f1"] == delta["f1"] and saved["settings"]["max_tokens"] == 24


def test_plain_model_has_no_baseline_and_reports_in_cwd(tiny_model, tokenizer, heldout, heldout_file, scripted_engine,
                                                         tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = evaluate(EvalConfig(model=str(tiny_model), data=str(heldout_file), max_examples=3, bootstrap=50))
    assert result["baseline"] is None and "delta" not in result and set(result["metrics"]) == {"tuned"}
    assert result["examples_evaluated"] == 3 and len(scripted_engine) == 1
    # no --max-tokens: twice the longest reference (in tokens), at least 64
    longest = max(len(tokenizer(m[-1]["content"])["input_ids"]) for m in heldout[:3])
    assert scripted_engine[0]["params"].max_tokens == result["settings"]["max_tokens"] == max(64, 2 * longest)
    assert (tmp_path / "eval-report" / "report.html").is_file()
    assert "not a training run" in (tmp_path / "eval-report" / "report.md").read_text()


@pytest.mark.parametrize("problem", ["missing_data", "text_data", "bad_baseline", "out_not_report"])
def test_setup_errors_before_loading_models(problem, fake_run, heldout_file, tmp_path, scripted_engine):
    from chatforge.errors import ChatforgeError

    cfg = EvalConfig(model=str(fake_run), data=str(heldout_file), out=str(tmp_path / "r"))
    if problem == "missing_data":
        cfg.data = str(tmp_path / "nope.jsonl")
    elif problem == "text_data":
        cfg.data = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("Just some raw text.\n")
    elif problem == "bad_baseline":
        cfg.baseline = str(tmp_path / "no-such-model")
    else:
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "thesis.tex").write_text("precious")
    with pytest.raises(ChatforgeError) as e:
        evaluate(cfg)
    assert e.value.exit_code == 2
    assert scripted_engine == []  # nothing was generated


def test_default_baseline(fake_run, tiny_model, tmp_path):
    from chatforge.evaluate.run import default_baseline
    from chatforge.models.resolve import resolve

    assert default_baseline(resolve(str(fake_run))) == str(tiny_model)  # run.json
    assert default_baseline(resolve(str(fake_run / "final"))) == str(tiny_model)  # the adapter's chatforge.json
    assert default_baseline(resolve(str(tiny_model))) is None  # a plain model: no comparison unless asked
