"""The store options of `serve`, `chat` (--store, --log/--no-log) and `feedback` (--store)."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import option


@dataclass
class LogConfig:
    store: str | None = option(None, "The conversation and feedback store (SQLite) to use "
                                     "(default: CHATFORGE_HOME/chatforge.db).", metavar="PATH")
    log: bool = option(True, "Keep every exchange (and its feedback) in the store; --no-log keeps nothing "
                             "(default: on).")

    def open(self, *, source: str, models: dict[str, object] | None = None):
        """(Store or None, {model id: store model id}) for the given {model id: ResolvedModel}."""
        if not self.log:
            return None, {}
        from chatforge.store import Store

        store = Store(self.store)
        ids = {name: store.register_model(r.name, r.path, r.adapter) for name, r in (models or {}).items()}
        return store, ids

    def open_existing(self):
        """The Store to read from (`feedback`, `improve`). An explicit --store must exist: a mistyped path is an
        error, not an empty store created there."""
        from pathlib import Path

        from chatforge.errors import ChatforgeError
        from chatforge.store import Store

        if self.store and not Path(self.store).expanduser().exists():
            raise ChatforgeError(f"--store {self.store}: no such file",
                                 hint="serve and chat create the store when they keep the first exchange; "
                                      "leave --store out for the default (CHATFORGE_HOME/chatforge.db)")
        return Store(self.store)


@dataclass
class ExportConfig:
    kind: str = option("dpo", "What to export: dpo (chosen/rejected pairs: picks, arena votes, corrections > "
                              "answers), kto (thumbs: prompt, completion, label), sft (corrections and thumbs-up "
                              "answers).", flag="--as", choices=["dpo", "kto", "sft"])
    out: str | None = option(None, "The JSONL file to write (required).", metavar="FILE")
    style: str = option("openai", "Row format: openai (OpenAI's preference JSONL: input / preferred_output / "
                                  "non_preferred_output) or trl (TRL's prompt / chosen / rejected; kto rows are "
                                  "TRL's prompt / completion / label in both).", choices=["openai", "trl"])
    model: str | None = option(None, "Only feedback on this model's answers: its name as served, its path or run "
                                     "directory, or a fingerprint prefix (see `feedback stats`).", metavar="M")
    since: str | None = option(None, "Only feedback given on or after this date (YYYY-MM-DD or an ISO time, "
                                     "local time).", metavar="DATE")
