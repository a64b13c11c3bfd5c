"""A multi-turn chat session (the history, the slash commands) over an Engine; `chatforge chat` drives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from chatforge.errors import ChatforgeError
from chatforge.infer import Completion, Engine, SamplingParams

HELP = """Commands:
  /reset          forget the conversation (keeps the system prompt)
  /system TEXT    set the system prompt (and reset); /system alone clears it
  /save FILE      append the conversation to FILE as one OpenAI messages JSONL line
  /exit           leave (also /quit, Ctrl-D)"""


class ChatSession:
    def __init__(self, engine: Engine, params: SamplingParams | None = None, system: str | None = None):
        self.engine = engine
        self.params = params or SamplingParams()
        self.system = system
        self.history: list[dict] = []

    @property
    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def reset(self) -> None:
        self.history = []

    def ask(self, text: str) -> Iterator[str]:
        """Stream the answer to one user turn; the turn and the answer join the history when done."""
        self.history.append({"role": "user", "content": text})
        done: Completion | None = None
        try:
            for piece in self.engine.stream_chat(self.messages, self.params):
                if isinstance(piece, Completion):
                    done = piece
                else:
                    yield piece
        finally:
            if done is None:  # interrupted or failed: forget the unanswered turn
                self.history.pop()
        self.history.append({"role": "assistant", "content": done.text})

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        try:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"messages": self.messages}, ensure_ascii=False) + "\n")
        except OSError as e:
            raise ChatforgeError(f"{path}: cannot write ({e.strerror})") from None
        return path

    def command(self, line: str) -> str | None:
        """Handle a /command. Returns a message to show, or None to exit."""
        cmd, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if cmd in ("/exit", "/quit"):
            return None
        if cmd == "/reset":
            self.reset()
            return "(conversation reset)"
        if cmd == "/system":
            self.system = rest or None
            self.reset()
            return f"(system prompt {'set' if rest else 'cleared'}; conversation reset)"
        if cmd == "/save":
            if not rest:
                return "usage: /save FILE"
            try:
                return f"(saved to {self.save(rest)})"
            except ChatforgeError as e:
                return f"error: {e.message}"
        if cmd in ("/help", "/?"):
            return HELP
        return f"unknown command {cmd}; /help lists them"
