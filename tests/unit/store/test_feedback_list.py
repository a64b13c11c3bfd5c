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
    code, out, err = run_cli("feedback", "list", "--store", tmp_path / "new.db", "--json")
    assert code == 0 and json.loads(out) == [], (out, err)


def test_json_is_an_array_of_the_newest_records(run_cli, rated):
    code, out, _ = run_cli("feedback", "list", "--store", rated, "--json", "--limit", "2")
    assert code == 0 and [r["completion_id"] for r in json.loads(out)] == ["c1", "c2"]


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_a_limit_below_one_is_refused(run_cli, rated, capsys, limit):
    with pytest.raises(SystemExit) as e:
        run_cli("feedback", "list", "--store", rated, "--limit", limit)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument --limit: must be >= 1, got {limit}" in err and "no feedback" not in err
