"""`chatforge check --estimate` predicts the epoch `chatforge train` runs: the same packed rows (its --max-length,
its eval split held out, over-long chats dropped), timed with the default recipe's step."""

import json
import os

import pytest


def _train_rows(make_cfg, **overrides) -> int:
    return _train_facts(make_cfg, **overrides)[0]


def _train_facts(make_cfg, **overrides) -> tuple[int, int]:
    """(packed rows, epochs) of a `chatforge train` run: its data_stats.json and config.yaml."""
    import yaml

    from chatforge.train.run import train

    run = train(make_cfg(max_steps=1, save_every=100, eval_every=100, tensorboard=False, **overrides))
    epochs = yaml.safe_load((run / "config.yaml").read_text())["epochs"]
    return json.loads((run / "data_stats.json").read_text())["packing"]["rows"], epochs


@pytest.mark.parametrize("eval_split", [0.1, 0.0])
def test_epoch_rows_are_the_rows_train_packs(make_cfg, tokenizer, chat_file, eval_split):
    """Examples encoded at check's longer --max-length give the rows of the train run's own encoding."""
    from chatforge.data import prepare
    from chatforge.train.speed import epoch_rows

    rows = _train_rows(make_cfg, eval_split=eval_split, max_length=96)  # rows of 96: a few chats are longer
    prepared = prepare(chat_file, tokenizer, max_length=2048)
    assert any(len(e) > 96 for e in prepared.examples)  # the drop rule is exercised
    assert epoch_rows(prepared.examples, "chat", 96, eval_split=eval_split, seed=42)[0] == rows
    assert epoch_rows(prepared.examples, "chat", 2048, eval_split=eval_split, seed=42)[0] < rows


@pytest.mark.parametrize("answer_token_passes", [None, 20_000])
def test_check_estimate_scales_the_measured_step_to_trains_epoch(make_cfg, run_cli, tiny_model, chat_file, capsys,
                                                                 monkeypatch, answer_token_passes):
    """The estimate's epochs are the run's; with a small answer-token budget the token rule picks them (fewer
    than the 25 the example rule gives these 72 training chats), in check and in train alike."""
    from chatforge.data import stats
    from chatforge.train.config import TrainConfig

    if answer_token_passes:
        monkeypatch.setattr(stats, "ANSWER_TOKEN_PASSES", answer_token_passes)

    default = TrainConfig()
    rows, run_epochs = _train_facts(make_cfg, epochs="auto", max_length=default.max_length,
                                    micro_batch_tokens=default.micro_batch_tokens,
                                    batch_tokens=default.batch_tokens)
    capsys.readouterr()  # the run's summary
    code, out, err = run_cli("check", chat_file, "--model", tiny_model, "--json")
    assert code == 0, err
    est = json.loads(out)["estimate"]
    assert est["row_length"] == default.max_length and est["benchmark_tokens"] == default.micro_batch_tokens
    assert est["epoch_rows"] == rows  # train's own rows (check packs rows of 2048 over all examples)
    assert est["epoch_tokens"] == rows * default.max_length
    assert est["epoch_seconds"] == pytest.approx(est["epoch_tokens"] / est["tokens_per_second"], rel=0.01)
    assert est["epochs"] == run_epochs  # --epochs auto of the examples that train (not of all of them)
    assert (run_epochs < 25) == bool(answer_token_passes)
    assert est["run_seconds"] == pytest.approx(run_epochs * est["epoch_seconds"], rel=0.01)


def test_a_measured_step_is_reused_for_the_same_model_and_shape_until_remeasure(run_cli, tiny_model, chat_file,
                                                                               tmp_path, monkeypatch):
    import shutil

    from chatforge.commands import check

    monkeypatch.setenv("CHATFORGE_HOME", str(tmp_path / "home"))
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    measure, calls = check._measure_step, []
    monkeypatch.setattr(check, "_measure_step", lambda *a, **k: calls.append(1) or measure(*a, **k))

    def estimate(*extra):
        code, out, err = run_cli("check", chat_file, "--model", model, "--json", *extra)
        assert code == 0, err
        return json.loads(out)["estimate"]

    first = estimate()
    assert calls == [1] and not first["reused"]
    again = estimate()  # the model is not even loaded: the step measured a moment ago
    assert calls == [1] and again["reused"] and again["measured_at"]
    assert again["tokens_per_second"] == first["tokens_per_second"] and again["epoch_seconds"] == first["epoch_seconds"]
    code, out, _ = run_cli("check", chat_file, "--model", model)
    assert code == 0 and f"measured {first['tokens_per_second']:.0f} tokens/s on {again['measured_at']}, " \
                          "--remeasure to time it again;" in out
    assert not estimate("--remeasure")["reused"] and calls == [1, 1]
    # other weights (a retrained or replaced model at the same path) are another model: measured anew
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert not estimate()["reused"] and calls == [1, 1, 1]
    (tmp_path / "home" / "speed.json").write_text("{not json")  # a broken cache only costs a measurement
    assert not estimate()["reused"] and calls == [1, 1, 1, 1] and estimate()["reused"]


def test_data_of_about_the_same_example_length_shares_a_measurement():
    from chatforge.train.speed import example_bucket

    assert [example_bucket(n) for n in (1, 16, 90, 110, 128, 180, 300)] == [16, 16, 64, 128, 128, 128, 256]
