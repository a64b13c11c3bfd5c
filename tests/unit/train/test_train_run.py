"""In-process training runs on the tiny model: what changes, what is written, what is refused."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import read_metrics


def _trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _run_in_steps(cfg):
    """setup -> snapshot -> fit -> save, so tests can compare weights before and after."""
    from chatforge.train.run import fit, save, setup

    run = setup(cfg)
    before = _trainable_snapshot(run.trainer.model)
    assert fit(run) is None
    save(run)
    return run, before


LUMORA_SYSTEM = "You are Lumora Home's customer support assistant. Answer briefly and accurately."


def test_the_first_warm_up_step_learns_and_the_schedule_is_transformers_after_warm_up(make_cfg):
    """transformers' warm-up runs optimizer step 1 at lr 0: a 1-step run saved the base model unchanged. Here step
    s of W warm-up steps runs at s / (W + 1) of the peak (s from 1); after warm-up, transformers' cosine decay."""
    import math

    run, before = _run_in_steps(make_cfg(max_steps=1, eval_split=0.0, save_every=1))
    after = dict(run.trainer.model.named_parameters())
    assert all(not torch.equal(p, after[n].detach()) for n, p in before.items() if "lora_B" in n)
    assert read_metrics(run.dir)[0]["learning_rate"] == pytest.approx(5e-3 / 2)  # W = ceil(0.03 x 1) = 1

    run, _ = _run_in_steps(make_cfg(max_steps=6, warmup=0.5, eval_split=0.0, out=str(run.dir) + "-2"))
    lrs = [r["learning_rate"] for r in read_metrics(run.dir) if "loss" in r]
    cosine = [0.5 * (1 + math.cos(math.pi * (s - 3) / 3)) for s in range(3, 6)]  # transformers' own formula
    assert lrs == pytest.approx([5e-3 * f for f in [1 / 4, 2 / 4, 3 / 4] + cosine])


def test_lora_trains_adapters_only_and_writes_a_usable_run_dir(make_cfg, tiny_model):
    run, before = _run_in_steps(make_cfg(max_steps=8))
    model = run.trainer.model
    # every trainable parameter is a LoRA matrix, and every one of them moved
    assert before and all("lora_" in n for n in before)
    after = dict(model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged
    # the base weights are untouched
    base = load_file(tiny_model / "model.safetensors")
    merged_free = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                   for n, p in model.named_parameters() if "lora_" not in n}
    for name, weight in base.items():
        assert torch.equal(merged_free[name].detach(), weight), name
    # loss goes down: train loss over the run, eval loss from first to last eval
    rows = read_metrics(run.dir)
    train = [r["loss"] for r in rows if "loss" in r]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert len(train) == 8 and sum(train[-3:]) / 3 < sum(train[:3]) / 3
    assert len(evals) >= 2 and evals[-1] < evals[0]
    # the run directory, as the contract says
    for name in ("config.yaml", "run.json", "data_stats.json", "metrics.jsonl", "README.md",
                 "final/adapter_config.json", "final/adapter_model.safetensors", "final/chatforge.json",
                 "final/tokenizer.json"):
        assert (run.dir / name).is_file(), name
    assert list((run.dir / "tb").rglob("events.out.tfevents.*"))
    info = json.loads((run.dir / "run.json").read_text())
    assert info["status"] == "complete" and info["method"] == "lora" and info["kind"] == "chat"
    assert info["base_model"] == str(tiny_model)
    # the data's one system prompt is the run's: recorded, and applied wherever the run is used
    assert info["system_prompt"] == LUMORA_SYSTEM
    assert json.loads((run.dir / "final" / "chatforge.json").read_text())["system_prompt"] == LUMORA_SYSTEM
    assert LUMORA_SYSTEM in (run.dir / "README.md").read_text()
    assert set(rows[0]) == {"step", "epoch", "tokens_seen", "loss", "learning_rate", "tokens_per_sec", "mfu"}
    # MFU: tokens/s x model FLOPs per token (~4N for LoRA) / the matmul peak measured at the start
    # (not < 1: the peak is measured as the machine is found, and under the test runner's other process it can
    # come out low; print_summary says so, see test_mfu.py)
    assert all(r["mfu"] > 0 for r in rows if "loss" in r)
    assert info["mfu"] == pytest.approx(info["tokens_per_sec"] * run.flops_per_token / run.peak_flops, rel=1e-3)
    assert info["attention"] == "packed"
    # the adapter weights (written 0600 by safetensors) are as readable as the files beside them, in the
    # final model and in every checkpoint
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {str(p.relative_to(run.dir)): oct(p.stat().st_mode & 0o777) for p in run.dir.rglob("*.safetensors")}
    assert len(modes) >= 2 and set(modes.values()) == {oct(0o666 & ~mask)}, modes
    eval_row = next(r for r in rows if "eval_loss" in r)
    assert set(eval_row) == {"step", "epoch", "tokens_seen", "eval_loss", "eval_token_accuracy"}
    assert [r["tokens_seen"] for r in rows if "loss" in r] == sorted({r["tokens_seen"] for r in rows if "loss" in r})
    # ... and it is a model: the adapter loads on its base and generates
    from chatforge.infer import Engine, SamplingParams
    from chatforge.models.load import load_model

    loaded = load_model(str(run.dir))
    assert loaded.resolved.adapter == run.dir / "final" and loaded.resolved.system_prompt == LUMORA_SYSTEM
    out = Engine(loaded).chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=3))
    assert out.completion_tokens >= 1


def test_full_changes_every_weight(make_cfg):
    run, before = _run_in_steps(make_cfg(method="full", lr=1e-3, max_steps=2, eval_every=None, save_every=2))
    after = dict(run.trainer.model.named_parameters())
    assert len(before) == len(after)
    assert not [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert (run.dir / "final" / "model.safetensors").is_file()
    # a full model stands alone (no base_model to apply it to); it records the system prompt it was trained with
    assert json.loads((run.dir / "final" / "chatforge.json").read_text()) == {"system_prompt": LUMORA_SYSTEM}
    saved = load_file(run.dir / "final" / "model.safetensors")
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(saved[weight], after[weight].detach())


def test_freeze_trains_only_the_last_layers_and_the_final_norm(make_cfg):
    run, before = _run_in_steps(make_cfg(method="freeze", freeze_layers=1, lr=1e-3, max_steps=2, save_every=2))
    assert before and all(n.startswith(("model.layers.1.", "model.norm.")) for n in before)
    after = dict(run.trainer.model.named_parameters())
    assert not [n for n, p in before.items() if torch.equal(p, after[n].detach())]


def test_freeze_finds_the_layers_of_a_gpt2_model(make_cfg, tiny_gpt2):
    """GPT-2 names its blocks `h` and its final norm `ln_f` (Llama: `layers`, `norm`)."""
    run, before = _run_in_steps(make_cfg(model=str(tiny_gpt2), method="freeze", freeze_layers=1, lr=1e-3,
                                         max_steps=2, save_every=2))
    assert before and all(n.startswith(("transformer.h.1.", "transformer.ln_f.")) for n in before)
    assert any(n.startswith("transformer.ln_f.") for n in before)
    after = dict(run.trainer.model.named_parameters())
    assert not [n for n, p in before.items() if torch.equal(p, after[n].detach())]


def test_selective_head_loss_equals_the_models_own_loss(make_cfg):
    """Only trained positions go through the LM head, yet the loss is exactly the full-logits loss."""
    from chatforge.train.run import setup

    run = setup(make_cfg(method="full"))
    trainer = run.trainer
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    ours = trainer.compute_loss(model, batch)
    inputs = {k: v for k, v in batch.items() if k != "num_tokens"}
    theirs = model(**inputs).loss  # HF: full logits (B, T, V), mean over shifted labels
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_gradient_accumulation_normalises_over_the_whole_step(make_cfg, tmp_path):
    """2 micro-batches of 1 row == 1 micro-batch of 2 rows: the loss is the mean over the step's tokens."""
    from chatforge.train.run import train

    common = dict(method="full", lr=1e-3, max_steps=2, batch_tokens=256, eval_split=0.0, save_every=2)
    a = train(make_cfg(micro_batch_tokens=128, out=str(tmp_path / "a"), **common))
    b = train(make_cfg(micro_batch_tokens=256, out=str(tmp_path / "b"), **common))
    assert json.loads((a / "data_stats.json").read_text())["batching"]["gradient_accumulation"] == 2
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5
    la = [r["loss"] for r in read_metrics(a)]
    lb = [r["loss"] for r in read_metrics(b)]
    assert la == pytest.approx(lb, abs=1e-5)


def test_config_yaml_reproduces_the_run(make_cfg, tmp_path, run_cli):
    from chatforge.train.run import train

    first = train(make_cfg(max_steps=3, save_every=3))
    code, out, err = run_cli("train", "--config", first / "config.yaml", "--out", tmp_path / "again")
    assert code == 0, err
    a = load_file(first / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "again" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "eval loss" in out and "tokens/s" in out  # the summary table


def test_raw_text_continues_pretraining(make_cfg, tmp_path):
    from chatforge.train.run import train

    text = tmp_path / "corpus.txt"
    text.write_text("Lumora Home makes smart lamps.\n\nThe lamps dim at night.\n" * 40, encoding="utf-8")
    run_dir = train(make_cfg(data=str(text), max_steps=2, save_every=2, eval_every=None))
    info = json.loads((run_dir / "run.json").read_text())
    assert info["kind"] == "text" and info["status"] == "complete"


def test_refusals_are_clear_errors(make_cfg, run_cli, tiny_model, chat_file, tmp_path):
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--objective", "mlm")
    assert code == 2 and "causal" in err and "masked-LM" in err and "Traceback" not in err
    code, _, err = run_cli("train", "--model", tiny_model)
    assert code == 2 and "--data is required" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "run.json").write_text("{}")
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", tmp_path / "taken")
    assert code == 2 and "already holds a training run" in err and "--resume" in err


@pytest.mark.parametrize("flag, value, needle", [
    ("--lr", "-1", "must be > 0"), ("--lr", "0", "must be > 0"), ("--warmup", "2", "[0, 1)"),
    ("--weight-decay", "-1", "must be >= 0"), ("--lora-dropout", "1.5", "[0, 1)"), ("--lora-alpha", "0", ">= 1"),
    ("--epochs", "abc", "'auto' or a whole number"), ("--max-steps", "x", "not a whole number"),
    ("--lr", "fast", "not a number"), ("--seed", "-5", "must be >= 0"), ("--seed", "4294967296", "below 2**32")])
def test_out_of_range_options_are_refused_before_anything_is_written(run_cli, capsys, tiny_model, chat_file,
                                                                      tmp_path, flag, value, needle):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:  # argparse's own error: usage, then "argument FLAG: ..."
        run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", out, flag, value)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: " in err and needle in err and "Traceback" not in err
    assert "_epochs" not in err and "positive_int" not in err  # no internal names
    assert not out.exists()


def test_the_python_api_gets_the_same_checks(make_cfg):
    from chatforge.errors import ChatforgeError
    from chatforge.train.run import train

    with pytest.raises(ChatforgeError, match="--lr -1.0: must be > 0"):
        train(make_cfg(lr=-1.0))
    with pytest.raises(ChatforgeError, match="--warmup 2: must be in"):
        train(make_cfg(warmup=2))


def test_out_that_is_a_file_and_impossible_layer_counts_are_clear_errors(run_cli, tiny_model, chat_file, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", tmp_path / "notes.txt")
    assert code == 2 and "is a file" in err and (tmp_path / "notes.txt").read_text() == "mine"
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", tmp_path / "f",
                           "--method", "freeze", "--freeze-layers", "100", "--max-length", "128")
    assert code == 2 and "--freeze-layers 100: the model has 2 transformer layers" in err


def test_a_step_is_never_larger_than_batch_tokens(make_cfg, run_cli, tiny_model, chat_file, tmp_path):
    """--batch-tokens below --micro-batch-tokens makes the forward pass smaller (it was silently a full one);
    below one row of --max-length it is refused."""
    import json

    from chatforge.train.run import train

    run = train(make_cfg(batch_tokens=128, micro_batch_tokens=512, max_steps=1, save_every=1, eval_split=0.0))
    batching = json.loads((run / "data_stats.json").read_text())["batching"]
    assert batching["tokens_per_step"] == 128 and batching["micro_batch_rows"] == 1
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", tmp_path / "small",
                           "--batch-tokens", "512")
    assert code == 2 and "--batch-tokens 512 is less than one row of --max-length 1024" in err


def test_a_run_that_failed_before_its_first_checkpoint_can_be_started_again(make_cfg, tmp_path, capsys):
    from chatforge.train.run import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "failed", "error": "out of memory"}))
    (out / "checkpoints").mkdir()
    (out / "events.jsonl").write_text('{"stage": "train", "kind": "error"}\n')
    run = train(make_cfg(max_steps=1, save_every=1, eval_split=0.0))
    assert "failed before its first checkpoint; starting it again" in capsys.readouterr().err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and "error" not in info
    assert '"error"' not in (run / "events.jsonl").read_text().splitlines()[0]
    # a failed run that has a checkpoint is kept: it can be continued with --resume
    (run / "run.json").write_text(json.dumps({"status": "failed"}))
    from chatforge.errors import ChatforgeError

    with pytest.raises(ChatforgeError, match="already holds a training run"):
        train(make_cfg(max_steps=1, save_every=1, eval_split=0.0))


def test_bf16_choice():
    from chatforge.train.run import use_bf16

    from chatforge.models.load import cpu_prefers_bf16

    assert use_bf16("bf16", "cpu") and not use_bf16("fp32", "cpu")
    assert use_bf16("auto", "cpu") is cpu_prefers_bf16()


def test_compiled_layers_train_like_eager_ones(make_cfg, tmp_path):
    """--compile: every block runs as a compiled graph (rows padded to one shape), with eager's losses."""
    from torch._dynamo.utils import counters

    from chatforge.train.run import train

    common = dict(method="full", max_steps=2, eval_split=0.0, save_every=2)
    eager = train(make_cfg(out=str(tmp_path / "eager"), **common))
    counters.clear()
    compiled = train(make_cfg(out=str(tmp_path / "compiled"), compile=True, **common))
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    la = [r["loss"] for r in read_metrics(eager)]
    lb = [r["loss"] for r in read_metrics(compiled)]
    assert la == pytest.approx(lb, abs=1e-4)


def test_compile_defaults_to_on_for_long_runs_only():
    """--compile's default: on from AUTO_COMPILE_TOKENS planned tokens (where its minute of compiling pays back)."""
    import dataclasses

    from chatforge.train.config import AUTO_COMPILE_TOKENS, TrainConfig
    from chatforge.train.run import _resolve, can_compile

    cfg = TrainConfig(data="d.jsonl", out="o", device="cpu")
    assert _resolve(cfg, n_examples=100, n_tokens=5_000).compile is False  # 25 epochs x 5k tokens < 250k
    assert _resolve(cfg, n_examples=1000, n_tokens=AUTO_COMPILE_TOKENS // 3 + 1).compile is can_compile("cpu")
    assert _resolve(dataclasses.replace(cfg, max_steps=2), n_examples=1000, n_tokens=10**7).compile is False
    assert _resolve(dataclasses.replace(cfg, compile=False), n_examples=1000, n_tokens=10**7).compile is False
    assert _resolve(dataclasses.replace(cfg, compile=True), n_examples=10, n_tokens=10).compile is True
    dpo = dataclasses.replace(cfg, method="dpo")  # preference runs too (3 epochs at most)
    assert _resolve(dpo, n_examples=1000, n_tokens=AUTO_COMPILE_TOKENS // 3 + 1).compile is can_compile("cpu")
    assert _resolve(dpo, n_examples=1000, n_tokens=AUTO_COMPILE_TOKENS // 4).compile is False


def test_out_that_holds_other_files_is_refused_before_anything_is_written(run_cli, tiny_model, chat_file, tmp_path):
    """A run writes config.yaml, README.md (its model card) ... into --out: never over the user's own files."""
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--out", mine, "--max-length", "128",
                           "--batch-tokens", "256")
    assert code == 2 and f"--out {mine}: the directory exists and holds files that are not a chatforge run" in err
    assert sorted(p.name for p in mine.iterdir()) == ["README.md"] and (mine / "README.md").read_text() == "my notes"


def test_eval_data_of_another_kind_than_the_training_data_is_refused(run_cli, tiny_model, chat_file, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("Lumora Home makes smart lamps.\n\nThe lamps dim at night.\n" * 40, encoding="utf-8")
    common = ["--model", tiny_model, "--max-length", "128", "--batch-tokens", "256", "--max-steps", "1"]
    code, _, err = run_cli("train", *common, "--data", chat_file, "--eval-data", text, "--out", tmp_path / "a")
    assert code == 2 and f"--eval-data {text}: raw text, but the training data {chat_file} is conversations" in err
    code, _, err = run_cli("train", *common, "--data", text, "--eval-data", chat_file, "--out", tmp_path / "b")
    assert code == 2 and "conversations, but the training data" in err and "is raw text" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_config_yaml_records_absolute_paths_and_works_from_another_directory(make_cfg, tmp_path, run_cli,
                                                                               monkeypatch, chat_file, tiny_model):
    import shutil

    import yaml

    from chatforge.train.run import train

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(chat_file, work / "chats.jsonl")
    monkeypatch.chdir(work)
    first = train(make_cfg(data="chats.jsonl", out="runs/first", max_steps=1, save_every=1, eval_split=0.0))
    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["data"] == str(work / "chats.jsonl") and saved["out"] == str(work / "runs" / "first")
    assert saved["model"] == str(Path(tiny_model).resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative data path would not be found
    code, _, err = run_cli("train", "--config", work / "runs" / "first" / "config.yaml", "--out", tmp_path / "again")
    assert code == 0, err


def test_resume_without_out_is_refused(run_cli, tiny_model, chat_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("train", "--model", tiny_model, "--data", chat_file, "--resume")
    assert code == 2 and "--resume needs --out" in err and not (tmp_path / "runs").exists()
