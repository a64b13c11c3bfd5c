"""Long work runs as separate `chatforge` processes: a training run, an eval, an export, a chat server.

A job is started from an argument list (never a shell string) built from the stage's typed config, in its own
process session: closing the browser, or stopping or crashing the studio, does not stop it, and a crash of
the job does not take the studio down. Each job is recorded in WORKSPACE/.studio/jobs/ID.json (argv, pid,
log file, what it works on) and, once it ends, its exit code in ID.rc (written by the job's wrapper), so a
restarted studio finds the jobs still running and the ones that ended, and how.
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


# Each job runs under this small parent, which writes the job's exit code to ID.rc when it ends: a studio that
# was restarted (or was not running then) cannot wait for a process it did not start, so without the file the
# exit code of a job that ended unwatched would be lost. Signals (stop) are passed on to the job.
WRAPPER = """
import os, signal, subprocess, sys
rc_file, argv, child = sys.argv[1], sys.argv[2:], []
def forward(signum, frame):
    if child:
        child[0].send_signal(signum)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, forward)
child.append(subprocess.Popen(argv))
rc = child[0].wait()
with open(rc_file + ".tmp", "w") as f:
    f.write(str(rc))
os.replace(rc_file + ".tmp", rc_file)
sys.exit(rc if rc >= 0 else 128 - rc)
"""


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

    def start(self, kind: str, target: str, argv: list[str], env: dict | None = None, *,
              run: str | None = None) -> dict:
        """`run`: the training run the job reads (eval, export), so that the run is not deleted under it."""
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        log = self.ws.root / ".studio" / "logs" / f"{job_id}.log"
        wrapped = [sys.executable, "-c", WRAPPER, str(self._rc_file(job_id)), *map(str, argv)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.ws.root, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.procs[job_id] = proc
        job = {"id": job_id, "kind": kind, "target": target, "argv": argv, "pid": proc.pid,
               "log": self.ws.rel(log), "started": time.time(), "returncode": None, "run": run}
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
        if job.get("returncode") is None and job.get("id"):
            rc, ended = self._recorded_exit(job["id"])
            if rc is None and proc is not None and proc.poll() is not None:
                rc, ended = proc.returncode, time.time()  # the wrapper itself was killed
            if rc is not None:
                job["returncode"], job["ended"] = rc, ended
                self._write(job)
        job["running"] = (proc.poll() is None) if proc is not None else pid_alive(job.get("pid"))
        return job

    def stop(self, job: dict, sig: int = signal.SIGTERM) -> None:
        if job.get("running"):
            try:
                os.kill(job["pid"], sig)
            except ProcessLookupError:
                pass
            job["stopping"] = time.time()  # a second SIGTERM would cut the checkpoint being saved short
            self._write(job)

    def log_tail(self, job: dict, max_bytes: int = 20000) -> str:
        path = self.ws.root / job["log"]
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _rc_file(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.rc"

    def _recorded_exit(self, job_id: str) -> tuple[int | None, float | None]:
        """The exit code the wrapper wrote when the job ended, and when; (None, None) while it runs."""
        path = self._rc_file(job_id)
        try:
            return int(path.read_text().strip()), path.stat().st_mtime
        except (OSError, ValueError):
            return None, None

    def _write(self, job: dict) -> None:
        path = self.dir / f"{job['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in job.items() if k != "running"}), encoding="utf-8")
        tmp.replace(path)
