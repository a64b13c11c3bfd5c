"""Continuous batching: one worker thread owns the engine's Batch and admits waiting requests between decode steps.

    HTTP handlers (event loop) --submit()--> waiting deque (bounded) --worker thread--> Batch.admit / .step
    each step's Updates --loop.call_soon_threadsafe--> the request's asyncio.Queue --> its HTTP response

torch is not re-entrant for one model, so exactly one thread generates. A request waits only for the current
decode step (plus its own prefill) once a slot is free. When the server is idle, the first request waits
`batch_window` seconds for others, so requests that arrive together are prefilled together. A request whose
client went away is skipped while it waits, and leaves the batch at the next step once it runs.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import threading
import time
from typing import AsyncIterator, Callable

from chatforge.infer import AdmitFailed, SamplingParams, Update
from chatforge.memory import release_free_memory

log = logging.getLogger("chatforge.serve")
_END = object()  # posted to a job that was cancelled before it finished


TRIM_SECONDS = 10.0  # how often a busy worker hands the allocator's free memory back to the system (memory.py)


class QueueFull(Exception):
    """Every slot and every queue place is taken; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry after {retry_after} s")
        self.retry_after = retry_after


class Job:
    """One request's generation: its prompt and settings in, its Updates out (through an asyncio.Queue)."""

    def __init__(self, id: int, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop):
        self.id, self.prompt, self.params, self.loop = id, prompt, params, loop
        self.cancelled = False  # set by the handler (client gone); read by the worker thread
        self.finished = False  # set by the worker once a Completion (or an error / the end) was posted
        self.submitted = time.monotonic()
        self._queue: asyncio.Queue = asyncio.Queue()

    def cancel(self) -> None:
        self.cancelled = True

    def post(self, item) -> None:
        """Worker thread -> event loop. Harmless when the loop has already closed (server shutting down)."""
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            pass

    async def updates(self) -> AsyncIterator[Update]:
        """The Updates of this job, ending after the one that carries the Completion. Re-raises worker errors."""
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.done is not None:
                return


class Scheduler:
    def __init__(self, engine, *, max_concurrency: int = 8, max_queue: int = 32, batch_window: float = 0.01,
                 batcher: Callable | None = None):
        # batcher(engine) -> the running batch; by default the engine's own (chatforge.infer.Batch)
        self.engine, self.batcher = engine, batcher or (lambda e: e.new_batch())
        self.max_concurrency, self.max_queue, self.batch_window = max_concurrency, max_queue, batch_window
        self.running = 0  # sequences in the batch now
        self.stats = collections.Counter()  # submitted, rejected, admitted, completed, cancelled, ..., peak_running
        self.last_request_seconds = 0.0  # how long the last finished request took (for Retry-After)
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: dict[int, Job] = {}  # the jobs in the batch, by id (worker thread only)
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="chatforge-generate", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Cancel everything (running sequences end at the next step); with `wait`, join the worker."""
        with self._cond:
            self._stopping = True
            for job in self._waiting:
                job.post(_END)
            self._waiting.clear()
            self._cond.notify_all()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def submit(self, prompt: list[int], params: SamplingParams) -> Job:
        """Queue a request (event loop thread). Raises QueueFull when the slots and the queue are all taken."""
        job = Job(next(self._ids), prompt, params, asyncio.get_running_loop())
        with self._cond:
            free_slots = max(0, self.max_concurrency - self.running)
            if len(self._waiting) >= self.max_queue + free_slots:
                self.stats["rejected"] += 1
                # a slot frees about every (request duration / slots) seconds
                raise QueueFull(retry_after=max(1, math.ceil(self.last_request_seconds / self.max_concurrency)))
            self._waiting.append(job)
            self.stats["submitted"] += 1
            self._cond.notify()
        return job

    # ---- worker thread -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        batch = self.batcher(self.engine)
        trimmed = time.monotonic()
        while True:
            new = self._take(batch)
            if new is None:
                break
            try:
                if new:
                    self._jobs.update((j.id, j) for j in new)
                    self._admit(batch, new)
                if batch.size:
                    self._deliver(batch.step(self._cancelled))
            except Exception as e:  # a bug or out of memory: fail the batch's requests, keep serving new ones
                log.exception("generation failed for a batch of %d", len(self._jobs))
                self._fail(e)
                batch.clear()
            self._retire(set(batch.ids))
            self.running = batch.size
            # every TRIM_SECONDS under load, and whenever the batch has emptied: an idle server then waits in
            # _take without looping, so this is its chance to give the batch's memory back
            if not batch.size or time.monotonic() - trimmed > TRIM_SECONDS:
                release_free_memory()
                trimmed = time.monotonic()
        batch.clear()
        self._retire(set())

    def _admit(self, batch, new: list[Job]) -> None:
        """Prefill `new` into the batch. When that fails for a reason of theirs (AdmitFailed: the running rows are
        untouched), each is tried alone, so one bad request fails by itself, not its neighbours or the batch."""
        try:
            self._deliver(batch.admit([j.id for j in new], [j.prompt for j in new], [j.params for j in new],
                                      self._cancelled))
        except AdmitFailed as e:
            if len(new) > 1:
                for job in new:
                    self._admit(batch, [job])
                return
            log.error("generation failed for one request", exc_info=e.cause)
            self._fail(e.cause, new)

    def _take(self, batch) -> list[Job] | None:
        """The waiting jobs that fit in the batch now (blocks while there is nothing to do); None to stop."""
        with self._cond:
            while not self._waiting and not batch.size and not self._stopping:
                self._cond.wait()
            if not batch.size:  # idle: let requests that arrive together start together
                deadline = time.monotonic() + self.batch_window
                while len(self._waiting) < self.max_concurrency and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._stopping:
                return None
            free = self.max_concurrency - batch.size if batch.can_admit() else 0
            new: list[Job] = []
            while self._waiting and len(new) < free:
                job = self._waiting.popleft()
                if job.cancelled:  # its client left while it waited
                    self.stats["cancelled"] += 1
                    job.post(_END)
                else:
                    new.append(job)
            self.stats["admitted"] += len(new)
            self.running = batch.size + len(new)
            self.stats["peak_running"] = max(self.stats["peak_running"], self.running)
            return new

    def _cancelled(self, id: int) -> bool:
        return self._jobs[id].cancelled or self._stopping

    def _deliver(self, updates: list[Update]) -> None:
        for u in updates:
            job = self._jobs[u.index]
            if u.error is not None:  # this request's sampling or text failed; the batch goes on
                log.error("generation failed for one request", exc_info=u.error)
                self._fail(u.error, [job])
                continue
            job.post(u)
            if u.done is not None:
                job.finished = True
                self.stats["completed"] += 1
                self.stats["tokens"] += u.done.completion_tokens
                self.last_request_seconds = time.monotonic() - job.submitted

    def _fail(self, error: Exception, jobs: list[Job] | None = None) -> None:
        """Post `error` to these jobs (default: every job of the batch) and count them as failed."""
        for job in self._jobs.values() if jobs is None else jobs:
            if not job.finished:
                job.finished = True
                self.stats["failed"] += 1
                job.post(error)

    def _retire(self, live: set[int]) -> None:
        """Forget the jobs that left the batch; those that left unfinished were cancelled."""
        for id in [i for i in self._jobs if i not in live]:
            job = self._jobs.pop(id)
            if not job.finished:
                self.stats["cancelled"] += 1
                job.finished = True
                job.post(_END)
