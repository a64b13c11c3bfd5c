"""`chatforge check` through the CLI (in-process, tiny model): report, exit codes, JSON, writes nothing."""

import json
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


@pytest.fixture
def data_dir(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")  # a duplicate: a warning only
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + '\n{"messages": [\n{"messages": [{"role": "bot", "content": "x"}]}\n')
    return tmp_path


def test_warnings_alone_exit_0(run_cli, tiny_model, data_dir):
    code, out, err = run_cli("check", data_dir / "good.jsonl", "--model", tiny_model, "--no-estimate")
    assert code == 0, err
    assert "0 errors, 1 warning\n" in out and "exact duplicate" in out and "good.jsonl:2" in out
    assert "examples        2" in out and "epochs (auto)   25" in out


def test_errors_exit_2_with_file_line_and_class(run_cli, tiny_model, data_dir):
    code, out, err = run_cli("check", data_dir / "bad.jsonl", "--model", tiny_model, "--no-estimate")
    assert code == 2
    assert f"{data_dir / 'bad.jsonl'}:2: invalid JSON" in out
    assert f"{data_dir / 'bad.jsonl'}:3: unknown role" in out and "'bot'" in out
    assert "invalid JSON (error): 1, unknown role (error): 1" in out


def test_json_output_lists_every_problem(run_cli, tiny_model, data_dir):
    code, out, _ = run_cli("check", data_dir, "--model", tiny_model, "--no-estimate", "--json")
    report = json.loads(out)
    assert code == 2 and report["ok"] is False and report["rows"] == 5
    assert report["counts"] == {"invalid_json": 1, "unknown_role": 1, "duplicate": 2}
    assert {(Path(p["file"]).name, p["line"], p["class"]) for p in report["problems"]} == {
        ("bad.jsonl", 2, "invalid_json"), ("bad.jsonl", 3, "unknown_role"),
        ("good.jsonl", 1, "duplicate"), ("good.jsonl", 2, "duplicate")}
    assert report["stats"]["examples"] == 3 and report["estimate"] is None


def test_estimate_and_nothing_written(run_cli, tiny_model, data_dir):
    before = sorted(p.name for p in data_dir.iterdir())
    code, out, _ = run_cli("check", data_dir / "good.jsonl", "--model", tiny_model, "--json", "--max-length", "64")
    est = json.loads(out)["estimate"]
    assert code == 0 and est["tokens_per_second"] > 0 and est["epoch_seconds"] > 0
    assert est["method"] == "lora" and est["benchmark_steps"] >= 1  # the default recipe's step is what is timed
    assert sorted(p.name for p in data_dir.iterdir()) == before


def test_bundled_examples_pass(run_cli, tiny_model):
    for name in ("lumora_train.jsonl", "lumora_heldout.jsonl"):
        code, out, err = run_cli("check", EXAMPLES / name, "--model", tiny_model, "--no-estimate")
        assert code == 0, out + err
        assert "0 errors" in out
    code, out, _ = run_cli("check", EXAMPLES / "lumora_train.jsonl", "--eval-data", EXAMPLES / "lumora_heldout.jsonl",
                           "--model", tiny_model, "--no-estimate")
    assert code == 0 and "0 errors" in out and "eval row" not in out  # no held-out row leaks into training


@pytest.mark.parametrize("name, content, says", [
    ("empty.jsonl", "", "no examples in this file (it is empty)"),
    ("nope.jsonl", None, "no such file"),
])
def test_json_is_one_object_even_when_the_data_cannot_be_read(run_cli, tiny_model, tmp_path, name, content, says):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("check", path, "--model", tiny_model, "--no-estimate", "--json")
    report = json.loads(out)
    assert code == 2 and report["ok"] is False and says in report["error"]["message"] and says in err


def test_bad_options_are_clear_errors(run_cli, tiny_model, data_dir):
    code, _, err = run_cli("check", data_dir / "nope.jsonl", "--model", tiny_model, "--no-estimate")
    assert code == 2 and "no such file" in err
    code, _, err = run_cli("check", data_dir / "good.jsonl", "--model", tiny_model, "--max-length", "1")
    assert code == 2 and "--max-length" in err


def test_check_uses_trains_max_length_and_says_when_train_would_refuse(run_cli, tiny_model, tmp_path):
    """check and train read the data alike: the same --max-length by default, and too many rows dropped for
    being too long (warnings only) is an exit 2 in check too, as train refuses such data."""
    from chatforge.data.config import CheckConfig
    from chatforge.train.config import TrainConfig

    assert CheckConfig().max_length == TrainConfig().max_length
    long = {"messages": [{"role": "user", "content": "word " * 1500}, {"role": "assistant", "content": "Hello"}]}
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [GOOD] * 8 + [long] * 2))
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--no-estimate")
    assert code == 2 and re.search(r"\n0 errors, \d+ warnings -- but training would refuse this data", out)
    assert "2 of 10 rows (20%) would be dropped, more than the allowed 10%: `chatforge train` (--max-length " \
           f"{TrainConfig().max_length}) would refuse this data" in out
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--no-estimate", "--json")
    assert code == 2 and "would be dropped" in json.loads(out)["train_refuses"]
    code, _, err = run_cli("train", "--model", tiny_model, "--data", data, "--out", tmp_path / "run")
    assert code == 2 and "2 of 10 rows (20%) would be dropped" in err
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--no-estimate", "--max-length", "4096")
    assert code == 0 and "would refuse" not in out


def test_histogram_bins_end_at_the_longest_example():
    from chatforge.data.stats import histogram

    lines = histogram([584] + [1024] * 40)
    assert lines[-1].split("|")[0].split() == ["976-1024"] and lines[0].startswith("   584-")


def test_estimate_says_how_many_examples_the_default_run_trains_on(run_cli, tiny_model, tmp_path):
    """The auto epochs of the statistics count every example; the default run holds out its eval split and
    may therefore choose other epochs: the estimate line says on how many examples."""
    rows = [{"messages": [{"role": "user", "content": f"Question number {i} about the lamp?"},
                          {"role": "assistant", "content": f"Answer number {i}."}]} for i in range(40)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--max-length", "64", "--json")
    est = json.loads(out)["estimate"]
    assert code == 0 and 0 < est["train_examples"] < 40
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--max-length", "64")
    assert f"epochs of {est['train_examples']} examples (the others held out or dropped)" in out


def test_a_file_of_one_mistake_is_one_line_not_one_per_row(run_cli, tmp_path):
    # a CSV of another layout: every row has the same problem; check and train name it once, with its lines
    path = tmp_path / "med.csv"
    path.write_text("department,title,ask,reply\n" + "".join(f"heart,q{i},ask {i},answer {i}\n" for i in range(30)))
    code, out, _ = run_cli("check", path, "--no-estimate")
    assert code == 2
    lines = [line for line in out.splitlines() if "unknown format:" in line]
    assert len(lines) == 1 and f"{path}:2: unknown format:" in lines[0]
    assert lines[0].endswith("(the same on lines 3-31: 30 rows)")
    assert "more unknown format" not in out
    code, _, err = run_cli("train", "--data", path, "--out", tmp_path / "run")
    assert code == 2 and err.count("cannot tell the format") == 1 and "30 rows)" in err


def test_one_mistake_in_a_one_line_array_lists_its_records(run_cli, tmp_path):
    # the same on records, not "the same on lines 1, 1, 1, ...": every record of the array is on line 1
    path = tmp_path / "med.json"
    path.write_text(json.dumps([{"department": "heart", "ask": f"ask {i}", "reply": f"answer {i}"}
                                for i in range(30)]))
    code, out, _ = run_cli("check", path, "--no-estimate")
    assert code == 2
    lines = [line for line in out.splitlines() if "unknown format:" in line]
    assert len(lines) == 1 and f"{path}:1 (record 1): unknown format:" in lines[0]
    assert lines[0].endswith("(the same on records 2-30: 30 rows)")
    code, out, _ = run_cli("check", path, "--no-estimate", "--json")
    assert [(p["line"], p["record"]) for p in json.loads(out)["problems"]] == [(1, i) for i in range(1, 31)]


def test_a_run_never_mixes_lines_and_records():
    from chatforge.data.validate import Problem, collapse, describe

    same = ("d.json", 1, "unknown_format", "cannot tell")
    problems = [Problem(*same, record=1), Problem(*same, record=2), Problem(*same, record=4), Problem(*same)]
    (first, records), (last, lines) = collapse(problems)
    assert records == [1, 2, 4] and lines == [1]
    assert describe(first, records) == ("d.json:1 (record 1): unknown format: cannot tell "
                                        "(the same on records 2, 4: 3 rows)")
    assert describe(last, lines) == "d.json:1: unknown format: cannot tell"
