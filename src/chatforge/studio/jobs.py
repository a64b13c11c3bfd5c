"""Long work runs as separate `chatforge` processes: a training run, an eval, an export, a chat server.

A job is started from an argument list (never a shell string) built from the stage's typed config, in its own
process session: closing the browser, or stopping or crashing the studio, does not stop it, and a crash of
the job does not take the studio down. Each job is recorded in WORKSPACE/.studio/jobs/ID.json (argv, pid,
log file, what it works on), so a restarted studio finds the jobs still running and the ones that ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from chatforge.studio.workspace import StudioError, Workspace, read_json


def chatforge_argv(*args: str) -> list[str]:
    """The command line of a chatforge subcommand run with this very interpreter."""
    return [sys.executable, "-m", "chatforge", *map(str, args)]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (ended, not yet reaped) is not running; but a process whose main thread has ended shows a zombie
    # leader while its other threads (torch's) are still finishing, and until they have, its parent cannot reap
    # it (the studio that started it still sees it running): it is alive while any of its threads is.
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # no /proc (not Linux): os.kill's answer; or it has just gone
        return not Path("/proc/self/task").is_dir()
    for task in tasks:
        try:
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except (OSError, IndexError):
            continue  # a thread that ended while we looked
    return False


class Jobs:
    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.dir = workspace.root / ".studio" / "jobs"
        self.procs: dict[str, subprocess.Popen] = {}  # jobs this studio process started (for exit codes)

    def start(self, kind: str, target: str, argv: list[str], env: dict | None = None) -> dict:
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        log = self.ws.root / ".studio" / "logs" / f"{job_id}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.ws.root, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.procs[job_id] = proc
        job = {"id": job_id, "kind": kind, "target": target, "argv": argv, "pid": proc.pid,
               "log": self.ws.rel(log), "started": time.time(), "returncode": None}
        self._write(job)
        return self.status(job)

    def get(self, job_id: str) -> dict:
        path = self.dir / f"{job_id}.json"
        if not job_id.replace("-", "").isalnum() or not path.is_file():
            raise StudioError(404, f"job {job_id!r} does not exist", "job")
        return self.status(read_json(path))

    def all(self, kind: str | None = None) -> list[dict]:
        jobs = [self.status(read_json(p)) for p in self.dir.glob("*.json")]
        return sorted((j for j in jobs if j and (kind is None or j["kind"] == kind)), key=lambda j: -j["started"])

    def latest(self, kind: str, target: str) -> dict | None:
        for job in self.all(kind):
            if job["target"] == target:
                return job
        return None

    def status(self, job: dict) -> dict:
        """The job with `running` and, once it has ended, its exit code (when this studio started it)."""
        proc = self.procs.get(job.get("id"))
        if proc is not None and job.get("returncode") is None and proc.poll() is not None:
            job["returncode"] = proc.returncode
            job["ended"] = time.time()
            self._write(job)
        job["running"] = (proc.poll() is None) if proc is not None else pid_alive(job.get("pid"))
        return job

    def stop(self, job: dict, sig: int = signal.SIGTERM) -> None:
        if job.get("running"):
            try:
                os.kill(job["pid"], sig)
            except ProcessLookupError:
                pass

    def log_tail(self, job: dict, max_bytes: int = 20000) -> str:
        path = self.ws.root / job["log"]
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _write(self, job: dict) -> None:
        path = self.dir / f"{job['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in job.items() if k != "running"}), encoding="utf-8")
        tmp.replace(path)
