"""CLI behaviour of the foundation commands: help, models, generate/chat on a tiny model, clean errors."""

import json
import os
import subprocess
import sys

import pytest

CHATFORGE = [sys.executable, "-m", "chatforge"]


def test_help_lists_every_workflow_command():
    from chatforge.cli import COMMANDS

    p = subprocess.run(CHATFORGE + ["--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for name in ["check", "train", "eval", "chat", "serve", "export", "demo", "generate", "models"]:
        assert name in COMMANDS and f"    {name} " in p.stdout


def test_models_json(run_cli):
    code, out, _ = run_cli("models", "--json")
    data = json.loads(out)
    assert code == 0 and data["catalog"][0]["name"] == "smollm2-135m-instruct" and data["catalog"][0]["default"]


def test_generate_on_tiny_model(run_cli, tiny_model):
    # The random tiny model never ends its turn: 5 tokens fill --max-tokens, and stderr says the answer is cut
    # (stdout stays the answer alone)
    code, out, err = run_cli("generate", tiny_model, "Hello", "--max-tokens", "5", "--temperature", "1", "--seed", "0")
    assert code == 0 and out.strip() and out.endswith("\n")
    assert err == "(cut off at --max-tokens 5: raise it for a longer answer)\n"


def test_an_answer_that_ends_by_itself_is_not_called_cut_off():
    from chatforge.generation_config import cut_off_message
    from chatforge.infer import Completion, SamplingParams

    def done(reason, n):
        return Completion(text="x", finish_reason=reason, prompt_tokens=10, completion_tokens=n, token_ids=[1] * n)

    assert cut_off_message(done("stop", 5), SamplingParams(max_tokens=5)) is None
    assert "--max-tokens 5" in cut_off_message(done("length", 5), SamplingParams(max_tokens=5))
    assert "context (13 tokens)" in cut_off_message(done("length", 3), SamplingParams(max_tokens=5))


def test_generate_never_prints_an_empty_answer_with_success(run_cli, tiny_model):
    # Greedy, the random tiny model answers only newlines: an error that says why, not a blank line and 0.
    code, out, err = run_cli("generate", tiny_model, "Hello", "--max-tokens", "5")
    assert code == 1 and out == "" and "answer is empty" in err and "Traceback" not in err


def test_an_answer_cut_at_its_start_by_a_stop_string_says_so(run_cli, tiny_model):
    args = ("generate", tiny_model, "Hello", "--max-tokens", "5", "--temperature", "1", "--seed", "0")
    code, out, _ = run_cli(*args)
    assert code == 0 and out.strip()
    first = out.lstrip()[0]
    code, out, err = run_cli(*args, "--stop", first)
    assert code == 1 and out == "" and f"cut at its start by the stop string {first!r}" in err


def test_generate_raw_continues_plain_text(run_cli, tiny_model):
    code, out, err = run_cli("generate", tiny_model, "Hello", "--raw", "--max-tokens", "5")
    assert code == 0 and out.strip() and err == "(cut off at --max-tokens 5: raise it for a longer answer)\n"
    code, _, err = run_cli("generate", tiny_model, "Hello", "--raw", "--system", "x")
    assert code == 2 and "--raw" in err


def test_chat_piped_stdin_one_turn_per_line(tiny_model, tmp_path):
    save = tmp_path / "chat.jsonl"
    stdin = f"Hi\n/system Be brief.\nWho are you?\nAnd then?\n/save {save}\n/exit\nignored\n"
    p = subprocess.run(CHATFORGE + ["chat", str(tiny_model), "--max-tokens", "4", "--temperature", "1", "--seed", "0"],
                       input=stdin, text=True,
                       capture_output=True, env=os.environ.copy(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") >= 3  # each of the three answers ends with a newline
    msgs = json.loads(save.read_text())["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == "Be brief." and msgs[1]["content"] == "Who are you?"
    assert p.stderr.count("(cut off at --max-tokens 4: raise it for a longer answer)") == 3  # one per answer


@pytest.mark.parametrize("args,needle", [
    (["generate", "openai/gpt-4", "hi"], "no open weights"),
    (["generate", "/no/such/model", "hi"], "no such file"),
    (["generate", "someone/uncached-model", "hi"], "huggingface-cli download"),
])
def test_errors_exit_2_without_traceback(args, needle):
    p = subprocess.run(CHATFORGE + args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_bad_option_value_is_exit_2(run_cli, tiny_model):
    code, _, err = run_cli("generate", tiny_model, "hi", "--temperature", "-1")
    assert code == 2 and "temperature" in err


def test_a_mistyped_option_names_the_command_and_the_closest_option(run_cli, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli("train", "--max-lenght", "512")
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "chatforge train: error: unrecognized arguments: --max-lenght 512 (did you mean --max-length?)" in err
    assert "usage: chatforge train" in err
