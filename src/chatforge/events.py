"""Progress events: how a stage says what it is doing, instead of printing.

A stage takes one `on_event` callback and calls it with `Event`s; whoever runs the stage subscribes:
the CLI's progress bar, the run directory's `events.jsonl` (which `chatforge studio` follows while a run
trains in another process), a test. No stage knows who listens.

    Event(stage="train", phase="step", step=12, total=80, metrics={"loss": 1.93, "tokens_per_sec": 812.0})

Phases: "start" (total known), "step" (one optimizer step, with its metrics), "eval" (eval metrics),
"message" (a line for the user), "done" (the stage finished; metrics = its summary), "stopped" (SIGTERM:
a checkpoint was kept), "error" (message = what went wrong). Only the standard library is imported here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

PHASES = ("start", "step", "eval", "message", "done", "stopped", "error")


@dataclass
class Event:
    stage: str  # "train", "eval", "export", ...
    phase: str  # one of PHASES
    step: int | None = None
    total: int | None = None
    metrics: dict = field(default_factory=dict)
    message: str = ""
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, line: str) -> "Event":
        data = json.loads(line)
        return cls(**{k: data[k] for k in ("stage", "phase", "step", "total", "metrics", "message", "time")
                      if k in data})


Listener = Callable[[Event], None]


def fan_out(listeners: Iterable[Listener | None]) -> Listener:
    """One callback that hands each event to every listener (None entries are skipped)."""
    targets = [f for f in listeners if f is not None]

    def emit(event: Event) -> None:
        for f in targets:
            f(event)

    return emit


class JsonlSink:
    """Appends each event as one JSON line, flushed at once, so another process can follow the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __call__(self, event: Event) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(event.to_json() + "\n")


def read_events(path: str | Path, offset: int = 0) -> tuple[list[Event], int]:
    """The complete event lines of `path` from byte `offset` on, and the offset after the last complete line
    (a line still being written is left for the next call)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(Event.from_json(line.decode("utf-8")))
        except (ValueError, TypeError, UnicodeDecodeError):
            continue  # a damaged line (a killed writer) is skipped, never fatal
    return events, offset + end


def follow(path: str | Path, *, alive: Callable[[], bool], poll: float = 0.5) -> Iterator[Event]:
    """Yield events as they are appended to `path` until `alive()` is False and the file has no more."""
    offset = 0
    while True:
        events, offset = read_events(path, offset)
        yield from events
        if not events:
            if not alive():
                events, offset = read_events(path, offset)
                yield from events
                return
            time.sleep(poll)


class ConsoleView:
    """The CLI's view of a stage's events on stderr: "message" events as lines ("chatforge eval: ..."), "step"
    events as one tqdm bar per task (the event's message names the task), closed when it reaches its total."""

    def __init__(self, file=None):
        import sys

        self.file = file or sys.stderr
        self.bars: dict[str, object] = {}

    def __call__(self, event: Event) -> None:
        if event.phase == "message":
            print(f"chatforge {event.stage}: {event.message}", file=self.file, flush=True)
        elif event.phase == "step" and event.total:
            bar = self.bars.get(event.message)
            if bar is None:
                from tqdm.auto import tqdm

                bar = self.bars[event.message] = tqdm(total=event.total, desc=event.message, unit="ex",
                                                      file=self.file, dynamic_ncols=True, leave=False)
            bar.update((event.step or 0) - bar.n)
            if (event.step or 0) >= event.total:
                bar.close()
                del self.bars[event.message]
        elif event.phase in ("done", "error", "stopped"):
            self.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def quiet(event: Event) -> None:
    """The listener of a stage nobody follows."""


class Progress:
    """Counts finished items of one task and reports each as a "step" event: `Progress(emit, "eval", 60,
    "tuned: answering").update(1)`; usable as the `on_done` callback of a batch."""

    def __init__(self, emit: Listener, stage: str, total: int, task: str):
        self.emit, self.stage, self.total, self.task, self.done = emit, stage, total, task, 0
        emit(Event(stage, "step", step=0, total=total, message=task))

    def update(self, n: int = 1) -> None:
        self.done += n
        self.emit(Event(self.stage, "step", step=self.done, total=self.total, message=self.task))

