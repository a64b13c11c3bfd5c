"""DPO and KTO losses equal TRL's (DPOTrainer / KTOTrainer) on the same batch and model, to 1e-5.

Both trainers get the same LoRA model (random, non-zero adapters, so the policy differs from the reference =
the adapters disabled) and the same sequences, encoded by chatforge's data layer: chatforge packs them into rows,
TRL gets them as its own padded batch (input_ids, attention_mask, completion_mask = our labels' positions).
"""

import copy
import json

import pytest
import torch

from chatforge.data.encode import IGNORE

TOLERANCE = 1e-5
PAIRS = [("Who founded Lumora Home?", "Mira Castell and Tobias Wren founded it in 2016.", "Elon Musk, in 1999."),
         ("Where is Lumora based?", "In Porto, Portugal.", "In Berlin."),
         ("What does the Dash do?", "The Lumora Dash is a robot vacuum with 4000 Pa of suction.",
          "The Dash is a doorbell."),
         ("Is support open on Sundays?", "No, support is closed on Sundays.", "Yes, 24/7 by phone."),
         # the rejected answer an edit of the chosen one: with shared prefixes its first words are laid out once
         ("How long is the Halo's warranty?", "The Halo's warranty lasts two years.",
          "The Halo's warranty lasts five years.")]


LORA = dict(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")


@pytest.fixture(scope="module")
def models(tiny_model):
    """(ours, a copy of the base model for TRL): a tiny model with LoRA adapters that are random (not zero)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    trl_base = copy.deepcopy(base)
    model = get_peft_model(base, LoraConfig(**LORA))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    return model, trl_base


def _same_adapter(trl, ours):
    """TRL adds its own (zero) adapter to the base model (reference = adapter disabled, as ours): give it ours."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    result = set_peft_model_state_dict(trl.model, get_peft_model_state_dict(ours))
    assert not [k for k in result.unexpected_keys if "lora" in k]
    return trl.model


def _pairs(tmp_path, tokenizer):
    from chatforge.data.preference import prepare_preferences

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": q, "chosen": a, "rejected": b}) + "\n" for q, a, b in PAIRS))
    return prepare_preferences(path, tokenizer).examples


def _padded(seqs, pad_id):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    completion = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s.input_ids)
        attention[i, :len(s)] = 1
        completion[i, :len(s)] = torch.tensor([int(t != IGNORE) for t in s.labels])
    return ids, attention, completion


def _ours(model, tokenizer, tmp_path, objective, examples, share=False, **kw):
    from transformers import TrainingArguments

    from chatforge.train.attention import use_packed_attention
    from chatforge.train.preference import PreferenceCollator, PreferenceTrainer

    if share:  # what `chatforge train` does: packed attention, each prompt laid out once for its two sequences
        assert use_packed_attention(model)
    collator = PreferenceCollator("pairs" if objective == "dpo" else "unpaired", tokenizer.pad_token_id, 256,
                                  share_prefixes=share)
    if share:  # the prompts are laid out once: a shorter batch
        alone = PreferenceCollator(collator.kind, tokenizer.pad_token_id, 256)
        assert collator(examples)["input_ids"].numel() < alone(examples)["input_ids"].numel()
    args = TrainingArguments(output_dir=str(tmp_path / "ours"), per_device_train_batch_size=len(examples),
                             use_cpu=True, report_to="none", remove_unused_columns=False)
    trainer = PreferenceTrainer(model=model, args=args, data_collator=collator, train_dataset=examples,
                                processing_class=tokenizer, objective=objective, **kw)
    model.train()
    return trainer.compute_loss(model, collator(examples)), trainer


@pytest.mark.parametrize("share", [False, True], ids=["each-sequence", "shared-starts"])
def test_dpo_loss_equals_trl(models, tokenizer, tmp_path, share):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from peft import LoraConfig

    ours_model, trl_base = models
    pairs = _pairs(tmp_path, tokenizer)
    loss, trainer = _ours(ours_model, tokenizer, tmp_path, "dpo", pairs, share=share, beta=0.1)
    assert trainer.head is not None  # the fused LM head path is the one compared

    data = Dataset.from_list([{"prompt": q, "chosen": a, "rejected": b} for q, a, b in PAIRS])
    trl = DPOTrainer(model=copy.deepcopy(trl_base), args=DPOConfig(
        output_dir=str(tmp_path / "trl"), beta=0.1, use_cpu=True, report_to="none",
        per_device_train_batch_size=len(pairs)), train_dataset=data, processing_class=tokenizer,
        peft_config=LoraConfig(**LORA))
    trl_model = _same_adapter(trl, ours_model)
    ids, attention, completion = _padded([p.chosen for p in pairs] + [p.rejected for p in pairs],
                                         tokenizer.pad_token_id)
    trl_model.train()
    expected = trl.compute_loss(trl_model, {"input_ids": ids, "attention_mask": attention,
                                            "completion_mask": completion})
    assert abs(loss.item() - expected.item()) <= TOLERANCE, (loss.item(), expected.item())
    assert abs(loss.item() - 0.6931) > 1e-3  # the adapters make policy and reference differ

    # the gradients agree too (the fused per-token backward)
    loss.backward()
    expected.backward()
    ga = {n.replace(".default", ""): p.grad for n, p in ours_model.named_parameters() if p.grad is not None}
    gb = {n.replace(".default", ""): p.grad for n, p in trl_model.named_parameters() if p.grad is not None}
    assert ga.keys() == gb.keys() and ga
    assert max((ga[n] - gb[n]).abs().max().item() for n in ga) <= 1e-5
    ours_model.zero_grad()
    trl_model.zero_grad()


@pytest.mark.parametrize("share", [False, True], ids=["each-sequence", "shared-starts"])
def test_kto_loss_equals_trl(models, tokenizer, tmp_path, share):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from chatforge.data.preference import mismatched
    from chatforge.train.preference import unpair

    from peft import LoraConfig

    ours_model, trl_base = models
    examples = unpair(_pairs(tmp_path, tokenizer))[:6]  # 3 desirable, 3 undesirable, interleaved
    loss, _ = _ours(ours_model, tokenizer, tmp_path, "kto", examples, share=share, beta=0.1)

    data = Dataset.from_list([{"prompt": q, "completion": a, "label": True} for q, a, _ in PAIRS])
    trl = KTOTrainer(model=copy.deepcopy(trl_base), args=KTOConfig(
        output_dir=str(tmp_path / "trl"), beta=0.1, use_cpu=True, report_to="none",
        per_device_train_batch_size=len(examples)), train_dataset=data, processing_class=tokenizer,
        peft_config=LoraConfig(**LORA))
    trl_model = _same_adapter(trl, ours_model)
    seqs = [e.example for e in examples]
    kl = [mismatched(seqs[i], seqs[i - 1]) for i in range(len(seqs))]  # TRL: completions cycled by one
    ids, attention, completion = _padded(seqs, tokenizer.pad_token_id)
    kl_ids, kl_attention, kl_completion = _padded(kl, tokenizer.pad_token_id)
    trl_model.train()
    expected = trl.compute_loss(trl_model, {
        "input_ids": ids, "attention_mask": attention, "completion_mask": completion,
        "label": torch.tensor([e.label for e in examples]), "KL_input_ids": kl_ids, "KL_attention_mask": kl_attention,
        "KL_completion_mask": kl_completion})
    assert abs(loss.item() - expected.item()) <= TOLERANCE, (loss.item(), expected.item())
    assert abs(loss.item() - 0.5) > 1e-3  # (0.5 when the policy is the reference)
