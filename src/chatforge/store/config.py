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
