"""Nothing lost: NaN stops, a full disk, tampered checkpoints, partial checkpoints."""

import errno
import json
from pathlib import Path

import pytest
import torch

from chatforge.errors import ChatforgeError
from chatforge.train import checkpoints
from chatforge.train.trainer import ChatforgeTrainer


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(make_cfg, monkeypatch):
    from chatforge.train.run import train

    real = ChatforgeTrainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step == 3 else loss  # during step 4

    monkeypatch.setattr(ChatforgeTrainer, "compute_loss", poisoned)
    cfg = make_cfg(save_every=2, eval_every=None)
    with pytest.raises(ChatforgeError, match=r"became nan at step 4") as e:
        train(cfg)
    assert e.value.exit_code == 1
    root = Path(cfg.out)
    ckpts = checkpoints.complete(root / "checkpoints")
    assert [c.name for c in ckpts] == ["checkpoint-2"]
    checkpoints.verify(ckpts[-1])
    assert not (root / "final").exists()
    assert json.loads((root / "run.json").read_text())["status"] == "failed"


def test_disk_full_is_a_clear_error_and_the_previous_checkpoint_survives(make_cfg, monkeypatch):
    from chatforge.train.run import train

    real = ChatforgeTrainer._save_optimizer_and_scheduler
    calls = []

    def fill_disk(self, output_dir):
        calls.append(output_dir)
        if len(calls) == 2:  # the second checkpoint: half written, then the disk is full
            (Path(output_dir) / "optimizer.pt").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(ChatforgeTrainer, "_save_optimizer_and_scheduler", fill_disk)
    cfg = make_cfg(save_every=2, eval_every=None)
    with pytest.raises(ChatforgeError, match="disk is full") as e:
        train(cfg)
    root = Path(cfg.out) / "checkpoints"
    assert "checkpoint-2 is intact" in e.value.message and e.value.exit_code == 1
    assert [c.name for c in checkpoints.complete(root)] == ["checkpoint-2"]
    checkpoints.verify(root / "checkpoint-2")
    assert not (root / checkpoints.STAGING).exists() and not (root / "checkpoint-4").exists()


@pytest.fixture
def finished_run(make_cfg):
    from chatforge.train.run import train

    cfg = make_cfg(max_steps=2, save_every=2, eval_every=None)
    return cfg, train(cfg)


@pytest.mark.parametrize("tamper", ["replace", "extra", "unsigned"])
def test_resume_refuses_pickles_chatforge_did_not_write(finished_run, run_cli, tamper):
    cfg, run_dir = finished_run
    ckpt = run_dir / "checkpoints" / "checkpoint-2"
    if tamper == "replace":
        torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    elif tamper == "extra":
        torch.save({"x": 1}, ckpt / "payload.pkl")
    else:  # a manifest with correct hashes but not signed with this installation's key
        manifest = json.loads((ckpt / checkpoints.MANIFEST).read_text())
        manifest["hmac"] = "0" * 64
        (ckpt / checkpoints.MANIFEST).write_text(json.dumps(manifest))
    code, _, err = run_cli("train", "--out", run_dir, "--resume")
    assert code == 2 and "refusing" in err and "Traceback" not in err
    expected = {"replace": "modified after chatforge wrote them: optimizer.pt",
                "extra": "not written by chatforge: payload.pkl", "unsigned": "not signed"}[tamper]
    assert expected in err


def test_resume_ignores_partial_checkpoints(finished_run):
    cfg, run_dir = finished_run
    root = run_dir / "checkpoints"
    partial = root / checkpoints.STAGING / "checkpoint-9"
    partial.mkdir(parents=True)
    (partial / "optimizer.pt").write_bytes(b"half")
    (root / "checkpoint-7").mkdir()  # renamed without a manifest cannot happen, but is not complete either
    assert checkpoints.last(root) == root / "checkpoint-2"
