"""The server's generation worker hands the allocator's free memory back to the system every TRIM_SECONDS
(glibc's malloc_trim), so a long-running server's RSS does not creep up (bench/soak.py measures it)."""

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


def test_the_worker_trims_the_allocator_periodically(monkeypatch):
    calls = []
    monkeypatch.setattr(scheduler, "TRIM_SECONDS", 0.0)
    monkeypatch.setattr(scheduler, "release_free_memory", lambda: calls.append(1))

    async def run():
        s = scheduler.Scheduler(object(), batcher=OneStepBatch)
        s.start()
        got = [u async for u in s.submit([1], SamplingParams(max_tokens=1)).updates()]
        s.stop()
        return got

    assert asyncio.run(run())[-1].done is not None
    assert calls


def test_release_free_memory_finds_glibcs_malloc_trim():
    import platform

    from chatforge import memory

    memory.release_free_memory()  # elsewhere than glibc a no-op, never an error
    if platform.libc_ver()[0] == "glibc":
        assert callable(memory._trim)
    else:
        assert memory._trim is False
