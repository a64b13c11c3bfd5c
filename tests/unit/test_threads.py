"""Thread count (chatforge/threads.py): affinity, cgroup quota, busy cores, and --threads for every command."""

import pytest

from chatforge import threads


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_quota(tmp_path) == 1.0
    assert threads.cgroup_quota(tmp_path / "nothing") is None


def test_available_cores_capped_by_quota(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cores", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 2.0)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 0.5)
    assert threads.available_cores() == 1
    monkeypatch.setattr(threads, "cgroup_quota", lambda: None)
    assert threads.available_cores() == 8


def test_busy_cores_are_left_to_their_owners(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    for busy, expected in [(0.0, 4), (0.3, 4), (1.0, 3), (2.2, 2), (3.9, 1), (7.0, 1)]:
        monkeypatch.setattr(threads, "busy_cores", lambda b=busy: b)
        assert threads.choose_threads() == expected, busy


def test_explicit_counts_win(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("not measured when a count is given"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads() == 3
    monkeypatch.setenv(threads.ENV, "2")
    assert threads.choose_threads() == 2
    assert threads.choose_threads(5) == 5


def test_niced_processes_do_not_take_cores(tmp_path, monkeypatch):
    """/proc/stat's "nice" column is time of processes at a lower priority: not busy for a nice-0 chatforge
    (the scheduler gives it the cores), busy for a niced one (they compete as equals)."""
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 300 50 500 50 0 0 0 0 0\ncpu0 ...\n")
    monkeypatch.setattr(threads, "_niceness", lambda: 0)
    assert threads._cpu_times(stat) == (150, 1000)
    monkeypatch.setattr(threads, "_niceness", lambda: 19)
    assert threads._cpu_times(stat) == (450, 1000)
    assert threads._cpu_times(tmp_path / "missing") is None


def test_busy_cores_measures_something():
    assert 0.0 <= threads.busy_cores(0.05) <= 64


def test_threads_flag_on_every_command_that_runs_a_model(run_cli, monkeypatch):
    from chatforge.cli import COMMANDS, NO_TORCH, build_parser

    parser = build_parser()
    for name in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[name]
        assert any("--threads" in a.option_strings for a in sub._actions) == (name not in NO_TORCH), name
    monkeypatch.delenv(threads.ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        run_cli("generate", "m", "hi", "--threads", "0")
    assert e.value.code == 2
    with pytest.raises(SystemExit):  # `models` runs no model: no --threads to accept silently
        run_cli("models", "--threads", "3")
    code, _, _ = run_cli("generate", "/no/such/model", "hi", "--threads", "3")
    import os

    assert code == 2 and os.environ[threads.ENV] == "3"  # set before the (missing) model is looked for
    monkeypatch.delenv(threads.ENV)


def test_follow_moves_the_count_with_the_load(monkeypatch):
    """A competitor that starts after the command began takes a thread away; when it ends the thread comes back.
    The machine is simulated: /proc/stat and this process's own time are fed step by step."""
    import torch

    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    clock, machine, own = [0.0], [[0, 0]], [0]  # machine = (busy, total) jiffies of both cores
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads, "_cpu_times", lambda: tuple(machine[0]))
    monkeypatch.setattr(threads, "_own_jiffies", lambda: own[0])

    def tick(seconds, ours, others):  # cores used by this process and by others during `seconds`
        clock[0] += seconds
        machine[0][0] += int(100 * seconds * (ours + others))
        machine[0][1] += int(100 * seconds * 2)
        own[0] += int(100 * seconds * ours)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        follow = threads.Follow(interval=5.0)
        tick(2, ours=2, others=0)
        assert follow.poll() is None  # not yet time to look
        tick(4, ours=2, others=0)
        assert follow.poll() is None and torch.get_num_threads() == 2  # idle machine: no change
        tick(6, ours=1.33, others=0.67)  # a competitor arrives and takes its share
        assert follow.poll() == 1 and torch.get_num_threads() == 1
        tick(6, ours=1, others=1)
        assert follow.poll() is None
        tick(6, ours=1, others=0)  # it is gone
        assert follow.poll() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv(threads.ENV, "2")  # an explicit count is never changed
        fixed = threads.Follow(interval=5.0)
        tick(6, ours=1, others=1)
        assert fixed.poll() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_training_and_decoding_follow_the_load(monkeypatch, tiny_model):
    """The training loop polls Follow once per optimizer step, the decode Batch once per step (generate, chat,
    eval and serve's scheduler all step a Batch), from the thread that runs the model."""
    import threading

    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model
    from chatforge.train import callbacks

    polls: list[str] = []

    class Recorder:
        def __init__(self, **kwargs):
            pass

        def poll(self):
            polls.append(threading.current_thread().name)

    monkeypatch.setattr(threads, "Follow", Recorder)
    state = type("S", (), {"is_world_process_zero": True, "global_step": 1, "max_steps": 2})()
    callbacks.FollowLoad().on_step_end(None, state, None)
    assert polls == [threading.current_thread().name]

    engine = Engine(load_model(str(tiny_model)))
    del polls[:]
    done = engine.generate([[1, 2, 3]], [SamplingParams(max_tokens=4, temperature=0.0)])[0]
    assert len(polls) == done.completion_tokens - 1  # one per decode step (the first token comes from prefill)


def test_a_compiled_engine_keeps_its_thread_count(monkeypatch, tiny_model):
    """torch.compile guards on the thread count: a change while decoding would compile the graph again (tens of
    seconds mid-answer, and a second graph), so a compiled engine's Batch does not follow the load."""
    from chatforge.infer import Engine
    from chatforge.models.load import load_model

    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    loaded = load_model(str(tiny_model))
    assert Engine(loaded).new_batch().follow.enabled
    assert not Engine(loaded, compile=True).new_batch().follow.enabled
