"""Real processes: SIGKILL mid-run then --resume gives the uninterrupted run's weights and losses; SIGTERM
saves a checkpoint and exits cleanly."""

import json
import os
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from chatforge.train import checkpoints
from train_helpers import cli_args, finish, read_metrics, start

# 40 steps of 2 micro-batches (gradient accumulation), ~11 steps per epoch: checkpoints land mid-epoch.
RUN = dict(max_steps=40, save_every=3, eval_every=10, keep_checkpoints=2, lr=2e-3)


def _wait_for_checkpoint(proc, root, step, timeout=120):
    """Poll until a complete checkpoint of at least `step` exists (the process keeps training meanwhile)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        last = checkpoints.last(root)
        if last is not None and checkpoints.step_of(last) >= step:
            return last
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1][-3000:])
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("no checkpoint in time")


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if "loss" in r}


def test_sigkill_then_resume_matches_an_uninterrupted_run(make_cfg, tmp_path):
    ref = start(["-m", "chatforge", *cli_args(make_cfg(out=str(tmp_path / "reference"), **RUN))])
    victim = start(["-m", "chatforge", *cli_args(make_cfg(out=str(tmp_path / "killed"), **RUN))])
    root = tmp_path / "killed" / "checkpoints"
    _wait_for_checkpoint(victim, root, 6)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before it could be killed"
    resumed_from = checkpoints.step_of(checkpoints.last(root))

    code, _, err = finish(ref)
    assert code == 0, err
    code, _, err = finish(start(["-m", "chatforge", "train", "--out", str(tmp_path / "killed"), "--resume"]))
    assert code == 0, err
    info = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed_from"].endswith(f"checkpoint-{resumed_from}")
    epoch = next(r["epoch"] for r in read_metrics(tmp_path / "reference") if r["step"] == resumed_from)
    assert 6 <= resumed_from < 40 and epoch != int(epoch)  # resumed mid-epoch

    a = load_file(tmp_path / "reference" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    la, lb = _losses(tmp_path / "reference"), _losses(tmp_path / "killed")
    assert sorted(la) == sorted(lb) == list(range(1, 41))
    assert max(abs(la[s] - lb[s]) for s in la) <= 1e-6


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(make_cfg, tmp_path):
    proc = start(["-m", "chatforge", *cli_args(make_cfg(out=str(tmp_path / "run"), **RUN))])
    root = tmp_path / "run" / "checkpoints"
    _wait_for_checkpoint(proc, root, 3)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=120)
    assert code == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM at step" in err and "--resume" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "interrupted"
    stopped = info["stopped_at_step"]
    assert 3 <= stopped < 40
    last = checkpoints.last(root)
    assert checkpoints.step_of(last) == stopped == info["resumes_from_step"]  # a checkpoint of the step it stopped at
    checkpoints.verify(last)
    assert not (tmp_path / "run" / "final").exists()
    assert max(_losses(tmp_path / "run")) == stopped


def test_resuming_from_the_last_steps_checkpoint_trains_no_step_more(make_cfg):
    """Stopped (or killed) after the checkpoint of the last step: --resume finishes the run at that step (the
    Trainer alone would train a step past --max-steps)."""
    import shutil

    from chatforge.train.run import train

    run = train(make_cfg(max_steps=3, save_every=3))
    weights = load_file(run / "final" / "adapter_model.safetensors")
    shutil.rmtree(run / "final")
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "status": "running"}))
    train(make_cfg(max_steps=3, save_every=3, resume=True))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["steps"] == 3
    assert max(r["step"] for r in read_metrics(run)) == 3
    again = load_file(run / "final" / "adapter_model.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def _ctrl_c_after(steps: int, cfg, monkeypatch) -> dict:
    """Train `cfg` with a KeyboardInterrupt raised when `steps` optimizer steps are done; return its run.json."""
    import pytest

    from chatforge.train.run import train
    from chatforge.train.trainer import ChatforgeTrainer

    step = ChatforgeTrainer.training_step

    def interrupt(self, *args, **kwargs):
        if self.state.global_step == steps:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(ChatforgeTrainer, "training_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(ChatforgeTrainer, "training_step", step)
    return json.loads((Path(cfg.out) / "run.json").read_text())


def test_ctrl_c_is_an_interrupted_run_that_resume_continues(make_cfg, monkeypatch, capsys):
    from chatforge.train.run import train

    info = _ctrl_c_after(4, make_cfg(max_steps=6, save_every=3), monkeypatch)
    assert info["status"] == "interrupted" and "error" not in info
    assert info["stopped_at_step"] == 4 and info["resumes_from_step"] == 3  # 4 steps done, checkpoint of step 3
    err = capsys.readouterr().err
    assert "interrupted after step 4; the last complete checkpoint is" in err and "--resume" in err
    run = train(make_cfg(max_steps=6, save_every=3, resume=True))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["steps"] == 6


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(make_cfg, monkeypatch, capsys):
    info = _ctrl_c_after(1, make_cfg(max_steps=6, save_every=3), monkeypatch)
    assert info["status"] == "interrupted" and info["stopped_at_step"] == 1 and info["resumes_from_step"] == 0
    err = capsys.readouterr().err
    assert "interrupted after step 1, before the first checkpoint (every 3 steps): nothing to continue from" in err
    assert "Continue with" not in err
