"""The conversation and feedback store: one SQLite file (WAL), the only code that reads or writes its tables.

Durability: WAL with synchronous=FULL, so a function that returned has committed and fsynced its row; a kill
(even kill -9, even a power cut) loses at most the write in progress, which SQLite rolls back on the next open.
One connection per Store, guarded by a lock: the server calls it from a worker thread (asyncio.to_thread).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from chatforge.errors import ChatforgeError
from chatforge.store.migrations import MIGRATIONS

RATINGS = ("up", "down")
VOTES = ("left", "right", "tie", "both_bad")


class StoreError(ChatforgeError):
    """Feedback the store cannot take. `kind`: not_found (an unknown id), mismatch (a pair of two prompts),
    invalid (a bad value); `param` names the offending field (the server answers 404 / 400 with it)."""

    def __init__(self, message: str, *, kind: str = "invalid", param: str | None = None):
        super().__init__(message)
        self.kind, self.param = kind, param


def default_path() -> Path:
    from chatforge.home import chatforge_home

    return chatforge_home() / "chatforge.db"


def canonical(obj) -> str:
    """The JSON that hashes are taken of: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Store:
    """Open (creating and migrating) the store at `path` (default: CHATFORGE_HOME/chatforge.db).

    `fsync=False` (synchronous=NORMAL) is for benchmarks only: it survives kill -9 but not a power cut."""

    def __init__(self, path: str | Path | None = None, *, fsync: bool = True):
        self.path = Path(path).expanduser() if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise ChatforgeError(f"{self.path}: cannot open the store ({e})") from None
        self._lock = threading.RLock()
        self._db.row_factory = sqlite3.Row
        try:
            self._set_up(fsync)
        except sqlite3.DatabaseError as e:
            self._db.close()
            if _locked(e):
                raise ChatforgeError(f"{self.path}: the store stayed locked by another process for 30 s ({e})",
                                     exit_code=1) from None
            raise ChatforgeError(f"{self.path}: not a chatforge store, or damaged ({e})",
                                 hint="pass another file with --store PATH") from None
        except ChatforgeError:
            self._db.close()
            raise

    def _set_up(self, fsync: bool) -> None:
        """Pragmas and migrations. Several processes opening a new store at once can get "database is locked"
        at once, without SQLite's busy wait (turning a new file into WAL mode takes an exclusive lock that
        SQLite does not wait for): retried for up to 30 s."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA busy_timeout = 30000")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
                self._db.execute("PRAGMA foreign_keys = ON")
                self.version = migrate(self._db, self.path)
                return
            except sqlite3.OperationalError as e:
                if not _locked(e) or time.monotonic() > deadline:
                    raise
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- low level -----------------------------------------------------------------------------------------
    def _write(self, fn):
        """Run fn(db) in one IMMEDIATE transaction: all of it is committed (and fsynced) or none of it."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as e:  # a full disk, a read-only file, a lock held past the 30 s timeout
                raise ChatforgeError(f"{self.path}: cannot write to the store ({e})", exit_code=1) from None
            return out

    def _read(self, sql: str, args: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as e:
                raise ChatforgeError(f"{self.path}: cannot read the store ({e})", exit_code=1) from None

    def integrity(self) -> str:
        """PRAGMA integrity_check: "ok" for a sound database."""
        return self._read("PRAGMA integrity_check")[0][0]

    # ---- models --------------------------------------------------------------------------------------------
    def register_model(self, name: str, path: str | Path, adapter: str | Path | None = None) -> int:
        """The id of this model (name, weights, adapter, and their content fingerprint), added when new."""
        from chatforge.store.fingerprint import model_files

        files = model_files(Path(path), Path(adapter) if adapter else None)
        fingerprint = digest([[role, self._file_sha256(f)] for role, f in files])
        row = (str(name), str(Path(path).resolve()), str(Path(adapter).resolve()) if adapter else None, fingerprint)

        def add(db):
            found = db.execute("SELECT id FROM models WHERE name = ? AND path = ? AND adapter IS ? AND "
                               "fingerprint = ?", row).fetchone()
            if found:
                return found[0]
            return db.execute("INSERT INTO models (name, path, adapter, fingerprint, created) VALUES (?,?,?,?,?)",
                              (*row, time.time())).lastrowid

        return self._write(add)

    def _file_sha256(self, f: Path) -> str:
        """sha256 of a file's bytes, cached by (path, size, mtime): hashed again only after it changes."""
        st = f.stat()
        key = str(f.resolve())
        hit = self._read("SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                         (key, st.st_size, st.st_mtime_ns))
        if hit:
            return hit[0][0]
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        value = h.hexdigest()
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)",
                                          (key, st.st_size, st.st_mtime_ns, value)))
        return value

    def model(self, model_id: int) -> dict:
        rows = self._read("SELECT * FROM models WHERE id = ?", (model_id,))
        return dict(rows[0]) if rows else {}

    # ---- completions ---------------------------------------------------------------------------------------
    def log_completion(self, *, id: str, model_id: int, messages: list[dict] | None = None, answer: str,
                       finish_reason: str, sampling: dict, prompt_tokens: int, completion_tokens: int,
                       latency_s: float, source: str, conversation_id: str | None = None,
                       prompt: str | None = None) -> dict:
        """Keep one exchange: a chat (`messages`) or a raw text continuation (`prompt`, /v1/completions).
        The conversation is `conversation_id` when given, else the one whose earlier turn this prompt continues
        (its messages + answer, or its prompt + an edited answer), else a new one (always, for raw text)."""
        if (messages is None) == (prompt is None):
            raise ValueError("log_completion takes either messages (a chat) or prompt (raw text)")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages or []]
        if prompt is None:
            prompt_hash = digest(messages)
            context_hash = digest(messages + [{"role": "assistant", "content": answer}])
        else:  # keyed apart from any chat: a pair of two raw answers must share the same text prompt
            prompt_hash, context_hash = digest({"prompt": prompt}), digest({"prompt": prompt + answer})
        now = time.time()

        def add(db):
            conv = conversation_id
            if conv is None and prompt is None and len(messages) >= 2:
                hit = db.execute("SELECT conversation_id FROM completions WHERE context_hash = ? ORDER BY created "
                                 "DESC LIMIT 1", (digest(messages[:-1]),)).fetchone()
                if hit is None and len(messages) >= 3 and messages[-2]["role"] == "assistant":
                    hit = db.execute("SELECT conversation_id FROM completions WHERE prompt_hash = ? ORDER BY "
                                     "created DESC LIMIT 1", (digest(messages[:-2]),)).fetchone()
                conv = hit[0] if hit else None
            if conv is None:
                conv = new_id("conv")
            db.execute("INSERT OR IGNORE INTO conversations (id, source, created) VALUES (?,?,?)",
                       (conv, source, now))
            db.execute("INSERT INTO completions (id, conversation_id, model_id, messages, answer, finish_reason, "
                       "sampling, prompt_tokens, completion_tokens, latency_ms, prompt_hash, context_hash, source, "
                       "created, prompt) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (id, conv, model_id, canonical(messages), answer, finish_reason, canonical(sampling),
                        prompt_tokens, completion_tokens, latency_s * 1000, prompt_hash, context_hash, source, now,
                        prompt))
            return conv

        conv = self._write(add)
        return {"id": id, "conversation_id": conv, "created": now}

    def completion(self, completion_id: str) -> dict | None:
        rows = self._read("SELECT c.*, m.name AS model, m.fingerprint AS fingerprint FROM completions c "
                          "JOIN models m ON m.id = c.model_id WHERE c.id = ?", (completion_id,))
        return _completion(rows[0]) if rows else None

    def completions(self, *, limit: int = 100, conversation_id: str | None = None) -> list[dict]:
        where, args = ("WHERE c.conversation_id = ?", [conversation_id]) if conversation_id else ("", [])
        rows = self._read(f"SELECT c.*, m.name AS model, m.fingerprint AS fingerprint FROM completions c JOIN "
                          f"models m ON m.id = c.model_id {where} ORDER BY c.created, c.rowid LIMIT ?",
                          [*args, limit])
        return [_completion(r) for r in rows]

    def _need(self, db, completion_id, param: str) -> sqlite3.Row:
        if not isinstance(completion_id, str) or not completion_id:
            raise StoreError(f"{param} must be a completion id (a string such as chatcmpl-...)", param=param)
        row = db.execute("SELECT id, prompt_hash, answer FROM completions WHERE id = ?", (completion_id,)).fetchone()
        if row is None:
            raise StoreError(f"{param}: no completion {completion_id!r} is in the store (unknown id, or it was "
                             "served with --no-log / store: false)", kind="not_found", param=param)
        return row

    # ---- feedback ------------------------------------------------------------------------------------------
    def add_rating(self, completion_id: str, rating: str, *, comment: str | None = None,
                   source: str = "api") -> dict:
        if rating not in RATINGS:
            raise StoreError(f"rating must be \"up\" or \"down\" (got {rating!r})", param="rating")

        def add(db):
            self._need(db, completion_id, "completion_id")
            return self._insert(db, kind="rating", completion_id=completion_id, rating=rating, comment=comment,
                                source=source)

        return self.feedback_record(self._write(add))

    def add_correction(self, completion_id: str, correction: str, *, comment: str | None = None,
                       source: str = "api") -> dict:
        if not isinstance(correction, str) or not correction.strip():
            raise StoreError("correction must be the answer the model should have given (a non-empty string)",
                             param="correction")

        def add(db):
            row = self._need(db, completion_id, "completion_id")
            if row["answer"].strip() == correction.strip():
                raise StoreError("correction is the same as the answer it corrects", param="correction")
            return self._insert(db, kind="correction", completion_id=completion_id, correction=correction,
                                comment=comment, source=source)

        return self.feedback_record(self._write(add))

    def add_pair(self, chosen_id: str, rejected_id: str, *, comment: str | None = None,
                 source: str = "api") -> dict:
        """`chosen_id`'s answer is better than `rejected_id`'s: two answers to one prompt."""
        def add(db):
            chosen = self._need(db, chosen_id, "chosen_id")
            rejected = self._need(db, rejected_id, "rejected_id")
            if chosen_id == rejected_id:
                raise StoreError("chosen_id and rejected_id are the same completion", param="rejected_id")
            if chosen["prompt_hash"] != rejected["prompt_hash"]:
                raise StoreError("chosen_id and rejected_id answer different prompts; a preference pair compares "
                                 "two answers to the same messages", kind="mismatch", param="rejected_id")
            return self._insert(db, kind="pair", chosen_id=chosen_id, rejected_id=rejected_id, comment=comment,
                                source=source)

        return self.feedback_record(self._write(add))

    def new_battle(self, left_id: str, right_id: str) -> str:
        """An arena battle: two completions of one prompt, shown as left and right (models hidden)."""
        battle = new_id("battle")

        def add(db):
            left, right = self._need(db, left_id, "left_id"), self._need(db, right_id, "right_id")
            if left["prompt_hash"] != right["prompt_hash"]:
                raise StoreError("an arena battle compares two answers to the same prompt", kind="mismatch")
            db.execute("INSERT INTO battles VALUES (?,?,?,?)", (battle, left_id, right_id, time.time()))

        self._write(add)
        return battle

    def add_vote(self, battle_id: str, vote: str, *, comment: str | None = None, source: str = "arena") -> dict:
        if vote not in VOTES:
            raise StoreError(f"vote must be one of {', '.join(VOTES)} (got {vote!r})", param="vote")

        def add(db):
            if not isinstance(battle_id, str):
                raise StoreError("battle_id must be a string (battle-...)", param="battle_id")
            b = db.execute("SELECT * FROM battles WHERE id = ?", (battle_id,)).fetchone()
            if b is None:
                raise StoreError(f"battle_id: no arena battle {battle_id!r}", kind="not_found", param="battle_id")
            if db.execute("SELECT 1 FROM feedback WHERE battle_id = ?", (battle_id,)).fetchone():
                raise StoreError(f"battle {battle_id} already has a vote", param="battle_id")
            pick = {"left": (b["left_id"], b["right_id"]), "right": (b["right_id"], b["left_id"])}.get(vote)
            return self._insert(db, kind="vote", battle_id=battle_id, vote=vote, chosen_id=pick and pick[0],
                                rejected_id=pick and pick[1], comment=comment, source=source)

        return self.feedback_record(self._write(add))

    def _insert(self, db, **cols) -> int:
        if cols.get("comment") is not None and not isinstance(cols["comment"], str):
            raise StoreError("comment must be a string", param="comment")
        cols["created"] = time.time()
        names = ", ".join(cols)
        return db.execute(f"INSERT INTO feedback ({names}) VALUES ({', '.join('?' * len(cols))})",
                          tuple(cols.values())).lastrowid

    # ---- reading feedback ----------------------------------------------------------------------------------
    _FEEDBACK = ("SELECT f.*, b.left_id, b.right_id, ml.name AS left_model, mr.name AS right_model "
                 "FROM feedback f LEFT JOIN battles b ON b.id = f.battle_id "
                 "LEFT JOIN completions cl ON cl.id = b.left_id LEFT JOIN models ml ON ml.id = cl.model_id "
                 "LEFT JOIN completions cr ON cr.id = b.right_id LEFT JOIN models mr ON mr.id = cr.model_id ")

    def feedback_record(self, feedback_id: int) -> dict:
        rows = self._read(self._FEEDBACK + "WHERE f.id = ?", (feedback_id,))
        if not rows:
            raise StoreError(f"no feedback record {feedback_id}", kind="not_found", param="id")
        return _feedback(rows[0])

    def list_feedback(self, *, limit: int | None = 20, after: int | None = None,
                      since: float | None = None) -> list[dict]:
        """Feedback records in the order they were given, `limit` of them (None: all) after the record `after`."""
        rows = self._read(self._FEEDBACK + "WHERE f.id > ? AND f.created >= ? ORDER BY f.id LIMIT ?",
                          (after or 0, since or 0.0, -1 if limit is None else limit))
        return [_feedback(r) for r in rows]

    def models(self) -> list[dict]:
        """Every model that answered, with its number of logged completions."""
        rows = self._read("SELECT m.*, count(c.id) AS completions FROM models m LEFT JOIN completions c ON "
                          "c.model_id = m.id GROUP BY m.id ORDER BY m.id")
        return [dict(r) for r in rows]

    def counts(self) -> dict:
        return {t: self._read(f"SELECT count(*) FROM {t}")[0][0]
                for t in ("models", "conversations", "completions", "battles", "feedback")}


def _completion(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["messages"], d["sampling"] = json.loads(d["messages"]), json.loads(d["sampling"])
    return d


def _feedback(row: sqlite3.Row) -> dict:
    d = dict(row)
    out: dict[str, Any] = {"id": d["id"], "object": "feedback", "kind": d["kind"], "created": d["created"]}
    for k in ("completion_id", "rating", "correction", "chosen_id", "rejected_id", "battle_id", "vote", "comment"):
        out[k] = d[k]
    if d["kind"] == "vote":  # names are revealed once the vote is in
        out["left"] = {"completion_id": d["left_id"], "model": d["left_model"]}
        out["right"] = {"completion_id": d["right_id"], "model": d["right_model"]}
    out["source"] = d["source"]
    return out


def _locked(e: sqlite3.DatabaseError) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Apply the missing migrations, one transaction each; refuse a schema newer than this code knows."""
    known = len(MIGRATIONS)
    while True:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > known:
            raise ChatforgeError(
                f"{path}: this store has schema version {version}, but this chatforge knows only versions up to "
                f"{known}; it was written by a newer chatforge",
                hint="upgrade chatforge (it never downgrades a store), or pass another file with --store PATH")
        if version == known:
            return version
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == version:  # nobody migrated meanwhile
                for statement in _statements(MIGRATIONS[version]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
