"""The store's schema, as numbered migrations. Append only: a released migration is never edited.

`PRAGMA user_version` holds the number of migrations applied. Opening a database applies the missing ones,
each in its own transaction (a kill mid-migration leaves the previous version, never half a schema); a
database whose version is higher than len(MIGRATIONS) was written by a newer chatforge and is refused.
"""

MIGRATIONS: list[str] = [
    # 1: models, conversations, completions (one per answer, keyed by the chatcmpl- id), feedback, arena battles
    """
    CREATE TABLE models (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,            -- as the user named it (catalog name, path, run directory)
        path        TEXT NOT NULL,            -- the base weights directory
        adapter     TEXT,                     -- the PEFT adapter directory, if any
        fingerprint TEXT NOT NULL,            -- sha256 over the weight / adapter / tokenizer files' sha256
        created     REAL NOT NULL,
        UNIQUE (name, path, adapter, fingerprint)
    );
    CREATE TABLE conversations (
        id      TEXT PRIMARY KEY,             -- conv-...
        source  TEXT NOT NULL,                -- serve | chat | arena
        created REAL NOT NULL
    );
    CREATE TABLE completions (
        id                TEXT PRIMARY KEY,   -- chatcmpl-... (what the API returned)
        conversation_id   TEXT NOT NULL REFERENCES conversations(id),
        model_id          INTEGER NOT NULL REFERENCES models(id),
        messages          TEXT NOT NULL,      -- JSON: the prompt messages [{role, content}]
        answer            TEXT NOT NULL,
        finish_reason     TEXT NOT NULL,
        sampling          TEXT NOT NULL,      -- JSON: max_tokens, temperature, top_p, seed, stop
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        latency_ms        REAL NOT NULL,
        prompt_hash       TEXT NOT NULL,      -- sha256 of the canonical messages JSON: same prompt = same hash
        context_hash      TEXT NOT NULL,      -- sha256 of messages + this answer: what a follow-up starts with
        source            TEXT NOT NULL,
        created           REAL NOT NULL
    );
    CREATE INDEX completions_prompt ON completions (prompt_hash);
    CREATE INDEX completions_context ON completions (context_hash);
    CREATE INDEX completions_created ON completions (created);
    CREATE TABLE battles (
        id          TEXT PRIMARY KEY,         -- battle-...
        left_id     TEXT NOT NULL REFERENCES completions(id),
        right_id    TEXT NOT NULL REFERENCES completions(id),
        created     REAL NOT NULL
    );
    CREATE TABLE feedback (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL CHECK (kind IN ('rating', 'correction', 'pair', 'vote')),
        completion_id TEXT REFERENCES completions(id),   -- rating, correction
        rating        TEXT CHECK (rating IN ('up', 'down')),
        correction    TEXT,
        chosen_id     TEXT REFERENCES completions(id),   -- pair; a vote for left or right
        rejected_id   TEXT REFERENCES completions(id),
        battle_id     TEXT REFERENCES battles(id),       -- vote
        vote          TEXT CHECK (vote IN ('left', 'right', 'tie', 'both_bad')),
        comment       TEXT,
        source        TEXT NOT NULL,
        created       REAL NOT NULL
    );
    CREATE INDEX feedback_created ON feedback (created);
    CREATE TABLE file_hashes (                -- sha256 of model files, reused while size and mtime are unchanged
        path     TEXT PRIMARY KEY,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256   TEXT NOT NULL
    );
    """,
    # 2: raw text completions (/v1/completions): their prompt is text, not messages (messages is then [])
    """
    ALTER TABLE completions ADD COLUMN prompt TEXT;  -- the raw text prompt of a /v1/completions exchange, else NULL
    """,
]
