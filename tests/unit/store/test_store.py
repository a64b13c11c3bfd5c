"""The store: migrations on open, a newer schema refused, feedback validated, export rows and their reports."""

import json
import sqlite3
import subprocess
import sys

import pytest

from chatforge.errors import ChatforgeError
from chatforge.store import Store, StoreError
from chatforge.store import export as ex
from chatforge.store.migrations import MIGRATIONS

Q = [{"role": "user", "content": "What is Lumora Home?"}]


@pytest.fixture
def weights(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"\0" * 4096)
    return d


@pytest.fixture
def store(tmp_path, weights):
    s = Store(tmp_path / "db" / "chatforge.db")
    s.mid = s.register_model("tiny", weights)
    yield s
    s.close()


def log(store, cid, answer, messages=Q, model_id=None, **kw):
    return store.log_completion(id=cid, model_id=model_id or store.mid, messages=messages, answer=answer,
                                finish_reason="stop", sampling={"temperature": 0}, prompt_tokens=5,
                                completion_tokens=3, latency_s=0.01, source="test", **kw)


def test_a_new_store_is_migrated_to_the_latest_version_in_wal_mode(tmp_path):
    path = tmp_path / "a.db"
    with Store(path) as s:
        assert s.version == len(MIGRATIONS) and s.integrity() == "ok"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "conversations", "completions", "feedback", "battles"} <= tables


def test_an_older_store_is_migrated_on_open_and_keeps_its_rows(tmp_path, monkeypatch):
    import chatforge.store.db as db_module

    path = tmp_path / "old.db"
    monkeypatch.setattr(db_module, "MIGRATIONS", MIGRATIONS[:1])
    with Store(path) as s:
        s.register_model("m", tmp_path)
    monkeypatch.setattr(db_module, "MIGRATIONS", MIGRATIONS + ["CREATE TABLE later (x INTEGER);"])
    with Store(path) as s:
        assert s.version == len(MIGRATIONS) + 1 and s.counts()["models"] == 1
        s._read("SELECT x FROM later")  # the new migration ran


def test_a_store_from_a_newer_chatforge_is_refused_not_downgraded(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(ChatforgeError, match="schema version .* newer chatforge") as e:
        Store(path)
    assert e.value.exit_code == 2 and "upgrade chatforge" in e.value.hint
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 5


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_text("hello, I am not SQLite" * 100)
    with pytest.raises(ChatforgeError, match="not a chatforge store"):
        Store(bad)


def test_the_fingerprint_changes_with_any_byte_of_the_weights(store, weights):
    same = store.register_model("tiny", weights)
    assert same == store.mid
    blob = bytearray((weights / "model.safetensors").read_bytes())
    blob[2000] = 1  # the middle of the file
    (weights / "model.safetensors").write_bytes(bytes(blob))
    changed = store.register_model("tiny", weights)
    assert changed != store.mid
    assert store.model(changed)["fingerprint"] != store.model(store.mid)["fingerprint"]


def test_follow_ups_join_the_conversation_they_continue(store):
    first = log(store, "chatcmpl-1", "A smart lamp.")
    follow = log(store, "chatcmpl-2", "Two years.", messages=Q + [
        {"role": "assistant", "content": "A smart lamp."}, {"role": "user", "content": "Warranty?"}])
    edited = log(store, "chatcmpl-3", "Yes.", messages=Q + [
        {"role": "assistant", "content": "A corrected answer."}, {"role": "user", "content": "Really?"}])
    other = log(store, "chatcmpl-4", "Hi.", messages=[{"role": "user", "content": "Hello"}])
    given = log(store, "chatcmpl-5", "Hi.", messages=[{"role": "user", "content": "Hello"}], conversation_id="conv-x")
    assert first["conversation_id"] == follow["conversation_id"] == edited["conversation_id"]
    assert other["conversation_id"] != first["conversation_id"] and given["conversation_id"] == "conv-x"
    c = store.completion("chatcmpl-2")
    assert c["model"] == "tiny" and c["messages"][-1]["content"] == "Warranty?" and c["prompt_tokens"] == 5


def test_feedback_is_validated(store):
    log(store, "chatcmpl-a", "A smart lamp.")
    log(store, "chatcmpl-b", "A kettle.")
    log(store, "chatcmpl-c", "Hi.", messages=[{"role": "user", "content": "Hello"}])
    rec = store.add_rating("chatcmpl-a", "up", comment="nice")
    assert rec["kind"] == "rating" and rec["rating"] == "up" and rec["comment"] == "nice" and rec["id"] >= 1
    cases = [
        (lambda: store.add_rating("chatcmpl-nope", "up"), "not_found", "completion_id"),
        (lambda: store.add_rating("chatcmpl-a", "meh"), "invalid", "rating"),
        (lambda: store.add_correction("chatcmpl-a", "  "), "invalid", "correction"),
        (lambda: store.add_correction("chatcmpl-a", "A smart lamp."), "invalid", "correction"),
        (lambda: store.add_pair("chatcmpl-a", "chatcmpl-c"), "mismatch", "rejected_id"),
        (lambda: store.add_pair("chatcmpl-a", "chatcmpl-a"), "invalid", "rejected_id"),
        (lambda: store.add_pair("chatcmpl-a", "chatcmpl-zz"), "not_found", "rejected_id"),
        (lambda: store.add_rating(7, "up"), "invalid", "completion_id"),
    ]
    for call, kind, param in cases:
        with pytest.raises(StoreError) as e:
            call()
        assert (e.value.kind, e.value.param) == (kind, param), e.value.message
    assert store.counts()["feedback"] == 1  # nothing half-written by the refused ones
    pair = store.add_pair("chatcmpl-a", "chatcmpl-b")
    assert (pair["chosen_id"], pair["rejected_id"]) == ("chatcmpl-a", "chatcmpl-b")
    assert [r["id"] for r in store.list_feedback(after=rec["id"])] == [pair["id"]]


def test_arena_votes_reveal_the_models_and_count_once(store, weights, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"\1" * 100)
    oid = store.register_model("base", other)
    log(store, "chatcmpl-l", "Lamp.")
    log(store, "chatcmpl-r", "Kettle.", model_id=oid)
    battle = store.new_battle("chatcmpl-l", "chatcmpl-r")
    vote = store.add_vote(battle, "right")
    assert vote["left"]["model"] == "tiny" and vote["right"]["model"] == "base"
    assert (vote["chosen_id"], vote["rejected_id"]) == ("chatcmpl-r", "chatcmpl-l")
    with pytest.raises(StoreError, match="already has a vote"):
        store.add_vote(battle, "left")
    with pytest.raises(StoreError) as e:
        store.add_vote("battle-nope", "tie")
    assert e.value.kind == "not_found"
    stats = ex.stats(store)
    assert stats["base"]["wins"] == 1 and stats["tiny"]["losses"] == 1 and stats["base"]["win_rate"] == 1.0
    low, high = stats["base"]["ci95"]
    assert 0 < low < 1 and high == 1.0


def test_export_rows_with_duplicates_and_contradictions_reported(store):
    log(store, "chatcmpl-a", "A smart lamp.")
    log(store, "chatcmpl-b", "A kettle.")
    log(store, "chatcmpl-c", "Hi there.", messages=[{"role": "user", "content": "Hello"}])
    log(store, "chatcmpl-d", "Go away.", messages=[{"role": "user", "content": "Hello"}])
    store.add_pair("chatcmpl-a", "chatcmpl-b")
    store.add_pair("chatcmpl-a", "chatcmpl-b")  # a duplicate
    store.add_pair("chatcmpl-c", "chatcmpl-d")
    store.add_pair("chatcmpl-d", "chatcmpl-c")  # contradicts the one before
    store.add_correction("chatcmpl-b", "Lumora Home is a smart lamp.")
    store.add_rating("chatcmpl-a", "up")
    store.add_rating("chatcmpl-b", "down")
    store.add_rating("chatcmpl-c", "up")
    store.add_rating("chatcmpl-c", "down")  # the vote changed: the latest counts
    log(store, "chatcmpl-f", "Hi there.", messages=[{"role": "user", "content": "Hello"}])  # c's answer again
    store.add_rating("chatcmpl-f", "up")  # contradicts c's (latest) rating

    dpo = ex.build(store, "dpo")
    assert dpo.rows == [
        {"input": {"messages": Q}, "preferred_output": [{"role": "assistant", "content": "A smart lamp."}],
         "non_preferred_output": [{"role": "assistant", "content": "A kettle."}]},
        {"input": {"messages": Q}, "preferred_output": [{"role": "assistant", "content": "Lumora Home is a smart lamp."}],
         "non_preferred_output": [{"role": "assistant", "content": "A kettle."}]}]
    assert len(dpo.duplicates) == 1 and "2 times" in dpo.duplicates[0]
    assert len(dpo.contradictions) == 1 and '"Hello"' in dpo.contradictions[0]
    trl = ex.build(store, "dpo", style="trl")
    assert trl.rows[0] == {"prompt": Q, "chosen": [{"role": "assistant", "content": "A smart lamp."}],
                           "rejected": [{"role": "assistant", "content": "A kettle."}]}
    kto = ex.build(store, "kto")
    assert sorted((r["completion"][0]["content"], r["label"]) for r in kto.rows) == [
        ("A kettle.", False), ("A smart lamp.", True)]
    assert all(set(r) == {"prompt", "completion", "label"} for r in kto.rows) and len(kto.contradictions) == 1
    assert "rates an answer up and" in kto.contradictions[0]
    assert any("replaced by a later rating of the same completion" in d for d in kto.duplicates)
    sft = ex.build(store, "sft")
    assert sorted(r["messages"][-1]["content"] for r in sft.rows) == ["A smart lamp.", "Lumora Home is a smart lamp."]
    assert ex.build(store, "dpo", model="someone-else").rows == []
    assert len(ex.build(store, "dpo", model="tiny").rows) == 2
    assert ex.build(store, "sft", since=4102444800).rows == []  # 2100-01-01: nothing that recent


def test_rows_with_an_empty_answer_are_left_out_and_reported(store):
    log(store, "chatcmpl-a", "A smart lamp.")
    log(store, "chatcmpl-e", "")
    store.add_pair("chatcmpl-a", "chatcmpl-e")
    store.add_rating("chatcmpl-e", "down")
    for kind in ("dpo", "kto"):
        out = ex.build(store, kind)
        assert out.rows == [] and len(out.empty) == 1 and "empty answer" in out.empty[0]


def test_text_completions_are_kept_apart_and_their_feedback_is_reported_not_exported(store):
    def text(cid, answer, prompt="Lumora Home is"):
        return store.log_completion(id=cid, model_id=store.mid, prompt=prompt, answer=answer, finish_reason="stop",
                                    sampling={}, prompt_tokens=3, completion_tokens=2, latency_s=0.01, source="serve")

    a, b = text("cmpl-a", " a smart-home maker."), text("cmpl-b", " a company.")
    text("cmpl-c", " a lamp.", prompt="What is Lumora Home?")  # the same words as a chat prompt
    log(store, "chatcmpl-q", "A smart-home maker.")
    assert a["conversation_id"] != b["conversation_id"]  # raw text never joins a conversation by guess
    assert store.completion("cmpl-a")["prompt"] == "Lumora Home is" and store.completion("cmpl-a")["messages"] == []
    assert store.completion("chatcmpl-q")["prompt"] is None
    store.add_pair("cmpl-a", "cmpl-b")
    for other in ("cmpl-c", "chatcmpl-q"):  # another text, or a chat with the same words: not the same prompt
        with pytest.raises(StoreError, match="different prompts"):
            store.add_pair("cmpl-a", other)
    store.add_rating("cmpl-a", "up")
    store.add_correction("cmpl-b", " a maker of thermostats, vacuums and locks.")
    for kind in ("dpo", "kto", "sft"):
        out = ex.build(store, kind)
        assert out.rows == [] and out.text_only and all("raw text completion" in line for line in out.text_only)
    assert len(ex.build(store, "dpo").text_only) == 2  # the pair and the correction
    assert ex.build(store, "dpo", model="someone-else").text_only == []
    with pytest.raises(ValueError):
        store.log_completion(id="x", model_id=store.mid, messages=Q, prompt="both", answer="", finish_reason="stop",
                             sampling={}, prompt_tokens=0, completion_tokens=0, latency_s=0, source="test")


def test_two_processes_opening_a_new_store_at_once_both_succeed(tmp_path):
    path = tmp_path / "race.db"
    code = f"from chatforge.store import Store; Store({str(path)!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    with Store(path) as s:
        assert s.version == len(MIGRATIONS) and s.integrity() == "ok"


def test_chinese_feedback_is_exported_as_written(store, tmp_path):
    q = [{"role": "user", "content": "露莫拉之家是什么？"}]
    log(store, "chatcmpl-zh", "一个水壶。", messages=q)
    store.add_correction("chatcmpl-zh", "露莫拉之家是一盏智能灯。")
    out = ex.write_jsonl(ex.build(store, "dpo").rows, tmp_path / "zh.jsonl")
    text = out.read_text(encoding="utf-8")
    assert "露莫拉之家是一盏智能灯。" in text and "\\u" not in text  # UTF-8 as is, not \u escapes
    assert json.loads(text)["input"]["messages"] == q


def test_write_jsonl_is_atomic_and_readable(tmp_path):
    out = ex.write_jsonl([{"a": "é"}], tmp_path / "x" / "out.jsonl")
    assert json.loads(out.read_text(encoding="utf-8")) == {"a": "é"}
    assert [p.name for p in out.parent.iterdir()] == ["out.jsonl"]


def test_a_failed_write_is_a_clear_error_and_leaves_nothing(store):
    log(store, "chatcmpl-a", "A smart lamp.")
    with pytest.raises(ChatforgeError, match="cannot write to the store .*UNIQUE") as e:
        log(store, "chatcmpl-a", "The same id again.")
    assert e.value.exit_code == 1 and store.completion("chatcmpl-a")["answer"] == "A smart lamp."
    assert store.counts()["completions"] == 1 and store.integrity() == "ok"


def test_a_lock_sqlite_does_not_wait_for_is_waited_for(tmp_path, monkeypatch):
    """Several processes turning a new store into WAL mode at once can get "database is locked" straight away
    (SQLite's busy wait does not cover it): opening retries instead of calling the store damaged; a lock that
    never goes is a clear error, not "damaged"."""
    from chatforge.store import db as store_db

    failures = {"left": 2}

    class Flaky(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.startswith("PRAGMA journal_mode") and failures["left"]:
                failures["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return super().execute(sql, *args)

    connect = sqlite3.connect
    monkeypatch.setattr(store_db.sqlite3, "connect", lambda *a, **kw: connect(*a, factory=Flaky, **kw))
    with Store(tmp_path / "a.db") as s:
        assert failures["left"] == 0 and s.version == len(MIGRATIONS)
    failures["left"] = 10**9
    monkeypatch.setattr(store_db.time, "monotonic", iter(range(0, 10**6, 20)).__next__)  # 20 s per try
    with pytest.raises(ChatforgeError, match="stayed locked by another process"):
        Store(tmp_path / "b.db")


def test_stats_count_feedback_as_export_uses_it(store):
    """A re-rated completion counts with its latest rating, a pick given twice once, and a pair voted both ways
    in neither column: the README's rule, and what export writes."""
    log(store, "chatcmpl-a", "A smart lamp.")
    log(store, "chatcmpl-b", "A kettle.")
    log(store, "chatcmpl-c", "Hi there.", messages=[{"role": "user", "content": "Hello"}])
    log(store, "chatcmpl-d", "Go away.", messages=[{"role": "user", "content": "Hello"}])
    store.add_rating("chatcmpl-a", "up")
    store.add_rating("chatcmpl-a", "down")  # changed their mind: down counts, up no longer
    store.add_rating("chatcmpl-b", "down")
    store.add_pair("chatcmpl-a", "chatcmpl-b")
    store.add_pair("chatcmpl-a", "chatcmpl-b")  # the same pick again: once
    store.add_pair("chatcmpl-c", "chatcmpl-d")
    store.add_pair("chatcmpl-d", "chatcmpl-c")  # contradicts it: neither
    row = ex.stats(store)["tiny"]
    assert (row["up"], row["down"], row["chosen"], row["rejected"]) == (0, 2, 1, 1)
    assert len(ex.build(store, "kto").rows) == 2 and len(ex.build(store, "dpo").rows) == 1  # the same feedback
    assert ex.stats(store, since=4102444800)["tiny"]["down"] == 0  # 2100-01-01: nothing that recent


def test_export_says_which_row_format_it_wrote(store):
    """OpenAI has no unpaired format: kto rows are TRL's whatever --style says, and the export says so."""
    log(store, "chatcmpl-a", "A smart lamp.")
    store.add_rating("chatcmpl-a", "up")
    kto = ex.build(store, "kto", style="openai")
    assert set(kto.rows[0]) == {"prompt", "completion", "label"} and kto.style.startswith("TRL style")
    assert "OpenAI has no unpaired format" in kto.style
    assert ex.build(store, "dpo", style="trl").style == "trl style"
    assert ex.build(store, "sft", style="trl").style.startswith("OpenAI chat style")


def test_known_model_matches_names_paths_and_fingerprints_of_the_store(store, weights):
    fingerprint = store.model(store.mid)["fingerprint"]
    for model in ("tiny", str(weights), fingerprint[:8]):
        assert ex.known_model(store, model), model
    for model in ("runs/nonexistent", "tin", fingerprint[:4]):
        assert not ex.known_model(store, model), model
