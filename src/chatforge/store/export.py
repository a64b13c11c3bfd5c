"""Feedback -> training rows: DPO pairs, KTO rows, SFT rows, in formats other tools read.

    dpo  from chosen/rejected picks, arena votes (left or right) and corrections (the correction > the answer)
    kto  from thumbs: (prompt, completion, label)
    sft  from corrections and thumbs-up answers

Styles: "openai" (default) writes OpenAI's preference fine-tuning JSONL for dpo
({"input": {"messages"}, "preferred_output": [...], "non_preferred_output": [...]}); "trl" writes TRL's
conversational {"prompt", "chosen", "rejected"}. OpenAI has no unpaired format, so kto rows are TRL's
conversational {"prompt", "completion", "label"} in both styles; sft rows are OpenAI chat {"messages"} in both.
The same feedback given twice is exported once and reported as a duplicate; feedback that contradicts itself
(one pair voted both ways, one answer rated up and down in different completions) is reported and not exported
at all; a completion rated again counts with its latest rating (the vote was changed). A row with an
empty answer (or an empty turn in its conversation) is left out and reported: training data refuses those. So is
feedback on a raw text completion (/v1/completions): it has a text prompt, not the messages the rows need.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from chatforge.errors import ChatforgeError
from chatforge.store.db import Store, digest

KINDS = ("dpo", "kto", "sft")
STYLES = ("openai", "trl")


@dataclass
class Export:
    kind: str
    rows: list[dict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # one line per duplicated item
    contradictions: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # rows left out: an empty answer, or an empty turn before it
    text_only: list[str] = field(default_factory=list)  # feedback on raw text completions (no messages): left out
    considered: int = 0  # feedback records that matched --model / --since
    style: str = ""  # the row format actually written (kto and sft rows have one format whatever --style says)


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def matches(completion: dict, model: str | None) -> bool:
    """Did `model` (a name as served, a path, a run directory or a fingerprint prefix) answer this?"""
    if model is None:
        return True
    if model in (completion["model"],) or (len(model) >= 8 and completion["fingerprint"].startswith(model)):
        return True
    p = Path(model).expanduser()
    if not p.exists():
        return False
    p = p.resolve()
    for where in (completion.get("model_path"), completion.get("model_adapter")):
        if where and (Path(where) == p or p in Path(where).parents):
            return True
    return False


def known_model(store: Store, model: str) -> bool:
    """Does `model` (as `matches` reads it) name any model in the store? (Else --model is a typo, not "no
    feedback yet".)"""
    return any(matches({"model": m["name"], "fingerprint": m["fingerprint"], "model_path": m["path"],
                        "model_adapter": m["adapter"]}, model) for m in store.models())


# what each kind writes for each --style: OpenAI has no unpaired format, and sft rows are chat rows in both
WRITTEN = {"dpo": {"openai": "openai style", "trl": "trl style"},
           "kto": {"openai": "TRL style: OpenAI has no unpaired format", "trl": "trl style"},
           "sft": {"openai": "openai style", "trl": "OpenAI chat style: TRL reads it too"}}


def build(store: Store, kind: str, *, style: str = "openai", model: str | None = None,
          since: float | None = None) -> Export:
    if kind not in KINDS:
        raise ChatforgeError(f"--as {kind}: use one of {', '.join(KINDS)}")
    if style not in STYLES:
        raise ChatforgeError(f"--style {style}: use one of {', '.join(STYLES)}")
    get = _reader(store)
    out = Export(kind, style=WRITTEN[kind][style])
    records = _chat_only(out, store.list_feedback(limit=None, since=since), get, model, _SOURCES[kind])
    if kind == "dpo":
        _pairs(out, records, get, model, style)
    elif kind == "kto":
        _thumbs(out, records, get, model)
    else:
        _sft(out, records, get, model)
    rows, out.rows = out.rows, []
    for row in rows:
        texts = _texts(row)
        if all(t.strip() for t in texts):
            out.rows.append(row)
        else:
            out.empty.append(f"a {kind} row for the prompt {_short(_prompt(row))} has an empty answer or turn: "
                             "left out")
    return out


_SOURCES = {"dpo": ("pair", "vote", "correction"), "kto": ("rating",), "sft": ("rating", "correction")}


def _chat_only(out: Export, records: list[dict], get, model, kinds: tuple[str, ...]) -> list[dict]:
    """The records about chat completions; feedback of `kinds` on raw text completions (/v1/completions, a text
    prompt and no messages) is reported in out.text_only: chat and preference training rows need messages."""
    kept = []
    for r in records:
        ids = [r[k] for k in ("completion_id", "chosen_id", "rejected_id") if r.get(k)]
        raw = [get(i) for i in ids if get(i).get("prompt") is not None]
        if not raw:
            kept.append(r)
        elif r["kind"] in kinds and any(matches(c, model) for c in raw):
            out.text_only.append(f"feedback #{r['id']} is about a raw text completion (/v1/completions, no chat "
                                 "messages): left out")
    return kept


def _prompt(row: dict) -> list[dict]:
    return row.get("prompt") or row.get("input", {}).get("messages") or row.get("messages", [])


def _texts(row: dict) -> list[str]:
    """Every message text of a row: its conversation and its answers."""
    msgs = list(_prompt(row))
    for key in ("preferred_output", "non_preferred_output", "chosen", "rejected", "completion"):
        msgs += row.get(key, [])
    return [m["content"] for m in msgs if m["role"] != "system"]


def _preferences(records, get, model) -> dict[tuple, dict]:
    """(prompt, preferred answer, other answer) -> {"prompt", "records"}: the picks, arena votes (left or right)
    and corrections saying so about `model`'s answers, in the order given."""
    groups: dict[tuple, dict] = {}
    for r in records:
        if r["kind"] in ("pair", "vote") and r["chosen_id"]:
            chosen, rejected = get(r["chosen_id"]), get(r["rejected_id"])
            if not (matches(chosen, model) or matches(rejected, model)):
                continue
            about, good, bad = chosen, chosen["answer"], rejected["answer"]
        elif r["kind"] == "correction":
            about = get(r["completion_id"])
            if not matches(about, model):
                continue
            good, bad = r["correction"], about["answer"]
        else:
            continue
        # a raw text completion has no messages: its text prompt keys it (stats counts those too)
        key = (digest(about["messages"] if about.get("prompt") is None else {"prompt": about["prompt"]}), good, bad)
        groups.setdefault(key, {"prompt": about["messages"], "records": []})["records"].append(r)
    return groups


def _flipped(key: tuple) -> tuple:
    return (key[0], key[2], key[1])


def _usable(key: tuple, groups: dict[tuple, dict]) -> bool:
    """Is this a pair export writes: two different answers, and not contradicted (the same pair voted both ways)?"""
    return key[1] != key[2] and _flipped(key) not in groups


def _pairs(out: Export, records, get, model, style) -> None:
    groups = _preferences(records, get, model)
    for key, group in groups.items():
        out.considered += len(group["records"])
        ids = [r["id"] for r in group["records"]]
        if _flipped(key) in groups:
            if key[1] < key[2]:  # report each contradicting pair once
                flipped = [r["id"] for r in groups[_flipped(key)]["records"]]
                out.contradictions.append(f"feedback {_ids(ids)} prefers one answer and {_ids(flipped)} the "
                                          f"other, for the same prompt {_short(group['prompt'])}: neither exported")
            continue
        if not _usable(key, groups):
            continue
        if len(ids) > 1:
            out.duplicates.append(f"feedback {_ids(ids)}: the same pair {len(ids)} times (exported once)")
        prompt, good, bad = group["prompt"], key[1], key[2]
        if style == "openai":
            out.rows.append({"input": {"messages": prompt}, "preferred_output": _assistant(good),
                             "non_preferred_output": _assistant(bad)})
        else:
            out.rows.append({"prompt": prompt, "chosen": _assistant(good), "rejected": _assistant(bad)})


def _ratings(out: Export, records, get, model) -> dict[tuple, dict]:
    """(prompt, answer) -> {"prompt", "answer", "up": [ids], "down": [ids]} of the rated answers."""
    rated: dict[tuple, dict] = {}
    latest, changed = _latest_ratings(records)  # up and down from different completions still contradict
    if changed:
        out.duplicates.append(f"feedback {_ids(changed)}: replaced by a later rating of the same completion")
    for r in latest:
        c = get(r["completion_id"])
        if not matches(c, model):
            continue
        out.considered += 1
        item = rated.setdefault((digest(c["messages"]), c["answer"]),
                                {"prompt": c["messages"], "answer": c["answer"], "up": [], "down": []})
        item[r["rating"]].append(r["id"])
    for item in rated.values():
        if item["up"] and item["down"]:
            out.contradictions.append(f"feedback {_ids(item['up'])} rates an answer up and {_ids(item['down'])} "
                                      f"down, for the prompt {_short(item['prompt'])}: not exported")
        elif len(item["up"] + item["down"]) > 1:
            ids = item["up"] + item["down"]
            out.duplicates.append(f"feedback {_ids(ids)}: the same rating {len(ids)} times (exported once)")
    return {k: v for k, v in rated.items() if not (v["up"] and v["down"])}


def _latest_ratings(records) -> tuple[list[dict], list[int]]:
    """Each rated completion's latest rating record, and the ids of the earlier ratings they replaced: a person
    who rates the same answer again changed their mind (records come in the order given)."""
    latest = {r["completion_id"]: r for r in records if r["kind"] == "rating"}
    changed = [r["id"] for r in records if r["kind"] == "rating" and latest[r["completion_id"]] is not r]
    return list(latest.values()), changed


def _thumbs(out: Export, records, get, model) -> None:
    for item in _ratings(out, records, get, model).values():
        out.rows.append({"prompt": item["prompt"], "completion": _assistant(item["answer"]),
                         "label": bool(item["up"])})


def _sft(out: Export, records, get, model) -> None:
    rows: dict[tuple, dict] = {}
    for item in _ratings(out, records, get, model).values():
        if item["up"]:
            rows[(digest(item["prompt"]), item["answer"])] = {"messages": item["prompt"] + _assistant(item["answer"])}
    corrected: dict[tuple, list[int]] = {}
    for r in records:
        if r["kind"] != "correction":
            continue
        c = get(r["completion_id"])
        if not matches(c, model):
            continue
        out.considered += 1
        key = (digest(c["messages"]), r["correction"])
        corrected.setdefault(key, []).append(r["id"])
        rows[key] = {"messages": c["messages"] + _assistant(r["correction"])}
    for ids in corrected.values():
        if len(ids) > 1:
            out.duplicates.append(f"feedback {_ids(ids)}: the same correction {len(ids)} times (exported once)")
    out.rows.extend(rows.values())


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids)


def _short(messages: list[dict]) -> str:
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return json.dumps(last[:60] + ("…" if len(last) > 60 else ""), ensure_ascii=False)


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write rows as JSON Lines atomically: a temporary file renamed into place (never half a file)."""
    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ChatforgeError(f"{path}: cannot write ({e.strerror or e})", exit_code=1) from None
    return path


def stats(store: Store, *, since: float | None = None) -> dict:
    """Counts per model, and for arena votes each model's win rate (ties count half) with a 95% Wilson interval."""
    per: dict[str, dict] = {}
    for m in store.models():
        per.setdefault(m["name"], {"completions": 0, "up": 0, "down": 0, "corrections": 0, "chosen": 0,
                                   "rejected": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0})
        per[m["name"]]["completions"] += m["completions"]
    records = store.list_feedback(limit=None, since=since)
    get = _reader(store)

    def model_of(cid: str) -> str:
        return get(cid)["model"]

    # export's rules, so that the counts are of the feedback export uses: a completion's latest rating, a pick
    # given twice once, a pair voted both ways in neither column
    for r in _latest_ratings(records)[0]:
        per[model_of(r["completion_id"])][r["rating"]] += 1
    for r in records:
        if r["kind"] == "correction":
            per[model_of(r["completion_id"])]["corrections"] += 1
    groups = _preferences(records, get, None)
    for key, group in groups.items():
        pick = next((r for r in group["records"] if r["kind"] == "pair"), None)
        if pick and _usable(key, groups):
            per[model_of(pick["chosen_id"])]["chosen"] += 1
            per[model_of(pick["rejected_id"])]["rejected"] += 1
    for r in records:
        if r["kind"] == "vote":
            left, right = r["left"]["model"], r["right"]["model"]
            if r["vote"] in ("tie", "both_bad"):
                for name in (left, right):
                    per[name]["ties" if r["vote"] == "tie" else "both_bad"] += 1
            else:
                win, lose = (left, right) if r["vote"] == "left" else (right, left)
                per[win]["wins"] += 1
                per[lose]["losses"] += 1
    for row in per.values():
        games = row["wins"] + row["losses"] + row["ties"]
        row["win_rate"] = row["ci95"] = None
        if games:
            score = row["wins"] + row["ties"] / 2
            row["win_rate"] = score / games
            row["ci95"] = list(wilson(score, games))
    return per


def _reader(store: Store):
    """fn(completion id) -> the completion with its model's path and adapter (what `matches` reads), each read
    from the store once (feedback refers to some completions many times)."""
    cache: dict[str, dict] = {}

    def get(cid: str) -> dict:
        if cid not in cache:
            c = store.completion(cid)
            m = store.model(c["model_id"])
            cache[cid] = dict(c, model_path=m.get("path"), model_adapter=m.get("adapter"))
        return cache[cid]

    return get


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (good at small n and near 0 or 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
