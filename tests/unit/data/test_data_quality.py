"""Data that parses but is wrong (data/quality.py): each class on a small file, through `chatforge check`."""

import json

import pytest

from chatforge.data.quality import find_personal_data, is_placeholder, looks_truncated, mask, script, shingles

LONG = ("Lumora lamps dim in ten steps; hold the button for two seconds to switch between warm and cold light, "
        "and press it twice to turn the night mode on or off before you go to sleep.")
LONG_ZH = "高血压患者首先要注意控制食盐摄入量，每天不超过六克，注意不要吃太油腻的食物，多吃新鲜的绿色蔬菜水果，同时压力不要过大，精神不要紧张。"


def qa(q, a):
    return {"question": q, "answer": a}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def check(tokenizer, path, eval_path=None, strict=False):
    """What `chatforge check --json` reports (exit code, problems), without loading a tokenizer per test."""
    from chatforge.data import analyse

    _, report = analyse(path, tokenizer, eval_path=eval_path, strict=strict)
    problems = [{"line": p.line, "class": p.cls, "severity": p.severity, "message": p.message}
                for p in report.problems]
    return (2 if report.errors else 0), {"ok": not report.errors, "problems": problems}


def classes(report, cls):
    return [(p["line"], p["message"]) for p in report["problems"] if p["class"] == cls]


FILLER = [qa(f"What is special about model number {n} of the lamp series?",
             f"Model {n} has its own colour, {c}, and comes with a {w}-watt bulb in the box.")
          for n, c, w in [(1, "red", 5), (2, "blue", 7), (3, "green", 9), (4, "white", 11)]]


def test_near_duplicates_within_training_words_and_cjk(tokenizer, tmp_path):
    rows = FILLER + [qa("How do I dim the lamp?", LONG),
                     qa("How do I dim the lamp?", LONG.replace("ten steps", "10 steps")),  # near, not exact
                     qa("高血压该怎么治疗？", LONG_ZH),
                     qa("高血压该怎么治疗？", LONG_ZH.replace("六克", "6克"))]
    code, report = check(tokenizer, write(tmp_path / "d.jsonl", rows))
    assert code == 0 and report["ok"]  # warnings only
    near = classes(report, "near_duplicate")
    assert [line for line, _ in near] == [6, 8], near
    assert "d.jsonl:5 (~" in near[0][1] and "d.jsonl:7 (~" in near[1][1]
    assert not classes(report, "duplicate")
    # --strict turns the same findings into errors (exit 2)
    code, strict = check(tokenizer, tmp_path / "d.jsonl", strict=True)
    assert code == 2 and {p["severity"] for p in strict["problems"] if p["class"] == "near_duplicate"} == {"error"}


def test_near_leakage_between_training_and_held_out(tokenizer, tmp_path):
    train = write(tmp_path / "train.jsonl", FILLER + [qa("How do I dim the lamp?", LONG)])
    held = write(tmp_path / "held.jsonl", [qa("How do I dim the lamp?", LONG.replace("two seconds", "2 seconds")),
                                           qa("Which colours are there?", "Red, blue, green and white.")])
    code, report = check(tokenizer, train, held)
    leaks = classes(report, "near_leakage")
    assert code == 0 and [line for line, _ in leaks] == [5] and "held.jsonl:1" in leaks[0][1]
    assert not classes(report, "leakage")  # exact matching misses it
    code, _ = check(tokenizer, train, held, strict=True)
    assert code == 2


def test_contradictions_same_question_different_answer(tokenizer, tmp_path):
    rows = FILLER + [qa("How long is the warranty of the Lumora lamp?", "The warranty lasts two years."),
                     qa("How long is the warranty of the Lumora lamp ?", "There is no warranty on lamps."),
                     qa("What is the warranty of the Lumora lamp?", "Two years.")]  # different question
    code, report = check(tokenizer, write(tmp_path / "c.jsonl", rows))
    found = classes(report, "contradiction")
    assert code == 0 and [line for line, _ in found] == [6] and "c.jsonl:5" in found[0][1]


def test_personal_data_masked_with_file_and_line(run_cli, tokenizer, tiny_model, tmp_path):
    secrets = {"jane.doe@gmail.com": "e-mail address", "4539 5787 6362 1486": "card number",
               "+49 151 2345 6789": "phone number", "11010519491231002X": "ID number",
               "sk-proj-abcdefghijklmnopqrstuvwxyz123456": "OpenAI API key", "AKIAIOSFODNN7EXAMPLE": "AWS access key",
               "GB82 WEST 1234 5698 7654 32": "bank account (IBAN)", "123-45-6789": "social security number"}
    rows = FILLER + [qa(f"Question {i}?", f"You can use {value} for that.") for i, value in enumerate(secrets)]
    rows.append(qa("Card?", "Your order number is 4539 5787 6362 1487."))  # fails Luhn: not a card
    rows.append(qa("Test card?", "Pay with 4242 4242 4242 4242 or call (555) 010-0142."))  # fictional: not flagged
    rows.append(qa("Support?", "Write to help@lumorahome.com or call +351 800 555 210 (free)."))  # an organisation
    path = write(tmp_path / "p.jsonl", rows)
    code, report = check(tokenizer, path)
    found = classes(report, "personal_data")
    assert code == 0 and [line for line, _ in found] == list(range(5, 5 + len(secrets))), found
    for (line, message), (value, kind) in zip(found, secrets.items()):
        assert message.startswith(kind) and value not in message and mask(value) in message
    code, out, _ = run_cli("check", path, "--model", tiny_model, "--no-estimate")
    assert f"{path}:5: personal data or secret: e-mail address ja**************om in the answer" in out
    assert "jane.doe" not in out


def test_language_placeholder_and_cut_off_answers(run_cli, tokenizer, tiny_model, tmp_path):
    rows = FILLER + [qa("How do I turn on the night mode of my lamp?", LONG_ZH),
                     qa("N/A question that is fine?", "N/A"),
                     qa("What should go here later?", "TODO"),
                     qa("Why is the lamp flickering sometimes?", "Flickering usually means that the bulb is loose, "
                                                                "or that the dimmer is set to a level that is the"),
                     qa("How do I install it?", "Follow these steps:"),
                     qa("高血压该治疗什么？", "高血压患者首先要注意控制食盐摄入量，每天不超过六克，注意不要吃太油腻的食物，")]
    code, report = check(tokenizer, write(tmp_path / "l.jsonl", rows))
    assert code == 0
    assert [line for line, _ in classes(report, "language_mismatch")] == [5]
    assert "Latin" in classes(report, "language_mismatch")[0][1]
    assert [line for line, _ in classes(report, "placeholder_answer")] == [6, 7]
    assert [line for line, _ in classes(report, "truncated_answer")] == [8, 9, 10]
    code, out, _ = run_cli("check", tmp_path / "l.jsonl", "--model", tiny_model, "--no-estimate")
    assert "answer cut off (warning): 3" in out and "empty-looking answer (warning): 2" in out


def test_clean_data_has_no_quality_findings(tokenizer, tmp_path):
    code, report = check(tokenizer, write(tmp_path / "ok.jsonl", FILLER + [qa("How do I dim it?", LONG)]))
    assert code == 0 and report["problems"] == []


@pytest.mark.parametrize("text, expected", [
    ("The lamp has three modes.", False), ("Modes:\n- warm\n- cold", False), ("See https://lumora.example/", False),
    ("It comes in red, blue and", True), ("```python\nprint(1)", True), ("The lamp (the old model", True),
    ("高血压要控制饮食。", False), ("控制饮食，", True)])
def test_looks_truncated(text, expected):
    assert looks_truncated(text) is expected


def test_helpers():
    assert is_placeholder(" n/a ") and is_placeholder("TODO: write this") and is_placeholder("待定")
    assert not is_placeholder("None of the lamps need batteries.")
    assert script("What is the warranty of the lamp?") == "Latin" and script("保修期是多久？请告诉我") == "Han"
    assert script("ok") is None and script("HBsAg阳性HBsAb阴性HBeAg阴性HBeAb阳性") == "Han"  # lab codes in Chinese
    assert shingles("a b c d") == {b"a b c", b"b c d"} and shingles("保修期多久") == {"保修期".encode(),
                                                                                 "修期多".encode(), "期多久".encode()}
    assert find_personal_data("4539 5787 6362 1487") == [] and find_personal_data("11010519491231002Y") == []
    assert mask("jane.doe@gmail.com") == "ja**************om"


@pytest.mark.parametrize("text, expected", [
    ("SELECT name FROM users WHERE id = '74ADB';", False), ('print("Hello World!");', False),
    ("x = 3;\nlet y = x;", False), ("    if ok:\n        return True;", False),
    ("The regex pattern would be \\w+@\\w+\\.\\w+", False), ("I program in C++", False),
    ("Chorus:\nA A G G A\nA A G G A", False),
    ("The lamp is bright;", True), ("The price is 2 +", True), ("We tried it. For", True)])
def test_code_and_notes_are_not_cut_off_answers(text, expected):
    assert looks_truncated(text) is expected


def test_a_decimal_number_is_not_a_card_number():
    assert find_personal_data("0.9381531715393066") == [] and find_personal_data("p = 0,9381531715393066") == []
    assert find_personal_data("4539578763621486.5 mm") == []
    assert find_personal_data("Card 4539578763621486.") == [("card number", "4539578763621486")]


def test_each_finding_is_reported_once_per_row(tokenizer, tmp_path):
    code = ("server.login('jdoe1984@gmail.com', pw)\nmsg['From'] = 'jdoe1984@gmail.com'\n"
            "server.sendmail('jdoe1984@gmail.com', to, text)\n")
    rows = [{"messages": [{"role": "user", "content": "Send a mail"}, {"role": "assistant", "content": code},
                          {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Yes: " + code}]}]
    _, report = check(tokenizer, write(tmp_path / "m.jsonl", rows))
    assert classes(report, "personal_data") == [(1, "e-mail address jd**************om in messages[1]")]


def test_placeholder_credentials_in_code_samples_are_not_secrets():
    code = ("db = connect(user='yourusername', password=\"yourpassword\")\n"
            "server.login('yourname@yourdomain.com', 'x')\nAPI_KEY = 'YOUR_API_KEY_HERE'\n"
            "client = OpenAI(api_key='sk-xxxxxxxxxxxxxxxxxxxxxxxx')\nmail = 'user@domain.com'")
    assert find_personal_data(code) == []
    assert find_personal_data("password = 'Tr0ub4dor3x9q'") == [("secret", "Tr0ub4dor3x9q")]


def test_a_secret_ends_before_the_full_stop():
    assert find_personal_data("Here is your new password: A1b2C3d4E5f6. Keep it safe.") == [
        ("secret", "A1b2C3d4E5f6")]


def tool_chat(question, tools_name, answer):
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
            "tools": json.dumps([{"name": tools_name, "description": f"Use {tools_name}",
                                  "parameters": {"type": "object", "properties": {}}}])}


def test_same_question_in_another_context_is_no_contradiction(tokenizer, tmp_path):
    """Another system prompt or other tools rightly change the answer: only the same context contradicts."""
    q = "Can you please book a flight for me from New York to London?"
    rows = [tool_chat(q, "calculate_mortgage", "I'm sorry, I can only calculate mortgage payments for you."),
            tool_chat(q, "generate_invoice", "Sorry, booking flights is not possible: I can generate invoices."),
            {"messages": [{"role": "system", "content": "You answer for the cardiology department."},
                          {"role": "user", "content": "How long is the warranty of the Lumora lamp?"},
                          {"role": "assistant", "content": "The warranty lasts two years."}]},
            {"messages": [{"role": "system", "content": "You answer for the garden department."},
                          {"role": "user", "content": "How long is the warranty of the Lumora lamp?"},
                          {"role": "assistant", "content": "There is no warranty on lamps at all."}]},
            tool_chat(q, "generate_invoice", "No, I cannot do that; I only make invoices, nothing else today.")]
    _, report = check(tokenizer, write(tmp_path / "t.jsonl", rows))
    found = classes(report, "contradiction")
    assert [line for line, _ in found] == [5] and "t.jsonl:2" in found[0][1] and "t.jsonl:1" not in found[0][1]


def test_an_unclosed_code_block_says_so(tokenizer, tmp_path):
    rows = FILLER + [qa("How do I print in Python?", "Like this:\n```python\nprint('hi')\nHope that helps!")]
    _, report = check(tokenizer, write(tmp_path / "u.jsonl", rows))
    assert classes(report, "truncated_answer") == [(5, "the answer has a ``` code block that is never closed")]


def test_findings_in_a_one_line_array_name_records(tokenizer, tmp_path):
    from chatforge.data import analyse

    rows = FILLER + [qa("How do I dim the lamp?", LONG), qa("How do I dim the lamp?", LONG.replace("ten", "10"))]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows), encoding="utf-8")  # one line: every record on line 1
    _, report = analyse(path, tokenizer)
    (p,) = [p for p in report.problems if p.cls == "near_duplicate"]
    assert (p.line, p.record) == (1, 6) and f"nearly the same as {path}:1 (record 5) (~" in p.message


@pytest.mark.parametrize("number", ["4111 1111 1111 1111", "4242 4242 4242 4242", "5555 5555 5555 4444",
                                    "378282246310005", "6011 1111 1111 1117", "4012 8888 8888 1881",
                                    "3530 1113 3330 0000", "4000 0000 0000 0002", "1234 1234 1234 1234"])
def test_test_card_numbers_are_not_personal_data(number):
    assert find_personal_data(f"Try the card {number} in the sandbox.") == []


@pytest.mark.parametrize("number", ["4539 5787 6362 1486", "5378 1429 0615 5737", "4539578763621486"])
def test_real_looking_card_numbers_still_are(number):
    assert find_personal_data(f"My card is {number}.") == [("card number", number)]


@pytest.mark.parametrize("number", ["(555) 123-4567", "555-123-4567", "212-555-0142", "+1 212 555 0199",
                                    "1-555-123-4567", "+15551234567", "(312) 555-1234"])
def test_fictional_555_numbers_are_not_personal_data(number):
    assert find_personal_data(f"Call {number} for details.") == []


@pytest.mark.parametrize("number", ["(212) 736-4821", "+1 415 867 2093", "212-736-5555", "030 555 1234",
                                    "15551234567", "+49 151 2345 6789"])
def test_real_looking_phone_numbers_still_are(number):
    # 030 555 1234 is Berlin and 15551234567 a Chinese mobile: 555 only marks North American numbers as fictional
    assert find_personal_data(f"Call {number} for details.") == [("phone number", number)]
