"""Helpers shared by the training tests."""

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def cli_args(cfg) -> list[str]:
    """The `chatforge train` flags that reproduce a TrainConfig."""
    args = ["train"]
    for key, value in vars(cfg).items():
        if value is None or value is False or value == [] or key == "resume":
            continue
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return args


def start(args: list[str], **env) -> "subprocess.Popen":
    """A child process in its own session, so a failing test can kill it and everything it started."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(proc, timeout: float = 240) -> tuple[int, str, str]:
    """Wait for a process from start(); on timeout kill its whole process group and fail."""
    import os
    import signal
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s:\n{err[-3000:]}") from None
    return proc.returncode, out, err
