"""One request whose admission fails (a bug or a setting the engine cannot take) fails alone: the requests that
arrived with it and those already generating finish normally, and the server goes on serving."""

import asyncio

from chatforge.infer import AdmitFailed, Completion, SamplingParams, Update
from chatforge.serve import scheduler

POISON = 666  # a prompt holding this token cannot be admitted


class PickyBatch:
    """Admits all or none of its new sequences (as chatforge's batches do); each needs three steps."""

    def __init__(self, engine):
        self.left = {}

    size = property(lambda self: len(self.left))
    ids = property(lambda self: list(self.left))

    def can_admit(self):
        return True

    def admit(self, ids, prompts, params, cancelled=None):
        if any(POISON in p for p in prompts):
            raise AdmitFailed(ValueError("cannot take this prompt"))
        self.left.update((i, 3) for i in ids)
        return []

    def step(self, cancelled=None):
        out = []
        for i in list(self.left):
            self.left[i] -= 1
            if not self.left[i]:
                del self.left[i]
                out.append(Update(i, "ok", Completion("ok", "length", 1, 1)))
        return out

    def clear(self):
        self.left = {}


async def _answer(job):
    try:
        return [u async for u in job.updates()][-1].done.text
    except Exception as e:
        return f"error: {e}"


def test_one_failing_request_fails_alone():
    async def run():
        s = scheduler.Scheduler(object(), batcher=PickyBatch, batch_window=0.05)
        s.start()
        running = s.submit([1], SamplingParams(max_tokens=3))
        await asyncio.sleep(0.02)  # it is generating when the next three arrive together
        jobs = [s.submit(p, SamplingParams(max_tokens=3)) for p in ([2], [3, POISON], [4])]
        answers = await asyncio.gather(*map(_answer, [running, *jobs]))
        after = await _answer(s.submit([5], SamplingParams(max_tokens=3)))  # and it keeps serving
        s.stop()
        return answers, after, s.stats

    answers, after, stats = asyncio.run(run())
    assert answers == ["ok", "ok", "error: cannot take this prompt", "ok"]
    assert after == "ok" and stats["failed"] == 1


class FlakyBatch(PickyBatch):
    """Its step fails one sequence (a prompt holding POISON) by itself, with an error Update, as Batch does when
    one row's sampling or text fails."""

    def admit(self, ids, prompts, params, cancelled=None):
        self.poisoned = getattr(self, "poisoned", set()) | {i for i, p in zip(ids, prompts) if POISON in p}
        self.left.update((i, 3) for i in ids)
        return []

    def step(self, cancelled=None):
        failed = [Update(i, "", error=ValueError("this row's sampling failed")) for i in self.left
                  if i in self.poisoned and self.left[i] == 2]
        for u in failed:
            del self.left[u.index]
        return failed + super().step(cancelled)


def test_a_request_failing_mid_answer_fails_alone():
    async def run():
        s = scheduler.Scheduler(object(), batcher=FlakyBatch, batch_window=0.05)
        s.start()
        jobs = [s.submit(p, SamplingParams(max_tokens=3)) for p in ([1], [2, POISON], [3])]
        answers = await asyncio.gather(*map(_answer, jobs))
        after = await _answer(s.submit([5], SamplingParams(max_tokens=3)))
        s.stop()
        return answers, after, s.stats

    answers, after, stats = asyncio.run(run())
    assert answers == ["ok", "error: this row's sampling failed", "ok"]
    assert after == "ok" and stats["failed"] == 1 and stats["completed"] == 3
