"""--resume continues a run exactly: changed data, or changed options that would train another run, are one
clear error (exit 2); options that only change where / how fast it runs, or what it keeps, are allowed.
Also: train() prints nothing (the summary goes to its "done" event); `chatforge train` prints the summary."""

import json
import shutil

import pytest
from safetensors.torch import load_file

from chatforge.errors import ChatforgeError
from train_helpers import cli_args, read_metrics


@pytest.fixture
def own_data(chat_file, tmp_path):
    """A copy of the chats that a test may change (chat_file is shared by the session)."""
    path = tmp_path / "chats.jsonl"
    shutil.copy(chat_file, path)
    return path


def test_resume_refuses_changed_data_and_changed_batching(make_cfg, own_data, run_cli, capsys):
    cfg = make_cfg(data=str(own_data), max_steps=3, save_every=3)
    code, out, err = run_cli(*cli_args(cfg))
    assert code == 0, err
    assert "tokens seen" in out and "next: chatforge chat" in out  # the CLI prints train's summary
    run = cfg.out

    for flags, needles in ((["--batch-tokens", "1024"], ["--batch-tokens 512 -> 1024"]),
                           (["--max-length", "256", "--batch-tokens", "1024"],
                            ["--max-length 128 -> 256", "--batch-tokens 512 -> 1024"]),
                           (["--max-steps", "6"], ["--max-steps 3 -> 6", "learning-rate schedule"])):
        code, _, err = run_cli("train", "--out", run, "--resume", *flags)
        assert code == 2 and "Traceback" not in err, err
        assert all(n in err for n in needles) and "another --out" in err, err

    lines = own_data.read_text(encoding="utf-8").splitlines(True)
    own_data.write_text("".join(lines[:-1]), encoding="utf-8")  # one conversation fewer
    code, _, err = run_cli("train", "--out", run, "--resume")
    assert code == 2 and "Traceback" not in err, err
    assert f"the training data {own_data} changed since the run" in err and "another --out" in err, err
    with pytest.raises(ChatforgeError, match="changed since the run"):  # the Python API alike
        from chatforge.train.run import train

        train(make_cfg(data=str(own_data), max_steps=3, save_every=3, resume=True))
    info = json.loads((own_data.parent / "run" / "run.json").read_text())
    assert info["status"] == "complete" and info["steps"] == 3  # the refused resumes changed nothing

    own_data.write_text("".join(lines), encoding="utf-8")  # the same data again; options that train the same run
    code, _, err = run_cli("train", "--out", run, "--resume", "--keep-checkpoints", "3", "--eval-every", "2",
                           "--no-tensorboard", "--device", "cpu")
    assert code == 0, err


def test_more_steps_at_a_constant_learning_rate_resume_exactly(make_cfg, tmp_path, capsys):
    """No warm-up, a constant rate: the schedule does not depend on the number of steps, so raising --max-steps
    on resume trains what an uninterrupted run of that many steps does."""
    from chatforge.train.run import train

    constant = dict(scheduler="constant_with_warmup", warmup=0.0, save_every=3)
    reference = train(make_cfg(out=str(tmp_path / "reference"), max_steps=5, **constant))
    assert capsys.readouterr().out == ""  # the stage prints nothing: the summary is its "done" event's
    run = train(make_cfg(max_steps=3, **constant))
    train(make_cfg(max_steps=5, resume=True, **constant))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["steps"] == 5 and info["resumed_from"].endswith("checkpoint-3")
    a = load_file(reference / "final" / "adapter_model.safetensors")
    b = load_file(run / "final" / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    losses = [{r["step"]: r["loss"] for r in read_metrics(d) if "loss" in r} for d in (reference, run)]
    assert sorted(losses[0]) == sorted(losses[1]) == [1, 2, 3, 4, 5]
    assert max(abs(losses[0][s] - losses[1][s]) for s in losses[0]) <= 1e-6


def test_resume_refuses_changed_eval_data(make_cfg, own_data, run_cli):
    lines = own_data.read_text(encoding="utf-8").splitlines(True)
    held = own_data.parent / "held.jsonl"
    own_data.write_text("".join(lines[:-4]), encoding="utf-8")
    held.write_text("".join(lines[-4:]), encoding="utf-8")
    cfg = make_cfg(data=str(own_data), eval_data=str(held), max_steps=2, save_every=1, eval_every=1)
    code, _, err = run_cli(*cli_args(cfg))
    assert code == 0, err
    held.write_text("".join(lines[-4:-1]), encoding="utf-8")  # the same path, one conversation fewer
    code, _, err = run_cli("train", "--out", cfg.out, "--resume")
    assert code == 2 and "Traceback" not in err, err
    assert f"the --eval-data {held} changed since the run" in err, err
