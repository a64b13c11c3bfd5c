"""The server's generation worker hands the allocator's free memory back to the system (glibc's malloc_trim)
every TRIM_SECONDS under load and whenever its batch empties, so a long-running server's RSS does not creep up
and an idle one holds no freed memory (bench/soak.py measures it)."""

import asyncio

from chatforge.infer import Completion, SamplingParams, Update
from chatforge.serve import scheduler


class OneStepBatch:
    def __init__(self, engine):
        self.rows = []

    size = property(lambda self: len(self.rows))
    ids = property(lambda self: list(self.rows))

    def can_admit(self):
        return True

    def admit(self, ids, prompts, params, cancelled=None):
        self.rows = list(ids)
        return []

    def step(self, cancelled=None):
        done, self.rows = [Update(i, "x", Completion("x", "length", 1, 1)) for i in self.rows], []
        return done

    def clear(self):
        self.rows = []


class TwoStepBatch(OneStepBatch):
    """Each sequence needs two steps: the batch is busy after the first, empty after the second."""

    def step(self, cancelled=None):
        self.steps = getattr(self, "steps", 0) + 1
        return [] if self.steps % 2 else super().step(cancelled)


def trims(monkeypatch, seconds: float) -> list[int]:
    """Serve one request with TRIM_SECONDS = seconds; the batch size at each trim."""
    calls, box = [], {}
    monkeypatch.setattr(scheduler, "TRIM_SECONDS", seconds)
    monkeypatch.setattr(scheduler, "release_free_memory", lambda: calls.append(box["batch"].size))

    def make(engine):
        box["batch"] = TwoStepBatch(engine)
        return box["batch"]

    async def run():
        s = scheduler.Scheduler(object(), batcher=make)
        s.start()
        got = [u async for u in s.submit([1], SamplingParams(max_tokens=1)).updates()]
        s.stop()
        return got

    assert asyncio.run(run())[-1].done is not None
    return calls


def test_the_worker_trims_the_allocator_periodically_under_load(monkeypatch):
    assert 1 in trims(monkeypatch, 0.0)  # while a sequence still runs


def test_the_worker_trims_once_its_batch_empties(monkeypatch):
    assert trims(monkeypatch, 3600.0) == [0]  # not while busy; once, when the batch emptied


def test_release_free_memory_finds_glibcs_malloc_trim():
    import platform

    from chatforge import memory

    memory.release_free_memory()  # elsewhere than glibc a no-op, never an error
    if platform.libc_ver()[0] == "glibc":
        assert callable(memory._trim)
    else:
        assert memory._trim is False
