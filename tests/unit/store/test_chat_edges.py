"""`chatforge chat` on input the docs allow: an empty pipe is an error that says so (not a silent success), and
/save before anything was said writes no line (an empty conversation is not a training example)."""

import io


def test_chat_with_empty_piped_input_says_nothing_was_asked(tiny_model, tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    code, out, err = run_cli("chat", tiny_model, "--max-tokens", "2", "--no-log")
    assert code == 2 and not out and "stdin: no input, so nothing was asked" in err and "Traceback" not in err


def test_save_before_any_turn_writes_nothing(tiny_model, tmp_path, run_cli, monkeypatch):
    save = tmp_path / "conv.jsonl"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"/save {save}\n/system Be brief.\n/save {save}\n"))
    code, _, err = run_cli("chat", tiny_model, "--max-tokens", "2", "--no-log")
    assert code == 0 and err.count("nothing to save yet") == 2 and not save.exists()
