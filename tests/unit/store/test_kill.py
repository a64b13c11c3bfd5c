"""Nothing is lost: kill -9 a real `chatforge serve` process while completions and feedback are being written;
every record the server acknowledged is in the store afterwards, and the database passes integrity_check."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx


def _start(tiny_model, other, db):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "chatforge", "serve", str(tiny_model), "--port", "0",
                             "--store", str(db), "--max-tokens", "4", "--compare", str(other)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    for line in proc.stdout:  # the banner, up to its log line
        seen.append(line)
        if line.startswith("  log:"):
            break
    banner = "".join(seen)
    url = re.search(r"at (http://127\.0\.0\.1:\d+)", banner)
    assert url, banner
    assert f"log:      {db}" in banner, banner
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    return proc, url.group(1)


def test_kill_9_while_writing_loses_no_acknowledged_record(tiny_model, tiny_gpt2, tmp_path):
    """`chatforge serve MODEL --compare OTHER --store DB`: chat completions (streamed and not), ratings, arena
    battles and votes from 5 clients at once, then SIGKILL."""
    db = tmp_path / "chatforge.db"
    proc, url = _start(tiny_model, tiny_gpt2, db)
    acked_votes: dict[int, tuple[str, str]] = {}  # feedback id -> (battle id, vote)
    acked_completions: dict[str, str] = {}  # id -> answer, as the client received them
    acked_feedback: dict[int, str] = {}  # feedback id -> completion id
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int):
        with httpx.Client(base_url=url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = http.post("/v1/chat/completions", json={
                        "messages": [{"role": "user", "content": f"client {n} question {i}"}],
                        "temperature": 1.0, "stream": i % 2 == 0})
                    if r.status_code != 200:
                        continue
                    if i % 2 == 0:  # streamed: the id is in every chunk, the answer in the deltas
                        import json

                        chunks = [json.loads(x[6:]) for x in r.text.split("\n") if x.startswith("data: {")]
                        if not r.text.rstrip().endswith("[DONE]"):
                            continue
                        cid = chunks[0]["id"]
                        answer = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
                    else:
                        cid, answer = r.json()["id"], r.json()["choices"][0]["message"]["content"]
                    with lock:
                        acked_completions[cid] = answer
                    f = http.post("/v1/feedback", json={"completion_id": cid, "rating": "up" if i % 3 else "down"})
                    if f.status_code == 200:
                        with lock:
                            acked_feedback[f.json()["id"]] = cid
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        return

    def arena():
        with httpx.Client(base_url=url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    b = http.post("/v1/arena", json={"messages": [{"role": "user", "content": f"arena {i}"}]})
                    if b.status_code != 200:
                        continue
                    vote = ("left", "right", "tie", "both_bad")[i % 4]
                    v = http.post("/v1/feedback", json={"battle_id": b.json()["id"], "vote": vote})
                    if v.status_code == 200:
                        with lock:
                            acked_votes[v.json()["id"]] = (b.json()["id"], vote)
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        return

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)] + [threading.Thread(target=arena)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (len(acked_feedback) < 12 or len(acked_votes) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked_feedback) >= 12 and len(acked_votes) >= 2, "the server acknowledged too little to test"
        os.kill(proc.pid, signal.SIGKILL)  # mid-traffic: requests and feedback are in flight
        proc.wait(10)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    raw = sqlite3.connect(db)  # a plain SQLite client recovers the WAL and finds a sound database
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    from chatforge.store import Store

    with Store(db) as store:
        for cid, answer in acked_completions.items():
            kept = store.completion(cid)
            assert kept is not None, f"acknowledged completion {cid} was lost"
            assert kept["answer"] == answer
        records = {r["id"]: r for r in store.list_feedback(limit=None)}
        for fid, cid in acked_feedback.items():
            assert fid in records and records[fid]["completion_id"] == cid, f"acknowledged feedback {fid} was lost"
        for fid, (battle, vote) in acked_votes.items():
            assert records[fid]["battle_id"] == battle and records[fid]["vote"] == vote
            assert {records[fid]["left"]["model"], records[fid]["right"]["model"]} == {str(tiny_model),
                                                                                      str(tiny_gpt2)}
        for r in records.values():  # nothing half-written: every stored record points at stored completions
            for key in ("completion_id", "chosen_id", "rejected_id"):
                assert r[key] is None or store.completion(r[key]) is not None
        assert store.integrity() == "ok"
