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


def test_busy_cores_measures_something():
    assert 0.0 <= threads.busy_cores(0.05) <= 64


def test_threads_flag_on_every_command(run_cli, monkeypatch):
    from chatforge.cli import COMMANDS, build_parser

    parser = build_parser()
    for name in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[name]
        assert any("--threads" in a.option_strings for a in sub._actions), name
    monkeypatch.delenv(threads.ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        run_cli("models", "--threads", "0")
    assert e.value.code == 2
    code, _, _ = run_cli("models", "--threads", "3")
    import os

    assert code == 0 and os.environ[threads.ENV] == "3"
    monkeypatch.delenv(threads.ENV)
