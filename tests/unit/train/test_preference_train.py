"""`chatforge train --method dpo|kto` on the tiny model: it learns the pairs, and every SFT guarantee holds
(SIGKILL + --resume = uninterrupted, SIGTERM checkpoint, NaN stop, 2-process DDP = 1 process), a DPO run on
top of a LoRA run loads as that run + the new adapter."""

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from chatforge.errors import ChatforgeError
from chatforge.train import checkpoints
from train_helpers import cli_args, finish, read_metrics, start

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> Path:
    """60 pairs from the bundled chats: the right answer vs the answer to another question."""
    rows = [json.loads(line) for line in (EXAMPLES / "lumora_train.jsonl").read_text().splitlines()[:120]]
    rows = [r["messages"] for r in rows if len(r["messages"]) == 3]
    out = []
    for i, m in enumerate(rows):
        other = rows[(i + 7) % len(rows)][-1]["content"]
        if other != m[-1]["content"]:
            out.append({"prompt": m[:2], "chosen": [m[2]], "rejected": [{"role": "assistant", "content": other}]})
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out[:60]))
    return path


@pytest.fixture
def dpo_cfg(make_cfg, pair_file):
    def _make(**overrides):
        values = dict(data=str(pair_file), method="dpo", micro_batch_tokens=512, batch_tokens=1024, max_steps=8,
                      save_every=4, eval_every=4, lr=5e-3, eval_split=0.2)
        values.update(overrides)
        return make_cfg(**values)

    return _make


def test_dpo_learns_its_pairs_and_logs_rewards(dpo_cfg, pair_file, tmp_path):
    from chatforge.train.run import train

    eight = tmp_path / "eight.jsonl"  # one step per epoch: every step sees the same pairs
    eight.write_text("".join(pair_file.read_text().splitlines(keepends=True)[:8]))
    run = train(dpo_cfg(data=str(eight), max_steps=12, eval_every=12, eval_split=0.0))
    rows = [r for r in read_metrics(run) if "loss" in r]
    for key in ("rewards_chosen", "rewards_rejected", "rewards_margin", "reward_accuracy", "logps_chosen"):
        assert all(key in r for r in rows), key
    first, last = rows[:3], rows[-3:]
    assert sum(r["loss"] for r in last) < sum(r["loss"] for r in first) - 0.1
    assert all(r["reward_accuracy"] == 1.0 and r["rewards_margin"] > 0.5 for r in last)
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["kind"] == "pairs" and stats["batching"]["pairs_per_step"] >= 8
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())
    final = run / "final"
    assert (final / "adapter_model.safetensors").is_file()
    assert json.loads((final / "chatforge.json").read_text())["base_model"]


def test_compiled_dpo_trains_like_eager(dpo_cfg, tmp_path):
    """--compile on a DPO run: the blocks run compiled for the policy, reference and evaluation passes (rows of
    --max-length, a varying row count: a graph per kind of pass, not per row count), with eager's losses."""
    from torch._dynamo.utils import counters

    from chatforge.train.run import train

    common = dict(max_steps=4, eval_every=4, save_every=4)
    eager = train(dpo_cfg(out=str(tmp_path / "eager"), **common))
    counters.clear()
    compiled = train(dpo_cfg(out=str(tmp_path / "compiled"), compile=True, **common))
    assert 1 <= counters["stats"]["unique_graphs"] <= 6 and not counters["graph_break"]
    la = [(r.get("loss"), r.get("eval_loss")) for r in read_metrics(eager)]
    lb = [(r.get("loss"), r.get("eval_loss")) for r in read_metrics(compiled)]
    assert len(la) == len(lb) and all(a == pytest.approx(b, abs=1e-4) for x, y in zip(la, lb) for a, b in zip(x, y)
                                      if a is not None)


def test_a_dpo_run_returns_free_memory_after_every_step(dpo_cfg, monkeypatch, tmp_path):
    """Its micro-batches vary in shape: without a trim per step its RSS creeps up (chatforge/memory.py)."""
    from chatforge import memory
    from chatforge.train.run import train

    calls = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(1))
    train(dpo_cfg(max_steps=3, eval_split=0.0, save_every=3))
    assert len(calls) == 3


def test_kto_trains_on_labelled_answers(dpo_cfg, pair_file, tmp_path):
    from chatforge.train.run import train

    labelled = tmp_path / "kto.jsonl"
    rows = [json.loads(line) for line in pair_file.read_text().splitlines()]
    labelled.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r[key], "label": key == "chosen"})
                                + "\n" for r in rows for key in ("chosen", "rejected")))
    run = train(dpo_cfg(data=str(labelled), method="kto", max_steps=4, eval_split=0.0))
    rows = [r for r in read_metrics(run) if "loss" in r]
    assert len(rows) == 4 and all("kl" in r for r in rows) and any("rewards_chosen" in r for r in rows)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_dpo_refuses_chat_data(dpo_cfg, chat_file):
    from chatforge.train.run import train

    with pytest.raises(ChatforgeError, match="needs preference data"):
        train(dpo_cfg(data=str(chat_file)))


def test_nan_loss_stops_a_dpo_run(dpo_cfg, monkeypatch):
    from chatforge.train.preference import PreferenceTrainer
    from chatforge.train.run import train

    real = PreferenceTrainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = real(self, model, inputs, *args, **kwargs)
        return loss * float("nan") if self.state.global_step == 2 else loss

    monkeypatch.setattr(PreferenceTrainer, "compute_loss", poisoned)
    cfg = dpo_cfg(save_every=2, eval_every=None, eval_split=0.0)
    with pytest.raises(ChatforgeError, match=r"became nan at step 3"):
        train(cfg)
    assert [c.name for c in checkpoints.complete(Path(cfg.out) / "checkpoints")] == ["checkpoint-2"]


@pytest.mark.slow
def test_dpo_sigkill_then_resume_matches_an_uninterrupted_run(dpo_cfg, tmp_path):
    import time

    run = dict(max_steps=16, save_every=2, eval_every=8)
    ref = start(["-m", "chatforge", *cli_args(dpo_cfg(out=str(tmp_path / "reference"), **run))])
    victim = start(["-m", "chatforge", *cli_args(dpo_cfg(out=str(tmp_path / "killed"), **run))])
    root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while (checkpoints.last(root) is None or checkpoints.step_of(checkpoints.last(root)) < 4) \
            and time.time() < deadline and victim.poll() is None:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before it could be killed"
    code, _, err = finish(ref)
    assert code == 0, err
    code, _, err = finish(start(["-m", "chatforge", "train", "--out", str(tmp_path / "killed"), "--resume"]))
    assert code == 0, err
    a = load_file(tmp_path / "reference" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    la = {r["step"]: (r["loss"], r["rewards_margin"]) for r in read_metrics(tmp_path / "reference") if "loss" in r}
    lb = {r["step"]: (r["loss"], r["rewards_margin"]) for r in read_metrics(tmp_path / "killed") if "loss" in r}
    assert sorted(la) == sorted(lb) == list(range(1, 17))
    assert max(abs(la[s][0] - lb[s][0]) + abs(la[s][1] - lb[s][1]) for s in la) <= 1e-5


@pytest.mark.slow
def test_dpo_sigterm_saves_a_checkpoint(dpo_cfg, tmp_path):
    import time

    proc = start(["-m", "chatforge", *cli_args(dpo_cfg(out=str(tmp_path / "run"), max_steps=40, save_every=50))])
    root = tmp_path / "run"
    deadline = time.time() + 120
    while not (root / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=120)
    assert code == 143, err
    info = json.loads((root / "run.json").read_text())
    assert info["status"] == "interrupted"
    checkpoints.verify(checkpoints.last(root / "checkpoints"))


@pytest.mark.slow
def test_dpo_two_processes_match_one_process(dpo_cfg, tmp_path):
    common = dict(max_steps=4, save_every=4, eval_every=2, micro_batch_tokens=300, batch_tokens=540)
    single, double = dpo_cfg(out=str(tmp_path / "single"), **common), dpo_cfg(out=str(tmp_path / "ddp"), **common)
    ddp = start(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "chatforge",
                 *cli_args(double)])
    code, _, err = finish(start(["-m", "chatforge", *cli_args(single)]))
    assert code == 0, err
    code, _, err = finish(ddp)
    assert code == 0, err
    stats = {n: json.loads((tmp_path / n / "data_stats.json").read_text())["batching"] for n in ("single", "ddp")}
    assert stats["single"]["pairs_per_step"] == stats["ddp"]["pairs_per_step"]
    assert (stats["single"]["gradient_accumulation"], stats["ddp"]["gradient_accumulation"]) == (2, 1)
    a, b = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    for key in ("loss", "rewards_margin", "reward_accuracy", "eval_loss", "eval_reward_accuracy"):
        xa, xb = [r[key] for r in a if key in r], [r[key] for r in b if key in r]
        assert len(xa) == len(xb) >= 2, key
        assert max(abs(x - y) for x, y in zip(xa, xb)) <= 1e-4, (key, xa, xb)


def test_dpo_on_top_of_a_lora_run_folds_both_adapters(make_cfg, dpo_cfg, tmp_path):
    """The final adapter of a DPO run that started from a LoRA run = that run merged + the new adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from chatforge.models.load import load_model
    from chatforge.train.run import train

    sft = train(make_cfg(out=str(tmp_path / "sft"), max_steps=2, eval_split=0.0, lora_rank=4))
    dpo = train(dpo_cfg(model=str(sft), out=str(tmp_path / "dpo"), max_steps=2, eval_split=0.0, lora_rank=8))
    assert json.loads((dpo / "run.json").read_text())["base_model"] == str(sft)  # eval compares with the SFT run
    ids = torch.arange(3, 40)[None]
    folded = load_model(str(dpo), dtype="float32").model  # (auto is bf16 on AMX CPUs)
    base_dir = json.loads((sft / "final" / "chatforge.json").read_text())["base_model"]
    step = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(sft / "final"))
    step = PeftModel.from_pretrained(step.merge_and_unload(), str(dpo / "checkpoints" / checkpoints.last(
        dpo / "checkpoints").name)).merge_and_unload()
    with torch.no_grad():
        a, b = folded(ids).logits, step(ids).logits
    assert (a - b).abs().max().item() <= 1e-4
    assert json.loads((dpo / "final" / "adapter_config.json").read_text())["r"] == 12


def test_a_steady_fall_of_the_chosen_log_probs_is_warned_once(capsys):
    from types import SimpleNamespace

    from chatforge.train.preference import ChosenLogpsWatch, falling

    assert not falling([-10.0 - 0.1 * (i % 2) for i in range(10)], 10)  # noise around a level
    assert not falling([-10.0 + 0.5 * i for i in range(10)], 10)  # rising
    assert falling([-10.0 - 0.5 * i + 0.2 * (i % 3 == 0) for i in range(10)], 10)  # falling, with noise
    events = []
    watch = ChosenLogpsWatch(events.append)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=20)
    for i in range(14):
        state.global_step = i + 1
        watch.on_log(None, state, None, logs={"logps_chosen": -20.0 - i, "rewards_chosen": -0.1 * i})
    assert [(e.phase, e.step) for e in events] == [("message", 10)]
    assert "log-probability has fallen steadily" in events[0].message and "--sft-weight" in events[0].message
    from chatforge.train.callbacks import ProgressBar

    ProgressBar()(events[0])  # the CLI shows it (no bar yet: on stderr)
    assert "--sft-weight" in capsys.readouterr().err


def test_sft_weight_adds_the_chosen_answers_loss(dpo_cfg, tmp_path):
    from chatforge.train.run import train

    run = train(dpo_cfg(max_steps=2, eval_split=0.0, sft_weight=0.5, out=str(tmp_path / "sft")))
    rows = [r for r in read_metrics(run) if "loss" in r]
    assert all(r["sft_loss"] > 1.0 for r in rows)  # a random tiny model: high cross entropy
    assert rows[0]["loss"] == pytest.approx(0.6931 + 0.5 * rows[0]["sft_loss"], abs=1e-3)  # step 1: DPO at log 2
