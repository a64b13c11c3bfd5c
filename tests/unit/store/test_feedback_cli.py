"""`chatforge chat` keeps its exchanges and takes /good /bad /fix; `chatforge feedback list | stats | export`
reads them back; the exported files are read by `chatforge check` (SFT) or carry the documented keys."""

import json
import os
import subprocess
import sys

import pytest

from chatforge.store import Store

CHATFORGE = [sys.executable, "-m", "chatforge"]


@pytest.fixture(scope="module")
def chatted(tiny_model, tmp_path_factory):
    """A store written by a real `chatforge chat` process with piped input."""
    db = tmp_path_factory.mktemp("chat") / "chatforge.db"
    stdin = "/good\nHi\n/good\nWho are you?\n/fix I am the Lumora assistant.\nAnd then?\n/bad\n/exit\n"
    p = subprocess.run(CHATFORGE + ["chat", str(tiny_model), "--max-tokens", "4", "--store", str(db),
                                    "--temperature", "1", "--seed", "5"],  # sampled: no empty answers
                       input=stdin, text=True, capture_output=True, env=os.environ.copy(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "no answer to rate yet" in p.stderr and "correction #" in p.stderr and "rated down" in p.stderr
    return db


def test_chat_keeps_every_exchange_and_its_feedback(chatted, tiny_model):
    with Store(chatted) as store:
        done = store.completions()
        assert [c["messages"][-1]["content"] for c in done] == ["Hi", "Who are you?", "And then?"]
        assert all(c["answer"].strip() for c in done)
        assert len({c["conversation_id"] for c in done}) == 1 and {c["source"] for c in done} == {"chat"}
        assert done[0]["model"] == str(tiny_model) and done[0]["sampling"]["max_tokens"] == 4
        # /fix replaced the answer: the next turn was asked with the correction in the conversation
        assert done[2]["messages"][-2] == {"role": "assistant", "content": "I am the Lumora assistant."}
        fb = store.list_feedback(limit=None)
        assert [(f["kind"], f["completion_id"]) for f in fb] == [
            ("rating", done[0]["id"]), ("correction", done[1]["id"]), ("rating", done[2]["id"])]
        assert [f["rating"] for f in fb] == ["up", None, "down"]


def test_chat_with_no_log_keeps_nothing(tiny_model, tmp_path, run_cli, monkeypatch):
    import io

    db = tmp_path / "none.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n/good\n"))
    code, _, err = run_cli("chat", tiny_model, "--max-tokens", "2", "--store", db, "--no-log")
    assert code == 0 and "--no-log" in err and not db.exists()


def test_feedback_list_stats_and_export_read_back_by_check(chatted, run_cli, tmp_path, tiny_model):
    code, out, err = run_cli("feedback", "list", "--store", chatted)
    assert code == 0 and out.count("\n") == 3 and "👍" in out and "correction of" in out and "👎" in out
    code, out, _ = run_cli("feedback", "list", "--store", chatted, "--json", "--limit", "1")
    assert code == 0 and [r["rating"] for r in json.loads(out)] == ["down"]
    code, out, _ = run_cli("feedback", "stats", "--store", chatted)
    assert code == 0 and out.startswith("model") and f"{tiny_model}  " in out and "arena win rate" in out
    code, out, _ = run_cli("feedback", "stats", "--store", chatted, "--json")
    s = json.loads(out)[str(tiny_model)]
    assert (s["completions"], s["up"], s["down"], s["corrections"]) == (3, 1, 1, 1)

    sft = tmp_path / "sft.jsonl"
    code, out, err = run_cli("feedback", "export", "--as", "sft", "--out", sft, "--store", chatted)
    assert code == 0 and "wrote 2 sft rows" in out, err
    rows = [json.loads(x) for x in sft.read_text().splitlines()]
    assert rows[-1]["messages"][-1] == {"role": "assistant", "content": "I am the Lumora assistant."}
    code, out, err = run_cli("check", sft, "--model", tiny_model, "--no-estimate")
    assert code == 0 and "2 rows, format openai" in out, out + err

    dpo = tmp_path / "dpo.jsonl"
    code, out, _ = run_cli("feedback", "export", "--as", "dpo", "--out", dpo, "--store", chatted)
    row = json.loads(dpo.read_text())
    assert code == 0 and set(row) == {"input", "preferred_output", "non_preferred_output"}
    assert row["preferred_output"] == [{"role": "assistant", "content": "I am the Lumora assistant."}]
    assert row["input"]["messages"][-1] == {"role": "user", "content": "Who are you?"}
    code, _, _ = run_cli("feedback", "export", "--as", "dpo", "--style", "trl", "--out", dpo, "--store", chatted)
    assert code == 0 and set(json.loads(dpo.read_text())) == {"prompt", "chosen", "rejected"}
    kto = tmp_path / "kto.jsonl"
    code, _, _ = run_cli("feedback", "export", "--as", "kto", "--out", kto, "--store", chatted)
    rows = [json.loads(x) for x in kto.read_text().splitlines()]
    assert code == 0 and [r["label"] for r in rows] == [True, False]
    assert all(set(r) == {"prompt", "completion", "label"} for r in rows)

    code, _, err = run_cli("feedback", "export", "--as", "dpo", "--out", tmp_path / "x.jsonl", "--store", chatted,
                           "--model", "someone-else")  # no such model: a typo is bad input, not "no feedback"
    assert code == 2 and "--model someone-else: no such model" in err and str(tiny_model) in err
    assert not (tmp_path / "x.jsonl").exists()
    code, _, err = run_cli("feedback", "export", "--as", "dpo", "--out", tmp_path / "x.jsonl", "--store", chatted,
                           "--model", str(tiny_model), "--since", "2100-01-01")  # a known model, no feedback yet
    assert code == 1 and "nothing to export as dpo: 0 matching feedback records" in err
    assert not (tmp_path / "x.jsonl").exists()
    code, _, err = run_cli("feedback", "export", "--as", "dpo", "--out", dpo, "--store", chatted, "--since", "nope")
    assert code == 2 and "--since nope: not a date" in err


def test_changed_and_repeated_ratings_are_reported_by_export(chatted, run_cli, tmp_path):
    with Store(chatted) as store:
        first = store.completions()[0]["id"]
        store.add_rating(first, "down")  # it was rated up before: the vote was changed, the latest counts
        store.add_rating(store.completions()[2]["id"], "down")  # rated down twice: counted once
    code, out, err = run_cli("feedback", "export", "--as", "kto", "--out", tmp_path / "k.jsonl", "--store", chatted)
    assert code == 0 and "duplicate: feedback #1, #3: replaced by a later rating of the same completion" in err
    assert "contradiction" not in err and "1 duplicate merged, 0 contradictions left out" in out
    assert [json.loads(x)["label"] for x in (tmp_path / "k.jsonl").read_text().splitlines()] == [False, False]


def test_a_store_from_a_newer_chatforge_is_a_clear_cli_error(run_cli, tmp_path):
    import sqlite3

    db = tmp_path / "future.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    code, _, err = run_cli("feedback", "stats", "--store", db)
    assert code == 2 and "schema version 99" in err and "Traceback" not in err


@pytest.mark.parametrize("kind,style,fmt", [("dpo", "openai", "openai_preference"), ("dpo", "trl", "trl_paired"),
                                            ("kto", "openai", "trl_unpaired")])
def test_preference_exports_are_read_by_check(run_cli, tmp_path, tiny_model, kind, style, fmt):
    pytest.importorskip("chatforge.data.preference", reason="the data layer does not read preference files yet")
    q = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is Lumora Home?"}]
    with Store(tmp_path / "s.db") as store:
        mid = store.register_model("tiny", tiny_model)
        for cid, answer in (("chatcmpl-a", "A smart lamp."), ("chatcmpl-b", "A kettle.")):
            store.log_completion(id=cid, model_id=mid, messages=q, answer=answer, finish_reason="stop", sampling={},
                                 prompt_tokens=9, completion_tokens=4, latency_s=0.1, source="test")
        store.add_pair("chatcmpl-a", "chatcmpl-b")
        store.add_correction("chatcmpl-b", "Lumora Home is a smart lamp.")
        store.add_rating("chatcmpl-a", "up")
        store.add_rating("chatcmpl-b", "down")
    out_file = tmp_path / f"{kind}.jsonl"
    code, _, err = run_cli("feedback", "export", "--as", kind, "--style", style, "--out", out_file,
                           "--store", tmp_path / "s.db")
    assert code == 0, err
    code, out, err = run_cli("check", out_file, "--model", tiny_model, "--no-estimate")
    assert code == 0 and f"2 rows, format {fmt}" in out and "0 errors, 0 warnings" in out, out + err
