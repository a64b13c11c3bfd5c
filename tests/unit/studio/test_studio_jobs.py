"""A job's `running` as a studio that did not start it sees it (by pid): the same as its parent's."""

import subprocess
import sys
import time

import pytest

from chatforge.studio.jobs import pid_alive

# The main thread ends (pthread_exit: the leader becomes a zombie) while another thread works on for a while.
LEADER_GONE_FIRST = """
import ctypes, sys, threading, time
threading.Thread(target=lambda: (time.sleep(float(sys.argv[1])), print("done", flush=True))).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _state(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_a_process_whose_main_thread_ended_runs_while_its_other_threads_do():
    proc = subprocess.Popen([sys.executable, "-c", LEADER_GONE_FIRST, "1.5"], stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while _state(proc.pid) != "Z" and time.time() < deadline:
            time.sleep(0.02)
        assert _state(proc.pid) == "Z"  # the leader: what /proc/PID/stat alone shows
        assert proc.poll() is None and pid_alive(proc.pid)  # its parent cannot reap it yet, and neither says ended
        assert proc.stdout.readline() == b"done\n"
        proc.wait(timeout=10)
        assert not pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_an_ended_process_not_yet_reaped_is_not_running():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 10
        while pid_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.02)
        assert not pid_alive(proc.pid) and proc.returncode is None  # a zombie: ended, its parent has not waited
    finally:
        proc.wait()
    assert not pid_alive(proc.pid) and not pid_alive(None)
