"""Preference data: every format read, every problem class by file:line, masks on the answers only."""

import json

import pytest

from chatforge.data.encode import IGNORE
from chatforge.data.preference import (analyse_preferences, collate_sequences, is_preference_data, mismatched,
                                       prepare_preferences)
from chatforge.errors import ChatforgeError

Q, A, B = "Who founded Lumora?", "Mira Castell and Tobias Wren.", "Elon Musk."
MSG = [{"role": "user", "content": Q}]
FORMATS = {
    "openai": {"input": {"messages": MSG}, "preferred_output": [{"role": "assistant", "content": A}],
               "non_preferred_output": [{"role": "assistant", "content": B}]},
    "trl_standard": {"prompt": Q, "chosen": A, "rejected": B},
    "trl_conversational": {"prompt": MSG, "chosen": [{"role": "assistant", "content": A}],
                           "rejected": [{"role": "assistant", "content": B}]},
    "trl_implicit_conversational": {"chosen": MSG + [{"role": "assistant", "content": A}],
                                    "rejected": MSG + [{"role": "assistant", "content": B}]},
    "trl_implicit_standard": {"chosen": f"{Q} {A}", "rejected": f"{Q} {B}"},
}


def _write(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_paired_format_gives_the_same_pair_scored_on_the_answers_only(tmp_path, tokenizer, fmt):
    path = _write(tmp_path, [FORMATS[fmt]])
    assert is_preference_data(path)
    prepared = prepare_preferences(path, tokenizer)
    assert prepared.kind == "pairs" and len(prepared.examples) == 1
    pair, rec = prepared.examples[0], prepared.records[0]
    assert rec.prompt[-1]["content"] == Q and rec.chosen.strip() == A and rec.rejected.strip() == B
    for enc, answer in ((pair.chosen, A), (pair.rejected, B)):
        trained = tokenizer.decode([t for t in enc.labels if t != IGNORE])
        assert trained.strip().startswith(answer) and Q not in trained  # the answer (+ end of turn), no prompt
    reference = prepare_preferences(_write(tmp_path, [FORMATS["openai"]], "ref.jsonl"), tokenizer).examples[0]
    assert pair.chosen.input_ids == reference.chosen.input_ids
    assert pair.rejected.labels == reference.rejected.labels


def test_unpaired_records_with_boolean_labels(tmp_path, tokenizer):
    rows = [{"prompt": Q, "completion": A, "label": True}, {"prompt": MSG, "completion": B, "label": False}]
    prepared = prepare_preferences(_write(tmp_path, rows), tokenizer)
    assert prepared.kind == "unpaired" and [e.label for e in prepared.examples] == [True, False]
    assert prepared.stats["desirable"] == prepared.stats["undesirable"] == 1


def test_every_problem_class_is_named_with_its_line(tmp_path, tokenizer):
    rows = [FORMATS["trl_standard"],
            {"prompt": Q, "chosen": A, "rejected": A},  # 2 identical
            {"prompt": Q, "chosen": "  ", "rejected": B},  # 3 empty answer
            {"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": A}],
             "rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": B}]},  # 4 no prompt
            {"chosen": "Apples are red.", "rejected": "Bananas are yellow."},  # 5 no shared text
            FORMATS["trl_standard"]]  # 6 duplicate of 1 (a warning)
    path = _write(tmp_path, rows)
    prepared, report = analyse_preferences(path, tokenizer)
    found = {(p.line, p.cls) for p in report.problems}
    assert found == {(2, "identical_answers"), (3, "empty_answer"), (4, "no_shared_prompt"),
                     (5, "no_shared_prompt"), (6, "duplicate")}
    assert all(str(p).startswith(f"{path}:{p.line}: ") for p in report.problems)
    with pytest.raises(ChatforgeError, match="4 errors"):
        prepare_preferences(path, tokenizer)
    labels = _write(tmp_path, [{"prompt": Q, "completion": A, "label": "yes"}], "kto.jsonl")
    _, report = analyse_preferences(labels, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [(1, "label_not_boolean")]


def test_an_empty_prompt_string_is_named_as_the_prompt(tmp_path, tokenizer):
    path = _write(tmp_path, [{"prompt": " ", "chosen": "Yes.", "rejected": "No."}])
    _, report = analyse_preferences(path, tokenizer)
    assert [(p.line, p.cls, p.message) for p in report.problems] == [(1, "empty_content", "'prompt' is empty")]


def test_kto_labels_in_a_csv_are_text(tmp_path, tokenizer):
    """A CSV has no booleans: its true / false (any case) and 1 / 0 are the labels; anything else stays an error."""
    path = tmp_path / "kto.csv"
    path.write_text("prompt,completion,label\nHi?,Hello!,true\nHi?,Go away.,FALSE\nBye?,Goodbye!,1\n"
                    "Bye?,Whatever.,0\nHm?,Hm.,maybe\n", encoding="utf-8")
    prepared, report = analyse_preferences(path, tokenizer)
    assert [(p.line, p.cls) for p in report.problems] == [(6, "label_not_boolean")]
    assert [r.label for r in prepared.records] == [True, False, True, False]


def test_check_reports_preference_data(run_cli, tiny_model, tmp_path):
    good = _write(tmp_path, [FORMATS["trl_conversational"], FORMATS["trl_conversational"] | {"prompt": "Other?"}])
    code, out, err = run_cli("check", good, "--model", tiny_model, "--no-estimate")
    assert code == 0, err
    assert "pairs           2" in out and "--method dpo" in out
    bad = _write(tmp_path, [FORMATS["trl_standard"], {"prompt": Q, "chosen": A, "rejected": A}], "bad.jsonl")
    code, out, _ = run_cli("check", bad, "--model", tiny_model, "--no-estimate")
    assert code == 2 and f"{bad}:2: chosen and rejected identical" in out


def test_packed_batch_knows_each_label_s_sequence(tmp_path, tokenizer):
    prepared = prepare_preferences(_write(tmp_path, [FORMATS["trl_standard"], FORMATS["trl_standard"] | {
        "prompt": "When?"}]), tokenizer)
    seqs = [p.chosen for p in prepared.examples] + [p.rejected for p in prepared.examples]
    batch = collate_sequences(seqs, tokenizer.pad_token_id, max_length=256)
    assert batch["input_ids"].shape[0] == 1  # all four fit in one row
    for i, s in enumerate(seqs):
        got = batch["labels"][batch["sequence"] == i].tolist()
        assert got == [t for t in s.labels if t != IGNORE]
    loose = collate_sequences(seqs, tokenizer.pad_token_id, max_length=256, pack=False)
    assert loose["input_ids"].shape[0] == 4
    kl = mismatched(seqs[0], seqs[1])  # prompt of 0, answer of 1
    assert [t for t in kl.labels if t != IGNORE] == [t for t in seqs[1].labels if t != IGNORE]
    assert kl.input_ids[:5] == seqs[0].input_ids[:5]


def test_a_pair_shares_its_common_start_when_it_fits_a_row(tmp_path, tokenizer):
    """share=: the chosen sequence whole, then the rejected one from the end of their common start on (position
    ids continuing it), here the prompt and the answers' first words; each sequence's labels are its own, the
    ones laid out once counted for both ("also"). A pair too long for one row is laid out as two sequences."""
    import torch

    from chatforge.data.preference import answer_start, shared_prefix

    record = {"prompt": Q, "chosen": "The warranty lasts two years.", "rejected": "The warranty lasts ten years."}
    prepared = prepare_preferences(_write(tmp_path, [record]), tokenizer)
    chosen, rejected = prepared.examples[0].chosen, prepared.examples[0].rejected
    k = shared_prefix(chosen, rejected)
    assert answer_start(chosen) < k < len(chosen) and chosen.input_ids[:k + 1] == rejected.input_ids[:k + 1]
    assert chosen.input_ids[k + 1] != rejected.input_ids[k + 1]
    batch = collate_sequences([chosen, rejected], tokenizer.pad_token_id, max_length=256, share=[(0, 1)])
    n = len(chosen) + len(rejected) - k
    assert batch["input_ids"].shape == (1, n)
    assert batch["input_ids"][0].tolist() == chosen.input_ids + rejected.input_ids[k:]
    assert batch["position_ids"][0].tolist() == list(range(len(chosen))) + list(range(k, len(rejected)))
    for i, s in enumerate((chosen, rejected)):
        mine = (batch["sequence"] == i) | (batch["also"] == i)
        assert batch["labels"][mine].tolist() == [t for t in s.labels if t != IGNORE]
    tight = collate_sequences([chosen, rejected], tokenizer.pad_token_id, max_length=n - 1, share=[(0, 1)])
    alone = collate_sequences([chosen, rejected], tokenizer.pad_token_id, max_length=n - 1)
    assert alone.keys() == tight.keys() and all(torch.equal(tight[key], alone[key]) for key in alone)
    assert (alone["also"] == -1).all()


def test_too_many_unreadable_pairs_get_a_hint_that_applies_to_pairs(tmp_path, tokenizer):
    # --columns and --format map chat data only: the refusal of preference data does not suggest them
    _write(tmp_path, [FORMATS["trl_standard"]] * 2, "pairs.jsonl")
    _write(tmp_path, [{"question": Q, "good": A, "bad": B}] * 2, "other.jsonl")  # of no format at all
    with pytest.raises(ChatforgeError) as e:
        prepare_preferences(tmp_path, tokenizer, lenient=True)
    assert "unknown format" in str(e.value) and "fix the rows listed above" in e.value.hint
    assert "--columns" not in e.value.hint and "--format" not in e.value.hint


def test_pairs_of_a_one_line_array_are_named_by_record(tmp_path, tokenizer):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([FORMATS["trl_standard"], {"prompt": Q, "chosen": A, "rejected": A},
                                FORMATS["trl_standard"]]), encoding="utf-8")
    _, report = analyse_preferences(path, tokenizer)
    assert [(p.line, p.record, p.cls) for p in report.problems] == [(1, 2, "identical_answers"), (1, 3, "duplicate")]
    assert str(report.problems[0]).startswith(f"{path}:1 (record 2): chosen and rejected identical")
    assert report.problems[1].message == f"same as {path}:1 (record 1)"
