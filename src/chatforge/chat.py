"""A multi-turn chat session (the history, the slash commands) over an Engine; `chatforge chat` drives it.

With a store, every answer is kept (keyed by a chatcmpl- id, like the server's) and /good, /bad, /fix TEXT
give feedback on the last answer (chatforge.store does the writing)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Iterator

from chatforge.errors import ChatforgeError
from chatforge.infer import Completion, Engine, SamplingParams

HELP = """Commands:
  /reset          forget the conversation (keeps the system prompt)
  /system TEXT    set the system prompt (and reset); /system alone clears it
  /save FILE      append the conversation to FILE as one OpenAI messages JSONL line
  /good, /bad     rate the last answer (kept in the store for `chatforge feedback export`)
  /fix TEXT       the answer it should have given (replaces the last answer in the conversation)
  /exit           leave (also /quit, Ctrl-D)"""


class ChatSession:
    def __init__(self, engine: Engine, params: SamplingParams | None = None, system: str | None = None,
                 store=None, model_id: int | None = None):
        self.engine = engine
        self.params = params or SamplingParams()
        self.system = system
        self.history: list[dict] = []
        self.store, self.model_id = store, model_id  # a chatforge Store and this model's id in it, or None
        self.conversation = _new_id("conv")
        self.last_id: str | None = None  # the completion id of the last answer (when kept)
        self.last: Completion | None = None  # the last answer's Completion (finish reason, token ids)

    @property
    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def reset(self) -> None:
        self.history = []
        self.conversation = _new_id("conv")
        self.last_id = None

    def ask(self, text: str) -> Iterator[str]:
        """Stream the answer to one user turn; the turn and the answer join the history when done."""
        self.history.append({"role": "user", "content": text})
        prompt = list(self.messages)
        started = time.monotonic()
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
        self.last = done
        self.history.append({"role": "assistant", "content": done.text})
        self.last_id = None
        if self.store is not None:
            cid = _new_id("chatcmpl")
            self.store.log_completion(
                id=cid, model_id=self.model_id, messages=prompt, answer=done.text, finish_reason=done.finish_reason,
                sampling={**vars(self.params), "stop": list(self.params.stop)}, prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens, latency_s=time.monotonic() - started, source="chat",
                conversation_id=self.conversation)
            self.last_id = cid

    def feedback(self, cmd: str, text: str = "") -> str:
        """/good, /bad or /fix TEXT on the last answer; returns what to show."""
        if self.store is None:
            return "nothing is kept in this chat (--no-log), so there is nothing to rate"
        if self.last_id is None:
            return "no answer to rate yet"
        from chatforge.store import StoreError

        try:
            if cmd == "/fix":
                if not text:
                    return "usage: /fix TEXT  (the answer it should have given)"
                record = self.store.add_correction(self.last_id, text, source="chat")
                self.history[-1] = {"role": "assistant", "content": text}  # the conversation goes on from it
                return f"(correction #{record['id']} kept; the conversation continues from it)"
            record = self.store.add_rating(self.last_id, "up" if cmd == "/good" else "down", source="chat")
        except StoreError as e:
            return f"error: {e.message}"
        return f"(rated {record['rating']}: feedback #{record['id']} kept)"

    def save(self, path: str | Path) -> Path:
        if not self.history:  # a line of only a system prompt is no conversation (`chatforge check` refuses it)
            raise ChatforgeError("nothing to save yet: the conversation has no turns")
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
        if cmd in ("/good", "/bad", "/fix"):
            return self.feedback(cmd, rest)
        if cmd in ("/help", "/?"):
            return HELP
        return f"unknown command {cmd}; /help lists them"


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"
