"""`chatforge feedback list`: --json is JSON even with nothing kept; a --limit below 1 is a clear error."""

import json

import pytest

from chatforge.store import Store


@pytest.fixture
def rated(tmp_path):
    """A store with three thumbs on three answers."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    db = tmp_path / "chatforge.db"
    with Store(db) as store:
        mid = store.register_model("tiny", model)
        for i, rating in enumerate(["up", "down", "up"]):
            store.log_completion(id=f"c{i}", model_id=mid, messages=[{"role": "user", "content": f"Q{i}"}],
                                 answer=f"A{i}", finish_reason="stop", sampling={}, prompt_tokens=1,
                                 completion_tokens=1, latency_s=0.0, source="test")
            store.add_rating(f"c{i}", rating)
    return db


def test_json_of_an_empty_store_is_an_empty_array(run_cli, tmp_path):
    Store(tmp_path / "new.db").close()
    code, out, err = run_cli("feedback", "list", "--store", tmp_path / "new.db", "--json")
    assert code == 0 and json.loads(out) == [], (out, err)


@pytest.mark.parametrize("action", [["list"], ["stats", "--json"], ["export", "--out", "x.jsonl"]])
def test_a_store_that_does_not_exist_is_an_error_not_a_new_empty_store(run_cli, tmp_path, action):
    typo = tmp_path / "typo" / "chatforge.db"
    code, out, err = run_cli("feedback", *action, "--store", typo)
    assert code == 2 and f"--store {typo}: no such file" in err and not out and "Traceback" not in err
    assert not typo.parent.exists()  # reading created nothing


def test_json_is_an_array_of_the_newest_records(run_cli, rated):
    code, out, _ = run_cli("feedback", "list", "--store", rated, "--json", "--limit", "2")
    assert code == 0 and [r["completion_id"] for r in json.loads(out)] == ["c1", "c2"]


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_a_limit_below_one_is_refused(run_cli, rated, capsys, limit):
    with pytest.raises(SystemExit) as e:
        run_cli("feedback", "list", "--store", rated, "--limit", limit)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument --limit: must be >= 1, got {limit}" in err and "no feedback" not in err


def test_export_to_a_directory_is_bad_input_naming_out(run_cli, rated, tmp_path):
    code, out, err = run_cli("feedback", "export", "--as", "kto", "--out", tmp_path, "--store", rated)
    assert code == 2 and f"--out {tmp_path}: is a directory" in err and "kto.jsonl" in err and not out
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_of_kto_says_it_wrote_trl_rows_not_openai_ones(run_cli, rated, tmp_path):
    out_file = tmp_path / "f.jsonl"
    code, out, err = run_cli("feedback", "export", "--as", "kto", "--out", out_file, "--store", rated)
    assert code == 0, err
    assert "wrote 3 kto rows (TRL style: OpenAI has no unpaired format)" in out and "openai style" not in out
    assert all(set(json.loads(line)) == {"prompt", "completion", "label"} for line in out_file.read_text().split("\n")
               if line)


def test_export_for_a_model_not_in_the_store_is_bad_input_listing_its_models(run_cli, rated, tmp_path):
    code, out, err = run_cli("feedback", "export", "--model", "runs/nonexistent", "--as", "dpo", "--out",
                             tmp_path / "x.jsonl", "--store", rated)
    assert code == 2 and not out, (code, out, err)
    assert "--model runs/nonexistent: no such model" in err and "it has 1 model: tiny" in err
    assert "nothing to export" not in err and not (tmp_path / "x.jsonl").exists()


def test_export_for_an_unknown_model_lists_at_most_ten_of_the_store_models(run_cli, rated, tmp_path):
    with Store(rated) as store:
        for i in range(12):
            store.register_model(f"m{i}", tmp_path / "model")
    code, _, err = run_cli("feedback", "export", "--model", "nope", "--as", "kto", "--out", tmp_path / "x.jsonl",
                           "--store", rated)
    assert code == 2 and "it has 13 models: tiny, m0," in err and "m8 and 3 more" in err and "m9" not in err, err


def test_nothing_to_export_counts_agree_with_their_nouns(run_cli, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with Store(tmp_path / "one.db") as store:
        mid = store.register_model("tiny", model)
        store.log_completion(id="c0", model_id=mid, messages=[{"role": "user", "content": "Q"}], answer="",
                             finish_reason="stop", sampling={}, prompt_tokens=1, completion_tokens=0, latency_s=0.0,
                             source="test")
        store.add_rating("c0", "down")
    code, _, err = run_cli("feedback", "export", "--as", "kto", "--out", tmp_path / "x.jsonl", "--store",
                           tmp_path / "one.db")
    assert code == 1 and "1 matching feedback record in " in err and "1 row with an empty answer was left out" in err
