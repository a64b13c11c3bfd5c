"""`chatforge eval` on the command line: the table or JSON on stdout, and exit code 2 for bad input."""

import json

import pytest


def test_cli_prints_the_table_and_writes_the_report(run_cli, fake_run, heldout_file, scripted_engine, tmp_path):
    out = tmp_path / "report"
    code, stdout, err = run_cli("eval", fake_run, "--data", heldout_file, "--max-examples", 3, "--max-tokens", 8,
                                "--bootstrap", 100, "--out", out)
    assert code == 0, err
    assert "Delta (tuned - base) [95% CI]" in stdout and "Token F1" in stdout and "Stop rate" in stdout
    assert f"Report: {out}/report.html" in stdout
    assert json.loads((out / "metrics.json").read_text())["examples_evaluated"] == 3


def test_cli_json(run_cli, fake_run, heldout_file, scripted_engine, tmp_path):
    code, stdout, _ = run_cli("eval", fake_run, "--data", heldout_file, "--no-baseline", "--json",
                              "--max-examples", 2, "--bootstrap", 50, "--out", tmp_path / "r")
    assert code == 0
    data = json.loads(stdout)
    assert data["baseline"] is None and "examples" not in data and data["metrics"]["tuned"]["f1"]["value"] == 100


@pytest.mark.parametrize("case", ["missing_file", "invalid_json", "no_answers", "bad_option", "unknown_model"])
def test_cli_bad_input_exits_2_without_traceback(case, run_cli, fake_run, heldout_file, tmp_path, scripted_engine):
    data, extra, model = tmp_path / "heldout.jsonl", [], fake_run
    if case == "missing_file":
        data = tmp_path / "missing.jsonl"
    elif case == "invalid_json":
        data.write_text(heldout_file.read_text(encoding="utf-8") + '{"messages": [\n', encoding="utf-8")
    elif case == "no_answers":
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    elif case == "bad_option":
        data, extra = heldout_file, ["--confidence", "1.5"]
    else:
        data, model = heldout_file, "no-such-model-xyz"
    try:
        code, _, err = run_cli("eval", model, "--data", data, "--out", tmp_path / "r", *extra)
    except SystemExit as e:  # argparse rejects a bad option value itself
        code, err = e.code, ""
    assert code == 2
    assert "Traceback" not in err
    if case == "missing_file":
        assert "missing.jsonl: no such file" in err
    if case == "invalid_json":
        assert "heldout.jsonl:7" in err  # the broken line is named
    assert scripted_engine == []


def test_lenient_skips_invalid_rows_and_names_them(run_cli, fake_run, heldout_file, scripted_engine, tmp_path):
    data = tmp_path / "heldout.jsonl"
    good = heldout_file.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(good[:2] + ['{"messages": ['] + good[2:]) + "\n", encoding="utf-8")
    code, _, err = run_cli("eval", fake_run, "--data", data, "--no-baseline", "--bootstrap", 50, "--out", tmp_path / "a")
    assert code == 2 and "heldout.jsonl:3" in err and "--lenient" in err  # strict by default, and says the way out
    code, stdout, err = run_cli("eval", fake_run, "--data", data, "--no-baseline", "--bootstrap", 50, "--lenient",
                                "--json", "--out", tmp_path / "b")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["examples_evaluated"] == len(good)  # every valid row, the broken one left out
    assert any("Skipped 1 invalid row of" in n and "heldout.jsonl:3" in n for n in result["notes"])
