"""kill -9 at random points of real `chatforge train`, `export` and `eval` processes (tiny models): afterwards
nothing looks complete that is not, and the next run (train: --resume) succeeds.

Each command first runs once uninterrupted (its duration D); then it is killed at seeded random points in
(0.2 D, 0.95 D) -- during imports, loading, the work itself or the final writes -- and checked each time."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
KILLS = 5  # per command (the issue: five random points)
pytestmark = pytest.mark.slow


def _run(args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "chatforge", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return time.monotonic() - t0


def _killed(args, delay):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "chatforge", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    return proc.returncode


def _points(duration, seed):
    rng = random.Random(seed)
    return sorted(rng.uniform(0.2, 0.95) * duration for _ in range(KILLS))


def _visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))


def test_killed_eval_never_leaves_a_report_that_looks_complete(tiny_model, tmp_path):
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join((EXAMPLES / "lumora_heldout.jsonl").read_text().splitlines(True)[:4]))
    args = ["eval", tiny_model, "--data", data, "--no-baseline", "--max-tokens", "4", "--bootstrap", "20"]
    duration = _run(args + ["--out", tmp_path / "full"])
    for i, delay in enumerate(_points(duration, seed=1)):
        out = tmp_path / f"killed{i}"
        out.mkdir()
        _killed(args + ["--out", out / "eval"], delay)
        if (out / "eval").exists():  # put in place whole, or not at all
            assert json.loads((out / "eval" / "metrics.json").read_text())["examples_evaluated"] == 4
            assert (out / "eval" / "report.md").stat().st_size and (out / "eval" / "report.html").stat().st_size
        assert _visible(out) in ([], ["eval"])
        _run(args + ["--out", out / "eval"])  # the next run succeeds (and replaces any earlier report)
        assert json.loads((out / "eval" / "metrics.json").read_text())["examples_evaluated"] == 4


def test_killed_export_never_leaves_an_export_that_looks_complete(tiny_model, tmp_path):
    from chatforge.export.run import MANIFEST

    args = ["export", tiny_model, "--no-verify"]
    duration = _run(args + ["--out", tmp_path / "full"])
    for i, delay in enumerate(_points(duration, seed=2)):
        parent = tmp_path / f"killed{i}"
        parent.mkdir()
        out = parent / "model"
        _killed(args + ["--out", out], delay)
        if out.exists():  # complete: every file the manifest lists, at its size
            files = json.loads((out / MANIFEST).read_text())["files"]
            assert {n: (out / n).stat().st_size for n in files} == files
        assert _visible(parent) in ([], ["model"])
        _run(args + ["--out", out, "--force"])
        assert (out / MANIFEST).exists()


def _started(run: Path) -> bool:
    """The killed run got far enough to make its directory: the next run is `--resume` (what chatforge asks)."""
    return (run / "run.json").exists() or (run / "checkpoints").is_dir()


def test_killed_training_resumes(tiny_model, tmp_path):
    from chatforge.train import checkpoints

    data = tmp_path / "chats.jsonl"
    data.write_text("".join((EXAMPLES / "lumora_train.jsonl").read_text().splitlines(True)[:40]))
    args = ["train", "--model", tiny_model, "--data", data, "--max-length", "128", "--micro-batch-tokens", "256",
            "--batch-tokens", "256", "--max-steps", "12", "--save-every", "2", "--precision", "fp32",
            "--lr", "5e-3"]
    duration = _run(args + ["--out", tmp_path / "full"])
    run = tmp_path / "run"
    for delay in _points(duration, seed=3):
        _killed(args + ["--out", run] + (["--resume"] if _started(run) else []), delay)
        for c in checkpoints.complete(run / "checkpoints"):  # every checkpoint that claims to be whole is
            checkpoints.verify(c)
        status = json.loads((run / "run.json").read_text())["status"] if (run / "run.json").exists() else None
        assert (run / "final").exists() == (status == "complete")
    resume = ["--resume"] if _started(run) else []  # no checkpoint yet: --resume starts again
    if (run / "final").exists():
        return  # the last kill came after the end
    _run(args + ["--out", run] + resume)
    assert json.loads((run / "run.json").read_text())["status"] == "complete" and (run / "final").is_dir()
