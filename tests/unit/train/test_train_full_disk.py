"""A real full disk (a small tmpfs) while a checkpoint is written: a clear error, the previous checkpoint intact
and resumable, nothing partial that looks complete."""

from pathlib import Path

import pytest

from chatforge.errors import ChatforgeError
from chatforge.train import checkpoints
from chatforge.train.trainer import ChatforgeTrainer


def test_checkpoint_onto_a_full_disk(make_cfg, small_disk, fill_disk, monkeypatch):
    from chatforge.train.run import train

    disk = small_disk(64)
    real = ChatforgeTrainer._save_optimizer_and_scheduler
    calls = []

    def full_at_second_checkpoint(self, output_dir):
        calls.append(output_dir)
        if len(calls) == 2:
            fill_disk(disk)  # the disk fills up while the second checkpoint is being written
        return real(self, output_dir)

    monkeypatch.setattr(ChatforgeTrainer, "_save_optimizer_and_scheduler", full_at_second_checkpoint)
    cfg = make_cfg(out=str(disk / "run"), save_every=2, max_steps=4, eval_every=None)
    with pytest.raises(ChatforgeError, match="disk is full") as e:
        train(cfg)
    assert e.value.exit_code == 1 and "checkpoint-2 is intact" in e.value.message
    root = Path(cfg.out) / "checkpoints"
    assert [c.name for c in checkpoints.complete(root)] == ["checkpoint-2"]
    checkpoints.verify(root / "checkpoint-2")
    assert not (root / "checkpoint-4").exists()
    (disk / ".filler").unlink()  # space again: --resume continues from checkpoint-2 and finishes
    monkeypatch.setattr(ChatforgeTrainer, "_save_optimizer_and_scheduler", real)
    train(make_cfg(out=str(disk / "run"), save_every=2, max_steps=4, eval_every=None, resume=True))
    assert [c.name for c in checkpoints.complete(root)][-1] == "checkpoint-4"
