#!/usr/bin/env python3
"""Generate the bundled tool-calling example data: the Lumora Home assistant with two tools.

    get_order_status(order_id)          an order's status and delivery date
    get_device_status(device, home_id)  whether a Lumora device in a home is online, its battery

Everything (the company, order numbers, homes, phrasings, answers) is fictional and was written for chatforge.

Outputs (OpenAI chat format with a "tools" list, one JSON object per line, UTF-8):
  examples/data/lumora_tools_train.jsonl    full conversations: request -> call -> result -> answer,
                                            questions that need no tool, requests missing the order
                                            number or home ID (the assistant asks instead of calling),
                                            and some conversations without tools at all
  examples/data/lumora_tools_heldout.jsonl  new phrasings, order numbers and homes, each conversation ending
                                            at the assistant's decision (a call, or an answer without one)

Deterministic, standard library only: running it again rewrites both files byte-identically.

Usage:
    python examples/make_tool_data.py
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_PATH = DATA_DIR / "lumora_tools_train.jsonl"
HELDOUT_PATH = DATA_DIR / "lumora_tools_heldout.jsonl"

SYSTEM = "You are Lumora Home's support assistant. Use the tools to look up orders and devices."
TOOLS = [
    {"type": "function", "function": {
        "name": "get_order_status", "description": "Status of a Lumora order",
        "parameters": {"type": "object", "properties": {
            "order_id": {"type": "string"}},
            "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "get_device_status", "description": "Status of a Lumora device in a home",
        "parameters": {"type": "object", "properties": {
            "device": {"type": "string", "enum": ["Halo", "Dash", "Keystone", "Bridge"]},
            "home_id": {"type": "string"}},
            "required": ["device", "home_id"]}}},
]
DEVICES = ["Halo", "Dash", "Keystone", "Bridge"]

ORDER_TRAIN = [
    "Where is my order {id}?", "Can you check order {id} for me?", "what's the status of {id}",
    "Has order {id} shipped yet?", "I ordered a Halo, order number {id}. When will it arrive?",
    "Track {id} please", "Any update on my order {id}?", "my order number is {id}, where is it",
    "Is {id} delivered?", "Could you look up order {id}?", "When does order {id} arrive?", "Status of order {id}?",
]
ORDER_HELDOUT = [
    "I'd like to know where package {id} is.", "Please find out what happened to order {id}.",
    "order {id} - has it left the warehouse?", "Can you tell me the delivery date for {id}?",
]
DEVICE_TRAIN = [
    "Is my {device} online? My home ID is {home}.", "Check the {device} in home {home}",
    "What's the battery of my {device}? Home {home}.", "my {device} isn't responding, home id {home}",
    "Can you see if the {device} at {home} is working?", "Status of {device} for home {home}?",
    "Is the {device} in {home} connected?", "Home {home}: how is my {device} doing?",
]
DEVICE_HELDOUT = [
    "Could you run a check on the {device} registered to home {home}?",
    "{device} problems again. Home is {home}, can you look?",
    "Please tell me whether my {device} (home {home}) is up.", "I want a status report for the {device}, home {home}.",
]
# Questions that need no tool: (question, answer). The last few are held out.
NO_TOOL = [
    ("What are your support hours?", "Lumora support is open Monday to Saturday, 8:00 to 20:00 CET."),
    ("How long is the Halo warranty?", "The Lumora Halo has a 2-year warranty."),
    ("Do you ship to Canada?", "Yes, Lumora ships to the EU, the UK, Norway, Switzerland and Canada."),
    ("How do I return a product?", "Start a return in the Lumora Hub app under Orders > Return within 30 days."),
    ("What is Lumora Care+?", "Lumora Care+ is our subscription with 24/7 chat support and extended warranty."),
    ("How much does the Bridge cost?", "The Lumora Bridge costs €59."),
    ("Can I pay with PayPal?", "Yes, Lumora accepts cards, PayPal and bank transfer."),
    ("What is your support email?", "You can email help@lumorahome.com; we reply within one business day."),
    ("Thanks, that's all!", "You're welcome! Have a nice day."),
    ("Hi there", "Hello! How can I help you with your Lumora order or devices today?"),
    ("Does the Dash work with carpets?", "Yes, the Lumora Dash raises its suction on carpets automatically."),
    ("How do I reset the Keystone?", "Hold the Keystone's reset button for 10 seconds until the light blinks."),
    ("Is there a phone number?", "Call Lumora support on +351 800 555 210 during opening hours."),
    ("What does the blue ring on the Halo mean?", "A blue ring means the Halo is cooling."),
    ("Who makes the Lumora devices?", "Lumora Home designs them in Porto, Portugal."),
    ("Can I change my delivery address?", "Yes, before the order ships: open Orders in the Lumora Hub app."),
    ("Is the Keystone waterproof?", "The Keystone is rated IP54: it resists rain and dust."),
    ("Which app do I need?", "Use the free Lumora Hub app for iOS and Android."),
    ("Where are you based?", "Lumora Home is headquartered in Porto, Portugal."),
    ("How long does the Dash battery last?", "The Lumora Dash runs for up to 120 minutes per charge."),
]
NO_TOOL_HELDOUT = [
    ("When can I reach your support team?", "Lumora support is open Monday to Saturday, 8:00 to 20:00 CET."),
    ("What's the warranty period for the Halo?", "The Lumora Halo has a 2-year warranty."),
    ("Is PayPal accepted?", "Yes, Lumora accepts cards, PayPal and bank transfer."),
    ("Do I need an app for my devices?", "Use the free Lumora Hub app for iOS and Android."),
    ("How can I send something back?", "Start a return in the Lumora Hub app under Orders > Return within 30 days."),
    ("Hello!", "Hello! How can I help you with your Lumora order or devices today?"),
]
# Requests missing what the tool needs: the assistant asks instead of calling.
MISSING = [
    ("Where is my order?", "I can check that. What is your order number? It starts with LM-."),
    ("Has my package shipped?", "I can check that. What is your order number? It starts with LM-."),
    ("track my order pls", "I can check that. What is your order number? It starts with LM-."),
    ("Is my Halo online?", "I can check that. What is your home ID? It starts with H-."),
    ("My Dash stopped working, can you check it?", "I can check that. What is your home ID? It starts with H-."),
    ("Can you see if my Keystone is connected?", "I can check that. What is your home ID? It starts with H-."),
]
MISSING_HELDOUT = [
    ("When will my delivery come?", "I can check that. What is your order number? It starts with LM-."),
    ("Is my Bridge working?", "I can check that. What is your home ID? It starts with H-."),
]
ORDER_STATES = [("shipped", "Your order {id} has shipped and should arrive on {eta}."),
                ("processing", "Your order {id} is being prepared; it should ship soon and arrive on {eta}."),
                ("delivered", "Your order {id} was delivered on {eta}."),
                ("out_for_delivery", "Your order {id} is out for delivery and arrives today, {eta}.")]


def _order_id(rng: random.Random, used: set[str]) -> str:
    while True:
        oid = f"LM-{rng.randint(10000, 99999)}"
        if oid not in used:
            used.add(oid)
            return oid


def _home_id(rng: random.Random, used: set[str]) -> str:
    while True:
        hid = f"H-{rng.randint(1000, 9999)}"
        if hid not in used:
            used.add(hid)
            return hid


def _call(cid: str, name: str, args: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


def _order_conversation(rng, question: str, oid: str, full: bool) -> list[dict]:
    msgs = [{"role": "user", "content": question.format(id=oid)},
            _call("call_1", "get_order_status", {"order_id": oid})]
    if full:
        state, answer = rng.choice(ORDER_STATES)
        eta = f"2026-12-{rng.randint(2, 28):02d}"
        msgs += [{"role": "tool", "tool_call_id": "call_1",
                  "content": json.dumps({"order_id": oid, "status": state, "date": eta})},
                 {"role": "assistant", "content": answer.format(id=oid, eta=eta)}]
    return msgs


def _device_conversation(rng, question: str, device: str, home: str, full: bool) -> list[dict]:
    msgs = [{"role": "user", "content": question.format(device=device, home=home)},
            _call("call_1", "get_device_status", {"device": device, "home_id": home})]
    if full:
        online, battery = rng.random() < 0.75, rng.randint(12, 100)
        result = {"device": device, "home_id": home, "online": online, "battery": battery}
        answer = (f"Your {device} in home {home} is online, with {battery}% battery." if online else
                  f"Your {device} in home {home} is offline. Check its power and Wi-Fi, then restart it.")
        msgs += [{"role": "tool", "tool_call_id": "call_1", "content": json.dumps(result)},
                 {"role": "assistant", "content": answer}]
    return msgs


def _row(messages: list[dict], tools: bool = True) -> dict:
    row = {"messages": [{"role": "system", "content": SYSTEM}] + messages}
    return row | {"tools": TOOLS} if tools else row


def build() -> tuple[list[dict], list[dict]]:
    rng = random.Random(16)
    orders, homes = set(), set()
    train: list[dict] = []
    for q in ORDER_TRAIN:
        for _ in range(9):
            train.append(_row(_order_conversation(rng, q, _order_id(rng, orders), full=True)))
    for q in DEVICE_TRAIN:
        for device in DEVICES:
            for _ in range(3):
                train.append(_row(_device_conversation(rng, q, device, _home_id(rng, homes), full=True)))
    for q, a in NO_TOOL:
        train.append(_row([{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
        train.append(_row([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tools=False))
    for q, a in MISSING:  # ask, then call once the number comes
        for _ in range(3):
            if "order" in a:
                oid = _order_id(rng, orders)
                rest = _order_conversation(rng, "It's {id}.", oid, full=True)
            else:
                device = next(d for d in DEVICES if d in q) if any(d in q for d in DEVICES) else "Halo"
                home = _home_id(rng, homes)
                rest = _device_conversation(rng, "It's {home}.", device, home, full=True)
            train.append(_row([{"role": "user", "content": q}, {"role": "assistant", "content": a}] + rest))
    heldout: list[dict] = []
    for q in ORDER_HELDOUT:
        for _ in range(6):
            heldout.append(_row(_order_conversation(rng, q, _order_id(rng, orders), full=False)))
    for q in DEVICE_HELDOUT:
        for device in DEVICES:
            for _ in range(2):
                heldout.append(_row(_device_conversation(rng, q, device, _home_id(rng, homes), full=False)))
    for q, a in NO_TOOL_HELDOUT + MISSING_HELDOUT:
        heldout.append(_row([{"role": "user", "content": q}, {"role": "assistant", "content": a}]))
    _check(train, heldout)
    key = lambda r: hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()  # noqa: E731
    return sorted(train, key=key), sorted(heldout, key=key)


def _check(train: list[dict], heldout: list[dict]) -> None:
    asked = {m["content"].lower() for r in train for m in r["messages"] if m["role"] == "user"}
    for r in heldout:
        q = next(m["content"] for m in r["messages"] if m["role"] == "user")
        assert q.lower() not in asked, f"held-out question also in training: {q}"
    ids = [json.dumps(r, sort_keys=True) for r in train + heldout]
    assert len(ids) == len(set(ids)), "duplicate conversations"


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    train, heldout = build()
    write(TRAIN_PATH, train)
    write(HELDOUT_PATH, heldout)
    print(f"wrote {len(train)} conversations to {TRAIN_PATH} and {len(heldout)} to {HELDOUT_PATH}")


if __name__ == "__main__":
    main()
