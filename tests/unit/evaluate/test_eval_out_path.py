"""An --out that can never be written (below a file) is bad input refused before any model answers, not an
internal error once every answer has been generated."""

import pytest

EXAMPLES_PAIRS = "lumora_pairs_heldout.jsonl"


@pytest.mark.parametrize("data", ["heldout", "pairs"])
def test_out_below_a_file_is_refused_before_loading(run_cli, fake_run, heldout_file, tmp_path, monkeypatch, data):
    from pathlib import Path

    import chatforge.models.load

    def never(*a, **k):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(chatforge.models.load, "load_model", never)
    path = heldout_file
    if data == "pairs":
        path = tmp_path / "pairs.jsonl"
        examples = Path(__file__).resolve().parents[3] / "examples" / "data" / EXAMPLES_PAIRS
        path.write_text("".join(examples.read_text(encoding="utf-8").splitlines(True)[:2]), encoding="utf-8")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    code, out, err = run_cli("eval", fake_run, "--data", path, "--no-baseline", "--out", blocker / "report")
    assert code == 2 and f"--out {blocker / 'report'}: {blocker} is a file, not a directory" in err
    assert "internal error" not in err and blocker.read_text() == "mine"
