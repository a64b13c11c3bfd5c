"""Packing: best-fit rows, positions restarting per example, and no attention across examples (CPU, sdpa and
eager): a packed batch gives the same loss and the same logits as the examples run one by one."""

import pytest
import torch

from chatforge.data.encode import IGNORE, Encoded, encode_chat
from chatforge.data.pack import collate, pack, padding_share


def _examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(10, 5000, (n,), generator=g).tolist()
        out.append(Encoded(ids, [t if j >= n // 3 else IGNORE for j, t in enumerate(ids)]))
    return out


def test_best_fit_rows_and_positions():
    exs = _examples([9, 7, 5, 4, 3, 2])
    rows = pack(exs, 12)
    # best fit decreasing: 9 -> A, 7 -> B, 5 -> B (exact fit), 4 -> C, 3 -> A (exact fit), 2 -> C
    assert sorted(len(r) for r in rows) == [6, 12, 12]
    assert sum(len(r) for r in rows) == 30 and all(len(r) <= 12 for r in rows)
    for r in rows:
        starts = [i for i, p in enumerate(r.position_ids) if p == 0]
        for s, e in zip(starts, starts[1:] + [len(r)]):
            assert r.position_ids[s:e] == list(range(e - s))
            assert r.labels[s] == IGNORE  # no target across the boundary
    assert padding_share(rows, 12) == pytest.approx(1 - 30 / 36)


def test_too_long_example_is_refused():
    with pytest.raises(ValueError, match="longer than max_length"):
        pack(_examples([13]), 12)


def test_collate_pads_right_with_ignored_labels():
    rows = pack(_examples([5, 3]), 5)
    batch = collate(rows, pad_id=7)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].shape == (2, 5)
    assert batch["input_ids"][1, 3:].tolist() == [7, 7]
    assert batch["labels"][1, 3:].tolist() == [IGNORE, IGNORE]
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 0, 1]


def _model(path, attn):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    m.config.use_cache = False  # as transformers.Trainer sets it; a KV cache disables packed-sequence masks
    return m.eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(tiny_model, attn):
    model = _model(tiny_model, attn)
    exs = _examples([30, 17, 9, 25, 6, 12])
    rows = pack(exs, 48)
    assert len(rows) < len(exs)
    with torch.no_grad():
        packed = model(**collate(rows, 0)).loss
        unpacked = model(**collate(exs, 0)).loss  # one example per row, right padded
    assert abs(packed.item() - unpacked.item()) < 1e-4


def test_gpt2_packed_loss_equals_unpacked(tiny_gpt2):
    model = _model(tiny_gpt2, "sdpa")
    exs = _examples([20, 11, 7, 15])
    with torch.no_grad():
        packed = model(**collate(pack(exs, 32), 0)).loss
        unpacked = model(**collate(exs, 0)).loss
    assert abs(packed.item() - unpacked.item()) < 1e-4


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_examples_in_a_row_cannot_see_each_other(tiny_model, attn):
    model = _model(tiny_model, attn)
    exs = _examples([10, 8])
    row = pack(exs, 18)[0]  # [10 tokens of A][8 tokens of B]
    batch = collate([row], 0)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["input_ids"][0, :10] = 42  # rewrite all of A
    with torch.no_grad():
        base = model(**batch).logits[0]
        after = model(**changed).logits[0]
        alone = model(input_ids=torch.tensor([exs[1].input_ids])).logits[0]
    assert (base[:10] - after[:10]).abs().max() > 1e-3  # A did change ...
    assert torch.allclose(base[10:], after[10:], atol=1e-5)  # ... and B did not notice
    assert torch.allclose(base[10:], alone, atol=1e-5)  # B packed == B on its own (positions restart)


def test_real_chats_pack_with_equal_loss(tiny_model, tokenizer):
    model = _model(tiny_model, "sdpa")
    chats = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": "Answer " * i}]
             for i in range(1, 7)]
    exs = [encode_chat(tokenizer, c) for c in chats]
    with torch.no_grad():
        packed = model(**collate(pack(exs, 128), tokenizer.pad_token_id)).loss
        unpacked = model(**collate(exs, tokenizer.pad_token_id)).loss
    assert abs(packed.item() - unpacked.item()) < 1e-4
