"""`chatforge improve RUN` on feedback the store holds: options out of range are refused before anything is
written, a held-out share that leaves nothing to train on is a clear error, and a failure after training
leaves no unjudged candidate run (nor its work directory) behind."""

from pathlib import Path

import pytest

from chatforge.errors import ChatforgeError
from chatforge.store import Store


@pytest.fixture
def run_and_store(tmp_path):
    """A finished run (final/) and a store with 3 better-of-two picks on its answers."""
    run = tmp_path / "runs" / "lumora"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    store = Store(tmp_path / "chatforge.db")
    mid = store.register_model(str(run), run / "final")
    for i in range(3):
        for tag in ("good", "bad"):
            store.log_completion(id=f"chatcmpl-{tag}-{i}", model_id=mid,
                                 messages=[{"role": "user", "content": f"Q{i}"}], answer=f"{tag} answer {i}",
                                 finish_reason="stop", sampling={}, prompt_tokens=1, completion_tokens=1,
                                 latency_s=0.0, source="test")
        store.add_pair(f"chatcmpl-good-{i}", f"chatcmpl-bad-{i}")
    yield run, store
    store.close()


def _left_behind(run: Path) -> list[str]:
    return sorted(p.name for p in run.parent.iterdir() if p.name != run.name)


def test_a_holdout_that_leaves_nothing_to_train_on_is_refused_before_writing(run_and_store):
    from chatforge.improve import ImproveConfig, improve

    run, store = run_and_store
    with pytest.raises(ChatforgeError) as e:
        improve(ImproveConfig(run=str(run), min_pairs=2, holdout=0.9), store)
    assert e.value.exit_code == 2 and "--holdout 0.9" in e.value.message and "none to train on" in e.value.message
    assert _left_behind(run) == []


def test_a_run_that_is_not_there_is_named_as_missing(run_and_store, tmp_path):
    from chatforge.improve import ImproveConfig, improve

    _, store = run_and_store
    with pytest.raises(ChatforgeError, match="runs/nope: no such run directory") as e:
        improve(ImproveConfig(run=str(tmp_path / "runs" / "nope")), store)
    assert e.value.exit_code == 2
    (tmp_path / "half").mkdir()
    with pytest.raises(ChatforgeError, match="not a finished training run"):
        improve(ImproveConfig(run=str(tmp_path / "half")), store)


@pytest.mark.parametrize("field,value,flag", [("holdout", 1.0, "--holdout"), ("holdout", -0.5, "--holdout"),
                                              ("beta", 0.0, "--beta"), ("lr", -1.0, "--lr"),
                                              ("sft_weight", -0.1, "--sft-weight")])
def test_python_api_values_get_the_cli_checks(run_and_store, field, value, flag):
    from chatforge.improve import ImproveConfig, improve

    run, store = run_and_store
    with pytest.raises(ChatforgeError) as e:
        improve(ImproveConfig(run=str(run), min_pairs=2, **{field: value}), store)
    assert e.value.message.startswith(f"{flag} {value}:")
    assert _left_behind(run) == []


def test_a_failure_after_training_leaves_no_unjudged_run(run_and_store, monkeypatch):
    import chatforge.evaluate.run
    import chatforge.train.run
    from chatforge.improve import ImproveConfig, improve

    run, store = run_and_store

    def fake_train(cfg, on_event=None):
        out = Path(cfg.out)
        (out / "final").mkdir(parents=True)  # looks like a finished run
        return out

    def failing_evaluate(cfg, on_event=None):
        raise ChatforgeError("evaluation failed", exit_code=1)

    monkeypatch.setattr(chatforge.train.run, "train", fake_train)
    monkeypatch.setattr(chatforge.evaluate.run, "evaluate", failing_evaluate)
    with pytest.raises(ChatforgeError, match="evaluation failed"):
        improve(ImproveConfig(run=str(run), min_pairs=2, holdout=0.2), store)
    assert _left_behind(run) == []  # neither lumora-2 (never judged) nor .lumora-2.improving
