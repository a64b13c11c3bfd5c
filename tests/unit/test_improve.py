"""`chatforge improve RUN` end to end on the tiny model: feedback in the store -> DPO from RUN -> evaluated
against RUN on held-out feedback -> kept as RUN-2; a deliberately worse run is refused (exit 1, not kept);
too little feedback says how much more is needed."""

import json
from pathlib import Path

import pytest

from chatforge.errors import ChatforgeError

EXAMPLES = Path(__file__).resolve().parents[1].parent / "examples" / "data"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def sft_run(tiny_model, tmp_path_factory):
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    root = tmp_path_factory.mktemp("improve")
    data = root / "chats.jsonl"
    data.write_text("".join((EXAMPLES / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines(True)[:40]))
    return train(TrainConfig(model=str(tiny_model), data=str(data), out=str(root / "runs" / "lumora"), max_steps=2,
                             max_length=128, micro_batch_tokens=256, batch_tokens=512, precision="fp32",
                             eval_split=0.0, lr=5e-3, tensorboard=False))


@pytest.fixture
def store(sft_run, tmp_path):
    """24 prompts, each answered twice by the run (the right answer, a wrong-product one), the right one picked."""
    from chatforge.models.resolve import resolve
    from chatforge.store import Store

    chats = [json.loads(x)["messages"] for x in (EXAMPLES / "lumora_train.jsonl").read_text().splitlines()[:80]]
    chats = [m for m in chats if len(m) == 3][:24]
    s = Store(tmp_path / "chatforge.db")
    r = resolve(str(sft_run))
    mid = s.register_model(str(sft_run), r.path, r.adapter)
    for i, m in enumerate(chats):
        wrong = f"Sorry, I can only help with Zentrix blenders (model Z{i}); please ask Zentrix support."
        for tag, answer in (("good", m[2]["content"]), ("bad", wrong)):
            s.log_completion(id=f"chatcmpl-{tag}-{i}", model_id=mid, messages=m[:2], answer=answer,
                             finish_reason="stop", sampling={}, prompt_tokens=20, completion_tokens=20,
                             latency_s=0.1, source="test")
        s.add_pair(f"chatcmpl-good-{i}", f"chatcmpl-bad-{i}")
    yield s
    s.close()


def _cfg(run, **kw):
    from chatforge.improve import ImproveConfig

    return ImproveConfig(run=str(run), max_steps=4, lr=5e-3, holdout=0.25, **kw)


@pytest.mark.slow
def test_improve_trains_on_the_feedback_and_keeps_a_run_that_is_not_worse(sft_run, store, capsys):
    from chatforge.improve import improve

    capsys.readouterr()
    events = []
    verdict = improve(_cfg(sft_run), store, on_event=events.append)
    assert capsys.readouterr().out == ""  # the stages report through events; the verdict is the caller's to print
    first = events[0]  # what it trains, before the evaluations' events
    assert (first.stage, first.phase) == ("improve", "message") and first.message.startswith("DPO on 18 of the")
    assert "eval" in {e.stage for e in events[1:]}
    assert verdict.ok and verdict.method == "dpo" and verdict.out == sft_run.parent / "lumora-2"
    assert verdict.counts["pairs"] == 24 and verdict.counts["heldout"] == 6 and verdict.counts["train"] == 18
    assert {c["metric"] for c in verdict.checks} == {"preference_accuracy", "logprob_margin"}
    margin = next(c for c in verdict.checks if c["metric"] == "logprob_margin")
    assert margin["value"] > 0  # trained on the right answers: held-out right answers gain on wrong ones
    out = verdict.out
    assert (out / "final").is_dir() and (out / "feedback" / "heldout.jsonl").is_file()
    assert len((out / "feedback" / "train.jsonl").read_text().splitlines()) == 18
    assert not list(out.parent.glob(".lumora-2*"))  # no work directory left behind
    # every path the run records is there: its config repeats the run (no temporary directory in it)
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert Path(config["data"]) == out / "feedback" / "train.jsonl"
    assert json.loads((out / "run.json").read_text())["data"] == config["data"]
    report = json.loads((out / "eval-feedback" / "metrics.json").read_text())
    assert str(out / "feedback" / "heldout.jsonl") in json.dumps(report)


@pytest.mark.slow
def test_a_deliberately_worse_run_is_refused_with_exit_1(sft_run, store, run_cli, monkeypatch):
    import chatforge.improve as improve_module

    real = improve_module.split

    def swapped(rows, share, seed):  # train on the pairs reversed; judge on the right ones
        train, held = real(rows, share, seed)
        return [dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in train], held

    monkeypatch.setattr(improve_module, "split", swapped)
    out = sft_run.parent / "worse"
    code, stdout, err = run_cli("improve", sft_run, "--store", store.path, "--out", out, "--max-steps", "4",
                                "--lr", "5e-3", "--holdout", "0.25")
    assert code == 1, stdout + err
    assert "WORSE" in stdout and "it was not kept" in stdout and not out.exists()
    lines = stdout.splitlines()  # in order: what it trains, each check, the verdict (no train summary between)
    assert lines[0].startswith("chatforge improve: DPO on 18 of the feedback rows") and "tokens seen" not in stdout
    assert all(line.startswith("  ") for line in lines[1:-1]) and lines[-1].startswith("verdict: "), stdout


@pytest.mark.slow
def test_a_run_worse_on_runs_own_heldout_chats_is_refused_even_when_feedback_says_better(tiny_model, tmp_path,
                                                                                          run_cli):
    """Feedback that prefers off-topic answers: the candidate learns it (better on the held-out feedback) and
    loses RUN's job (the right answers of RUN's held-out chat set get less likely): the gate refuses it."""
    from chatforge.models.resolve import resolve
    from chatforge.store import Store
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    lines = (EXAMPLES / "lumora_train.jsonl").read_text(encoding="utf-8").splitlines(True)
    chats = [m for m in (json.loads(x)["messages"] for x in lines[:80]) if len(m) == 3][:24]
    (tmp_path / "chats.jsonl").write_text("".join(lines[:40]), encoding="utf-8")
    heldout = tmp_path / "heldout.jsonl"  # RUN's own held-out set, named in its config (eval_data)
    heldout.write_text("".join((EXAMPLES / "lumora_heldout.jsonl").read_text(encoding="utf-8").splitlines(True)[:12]),
                       encoding="utf-8")
    run = train(TrainConfig(model=str(tiny_model), data=str(tmp_path / "chats.jsonl"), eval_data=str(heldout),
                            out=str(tmp_path / "runs" / "lumora"), max_steps=2, max_length=128,
                            micro_batch_tokens=256, batch_tokens=512, precision="fp32", lr=5e-3, tensorboard=False))
    with Store(tmp_path / "chatforge.db") as s:
        r = resolve(str(run))
        mid = s.register_model(str(run), r.path, r.adapter)
        for i, m in enumerate(chats):
            wrong = f"Sorry, I can only help with Zentrix blenders (model Z{i}); please ask Zentrix support."
            for tag, answer in (("good", m[2]["content"]), ("bad", wrong)):
                s.log_completion(id=f"chatcmpl-{tag}-{i}", model_id=mid, messages=m[:2], answer=answer,
                                 finish_reason="stop", sampling={}, prompt_tokens=20, completion_tokens=20,
                                 latency_s=0.1, source="test")
            s.add_pair(f"chatcmpl-bad-{i}", f"chatcmpl-good-{i}")  # the users picked the off-topic answer
    out = tmp_path / "runs" / "lumora-2"
    code, stdout, err = run_cli("improve", run, "--store", tmp_path / "chatforge.db", "--max-steps", "4", "--lr",
                                "5e-3", "--holdout", "0.25")
    assert code == 1, stdout + err
    feedback = [line for line in stdout.splitlines() if line.startswith("  held-out feedback")]
    own = [line for line in stdout.splitlines() if line.startswith("  lumora's held-out set")]
    assert feedback and not any(line.endswith("WORSE") for line in feedback), stdout  # feedback: not worse
    assert any(line.endswith("WORSE") for line in own), stdout  # RUN's own held-out chats: worse
    last = stdout.splitlines()[-1]
    assert "worse than" in last and "lumora's held-out set" in last and "held-out feedback" not in last
    assert "it was not kept" in stdout and not out.exists() and not list(out.parent.glob(".lumora-2*"))


def test_too_little_feedback_says_how_much_more_is_needed(sft_run, store, tmp_path):
    from chatforge.improve import improve

    with pytest.raises(ChatforgeError, match=r"24 preference pairs \(DPO needs 30: 6 more\)") as e:
        improve(_cfg(sft_run, min_pairs=30, out=str(tmp_path / "never")), store)
    assert e.value.exit_code == 1 and not (tmp_path / "never").exists()


@pytest.mark.slow
def test_thumbs_only_feedback_trains_kto(sft_run, tmp_path):
    from chatforge.improve import improve
    from chatforge.models.resolve import resolve
    from chatforge.store import Store

    chats = [json.loads(x)["messages"] for x in (EXAMPLES / "lumora_train.jsonl").read_text().splitlines()[:60]]
    chats = [m for m in chats if len(m) == 3][:20]
    with Store(tmp_path / "thumbs.db") as s:
        r = resolve(str(sft_run))
        mid = s.register_model(str(sft_run), r.path, r.adapter)
        for i, m in enumerate(chats):
            answer = m[2]["content"] if i % 2 else f"Sorry, ask Zentrix support about blender Z{i}."
            s.log_completion(id=f"chatcmpl-{i}", model_id=mid, messages=m[:2], answer=answer, finish_reason="stop",
                             sampling={}, prompt_tokens=20, completion_tokens=20, latency_s=0.1, source="test")
            s.add_rating(f"chatcmpl-{i}", "up" if i % 2 else "down")
        verdict = improve(_cfg(sft_run, out=str(tmp_path / "kto-run")), s)
    assert verdict.method == "kto" and verdict.counts["rated"] == 20 and verdict.ok
    assert (tmp_path / "kto-run" / "final").is_dir() and "KTO on thumbs only" in verdict.notes[0]
