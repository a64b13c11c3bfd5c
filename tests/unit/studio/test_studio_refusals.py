"""What the user trial found: NaN metrics, runs that failed before their first step, requests that a started job
would fail (refused up front instead, naming the field), exit codes of jobs that ended while no studio watched."""

import json
import sys
import time

import pytest

from chatforge.studio.jobs import Jobs
from chatforge.studio.workspace import Workspace


def error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["error"]


def _strict(text):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _run(workspace, name, **info):
    run_dir = workspace / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    if info:
        (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    return run_dir


def _ended(jobs, job_id, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = jobs.get(job_id)
        if not job["running"]:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never ended")


def _py(code):
    return [sys.executable, "-c", code]


# ---- 1. a diverged run: NaN is sent as null -------------------------------------------------------------------
def test_non_finite_metrics_are_sent_as_null(client, workspace):
    run_dir = _run(workspace, "diverged", status="failed", eval_loss=float("nan"))
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n'
                                           '{"step": 2, "loss": NaN, "grad_norm": Infinity}\n')
    (run_dir / "events.jsonl").write_text(json.dumps({"stage": "train", "phase": "step", "step": 2,
                                                      "metrics": {"loss": float("nan")}}) + "\n")
    r = client.get("/api/runs/diverged")
    assert r.status_code == 200, r.text
    run = _strict(r.text)
    assert run["metrics"][1]["loss"] is None and run["metrics"][1]["grad_norm"] is None and run["eval_loss"] is None
    _strict(client.get("/api/state").text)
    events = client.get("/api/runs/diverged/events").text
    data = [_strict(line[len("data: "):]) for line in events.splitlines() if line.startswith("data: ")]
    assert data[0]["metrics"]["loss"] is None and data[-1]["status"] == "failed"


# ---- 2. a config the CLI refuses is a 400; a run that failed before its first step is listed ----------------
@pytest.mark.parametrize("config, field", [({"max_length": 1}, "max_length"),
                                           ({"max_length": 512, "batch_tokens": 256}, "batch_tokens"),
                                           ({"columns": ["foo=bar"]}, "columns")])
def test_a_config_the_cli_would_refuse_is_a_400_naming_the_field(client, workspace, config, field):
    e = error(client.post("/api/runs", json={"name": "bad", "config": {"data": "data/chats.jsonl", **config}}), 400)
    assert e["field"] == field, e
    assert not (workspace / "runs" / "bad").exists()  # the name is not taken


def test_a_run_that_failed_before_its_first_step_is_listed_as_failed(client, workspace):
    _run(workspace, "early")  # what POST /api/runs leaves when the process fails at once: no run.json
    jobs = client.app.state.jobs
    job = jobs.start("train", "early", _py("import sys\n"
                                                "print('chatforge train: error: --max-length must be at least 2')\n"
                                                "print('raise --max-length'); sys.exit(2)"))
    _ended(jobs, job["id"])
    runs = {r["name"]: r for r in client.get("/api/state").json()["runs"]}
    assert runs["early"]["status"] == "failed" and runs["early"]["error"].endswith("--max-length must be at least 2")
    assert "at least 2" in client.get("/api/runs/early").json()["log"]
    assert client.delete("/api/runs/early?confirm=early").status_code == 200
    assert "early" not in [r["name"] for r in client.get("/api/state").json()["runs"]]


# ---- 3, 4. resume, eval and export need what their job reads ----------------------------------------------------
def test_resume_without_a_checkpoint_is_refused(client, workspace):
    _run(workspace, "nockpt", status="running")  # killed before its first checkpoint
    e = error(client.post("/api/runs/nockpt/resume"), 409)
    assert e["field"] == "run" and "no checkpoint" in e["message"]
    assert client.app.state.jobs.latest("train", "nockpt") is None


def test_eval_and_export_need_the_final_model(client, workspace):
    _run(workspace, "unfinished", status="interrupted")
    e = error(client.post("/api/eval", json={"run": "unfinished", "data": "data/chats.jsonl"}), 409)
    assert e["field"] == "run"
    assert error(client.post("/api/export", json={"run": "unfinished", "format": "hf"}), 409)["field"] == "run"
    (_run(workspace, "done", status="complete") / "final").mkdir()
    e = error(client.post("/api/export", json={"run": "done", "format": "hf", "quant": "q4_k_m"}), 400)
    assert e["field"] == "quant" and "q4_k_m" in e["message"]
    assert client.app.state.jobs.all() == []


# ---- 5. exit codes survive a restart of the studio ---------------------------------------------------------------
def test_the_exit_code_of_a_job_that_ended_unwatched_is_kept(workspace):
    job = Jobs(Workspace(workspace)).start("export", "x", _py("import time, sys; time.sleep(0.5); sys.exit(3)"))
    restarted = Jobs(Workspace(workspace))  # did not start the process: it cannot wait for it
    assert _ended(restarted, job["id"])["returncode"] == 3
    assert Jobs(Workspace(workspace)).get(job["id"])["returncode"] == 3


def test_stop_reaches_the_job_and_its_exit_code_is_kept(workspace):
    jobs = Jobs(Workspace(workspace))
    job = jobs.start("chat", "x", _py("import time; print('ready', flush=True); time.sleep(60)"))
    log = workspace / job["log"]
    deadline = time.time() + 20
    while "ready" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    jobs.stop(jobs.get(job["id"]))
    assert _ended(Jobs(Workspace(workspace)), job["id"])["returncode"] == -15


# ---- 6. a run is not deleted under a job reading it; stopping twice ------------------------------------------------
@pytest.mark.parametrize("kind, target", [("eval", "used"), ("export", "used-hf")])
def test_a_run_in_use_by_an_eval_or_export_is_not_deleted(client, workspace, kind, target):
    (_run(workspace, "used", status="complete") / "final").mkdir()
    jobs = client.app.state.jobs
    job = jobs.start(kind, target, _py("import time; time.sleep(60)"), run="used")
    try:
        e = error(client.delete("/api/runs/used?confirm=used"), 409)
        assert e["field"] == "run" and kind in e["message"]
        assert (workspace / "runs" / "used").is_dir()
    finally:
        jobs.stop(jobs.get(job["id"]))
    _ended(jobs, job["id"])
    assert client.delete("/api/runs/used?confirm=used").status_code == 200


def test_stopping_twice_is_refused(client, workspace):
    _run(workspace, "twice")
    jobs = client.app.state.jobs
    job = jobs.start("train", "twice", _py("import signal, time\n"
                                           "signal.signal(signal.SIGTERM, lambda *a: print('term', flush=True))\n"
                                           "print('ready', flush=True)\ntime.sleep(3)"))
    log = workspace / job["log"]
    deadline = time.time() + 20
    while "ready" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert client.post("/api/runs/twice/stop").status_code == 200
    e = error(client.post("/api/runs/twice/stop"), 409)
    assert "already stopping" in e["message"]
    _ended(jobs, job["id"])
    assert log.read_text().count("term") == 1
