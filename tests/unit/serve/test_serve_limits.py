"""Batching, the concurrency limit, the bounded queue (429 + Retry-After) and cancellation, over real HTTP.

The model's batch is replaced by a slow stand-in (one token per STEP seconds) so the timing is deterministic:
the server, the scheduler thread and the HTTP layer are the real ones.
"""

import asyncio
import threading
import time
from types import SimpleNamespace

import httpx
import openai
import pytest

from chatforge.infer import Completion, Update

STEP = 0.02


class SlowEngine:
    """Just enough of chatforge.infer.Engine for the routes: 5-token prompts, a 4096-token context."""

    name = "slow-model"
    context_length = 4096

    def __init__(self):
        self.admitted: list[int] = []  # how many sequences joined the batch at each admission
        self.steps = 0  # sequence-steps decoded in all
        self.encoded_on_loop: list[bool] = []  # for each prompt encoded: was it on the event loop's thread?

    def encode_chat(self, messages):
        return self.encode_text("")

    def encode_text(self, text):
        try:
            asyncio.get_running_loop()
            self.encoded_on_loop.append(True)
        except RuntimeError:
            self.encoded_on_loop.append(False)
        return [1] * 5

    def check_prompt(self, ids):
        pass


class SlowBatch:
    """A chatforge.infer.Batch stand-in: every step takes STEP seconds and writes one "x" per row; honours cancellation."""

    def __init__(self, engine: SlowEngine):
        self.engine = engine
        self.rows: dict[int, list] = {}  # id -> [tokens made, max_tokens]

    @property
    def size(self):
        return len(self.rows)

    @property
    def ids(self):
        return list(self.rows)

    def can_admit(self):
        return True

    def clear(self):
        self.rows = {}

    def admit(self, ids, prompts, params, cancelled=None):
        self.engine.admitted.append(len(ids))
        self.rows.update((i, [0, p.max_tokens]) for i, p in zip(ids, params))
        return []

    def step(self, cancelled=None):
        time.sleep(STEP)
        updates = []
        for i, row in list(self.rows.items()):
            if cancelled(i):
                del self.rows[i]
                continue
            row[0] += 1
            self.engine.steps += 1
            done = Completion("x" * row[0], "length", 5, row[0]) if row[0] >= row[1] else None
            updates.append(Update(i, "x", done))
            if done:
                del self.rows[i]
        return updates


@pytest.fixture(scope="module")
def server():
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = SlowEngine()
    app = create_app(engine, ServeConfig(max_concurrency=2, max_queue=1, batch_window_ms=100), batcher=SlowBatch)
    with background(app) as url:
        yield SimpleNamespace(url=url, engine=engine, scheduler=app.state.scheduler)


def _ask(url: str, max_tokens: int, results: list, timeout: float = 30):
    r = httpx.post(url + "/v1/chat/completions", timeout=timeout,
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
    results.append(r)


def _in_background(*calls) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, args=args) for fn, *args in calls]
    for t in threads:
        t.start()
    return threads


def test_requests_that_arrive_together_start_together(server):
    results: list = []
    threads = _in_background(*[(_ask, server.url, 5, results)] * 2)
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    assert server.engine.admitted[-1] == 2
    assert all(r.json()["choices"][0]["message"]["content"] == "xxxxx" for r in results)


def test_a_request_arriving_mid_batch_joins_it_at_once(server, wait_for):
    results: list = []
    sched = server.scheduler
    first = _in_background((_ask, server.url, 150, results))
    assert wait_for(lambda: sched.running == 1)
    _ask(server.url, 3, results)  # joins the running batch: done after ~3 steps, not after the first's 150
    assert results[-1].json()["choices"][0]["message"]["content"] == "xxx"
    assert wait_for(lambda: sched.running == 1)
    assert first[0].is_alive()  # the first one is still being generated
    first[0].join()
    assert [r.status_code for r in results] == [200, 200]
    assert server.engine.admitted[-2:] == [1, 1]


def test_beyond_the_slots_and_the_queue_requests_get_429_with_retry_after(server, wait_for):
    sched = server.scheduler
    results: list = []
    busy = _in_background(*[(_ask, server.url, 60, results)] * 2)
    assert wait_for(lambda: sched.running == 2)
    queued = _in_background((_ask, server.url, 2, results))
    assert wait_for(lambda: sched.waiting == 1)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="slow-model", messages=[{"role": "user", "content": "hi"}])
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.body["type"] == "rate_limit_error"
    for t in busy + queued:
        t.join()
    assert [r.status_code for r in results] == [200] * 3  # the queued one was served once a slot freed
    _ask(server.url, 1, results)
    assert results[-1].status_code == 200  # and the server serves normally afterwards


def test_a_client_leaving_while_queued_never_runs(server, wait_for):
    engine, sched = server.engine, server.scheduler
    results: list = []
    busy = _in_background(*[(_ask, server.url, 40, results)] * 2)
    assert wait_for(lambda: sched.running == 2)
    admitted, cancelled = len(engine.admitted), sched.stats["cancelled"]
    with pytest.raises(httpx.ReadTimeout):
        _ask(server.url, 1000, results, timeout=0.3)
    for t in busy:
        t.join()
    assert wait_for(lambda: sched.stats["cancelled"] == cancelled + 1, timeout=3)
    assert len(engine.admitted) == admitted and sched.waiting == 0  # it was dropped, not generated


def test_a_cancelled_stream_frees_its_slot_at_the_next_step(server, wait_for):
    engine, sched = server.engine, server.scheduler
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000, "stream": True}
    start = engine.steps
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()  # keep a reference: a collected iterator closes the connection
            assert next(lines).startswith("data: ")
            assert wait_for(lambda: engine.steps > start and sched.running == 1)
    steps = engine.steps
    assert wait_for(lambda: sched.running == 0, timeout=2)
    assert engine.steps - steps < 25  # stopped within a few steps, not after its 1000 tokens


@pytest.mark.parametrize("route", ["chat", "text"])
def test_a_long_prompt_is_tokenised_off_the_event_loop(server, route):
    # tokenising a 1 MiB body takes about a second: on the loop it would pause every other request's stream
    from chatforge.serve.app import OFF_LOOP_CHARS

    def ask(text):
        if route == "chat":
            return httpx.post(server.url + "/v1/chat/completions", timeout=30, json={
                "messages": [{"role": "user", "content": text}], "max_tokens": 1})
        return httpx.post(server.url + "/v1/completions", timeout=30, json={"prompt": text, "max_tokens": 1})

    server.engine.encoded_on_loop.clear()
    assert ask("hi").status_code == 200 and ask("x" * (OFF_LOOP_CHARS + 1)).status_code == 200
    assert server.engine.encoded_on_loop == [True, False]
