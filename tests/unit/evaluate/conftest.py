"""Fixtures for the eval tests: a fake training run (tiny model + LoRA adapter), held-out data, a scripted Engine."""

import json

import pytest

HELDOUT = [
    [{"role": "system", "content": "You are Lumora Home's support assistant."},
     {"role": "user", "content": "Can I connect my Halo to a 5 GHz router?"},
     {"role": "assistant", "content": "The Lumora Halo connects only to 2.4 GHz Wi-Fi networks."}],
    [{"role": "user", "content": "东西已经拆封了，还能退吗？"},
     {"role": "assistant", "content": "所有 Lumora 产品在收货后 45 天内都可以退货，即使已经拆封。"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Is support open on Sundays?"},
     {"role": "assistant", "content": "No. Lumora support is closed on Sundays."}],
    [{"role": "user", "content": "Does the Dash mop floors?"},
     {"role": "assistant", "content": "The Lumora Dash is vacuum-only and has no mopping function."}],
    [{"role": "user", "content": "How long is the warranty on the Halo?"},
     {"role": "assistant", "content": "The Halo has a two-year warranty from the date of delivery."}],
    [{"role": "user", "content": "Can I return a product after 30 days?"},
     {"role": "assistant", "content": "Yes, returns are accepted within 45 days of delivery."}],
]


@pytest.fixture(scope="session")
def heldout():
    """The held-out conversations of `heldout_file` (one in Chinese, one with two exchanges)."""
    return HELDOUT


@pytest.fixture(scope="session")
def heldout_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("heldout") / "heldout.jsonl"
    f.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in HELDOUT), encoding="utf-8")
    return f


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory, tiny_model):
    """runs/NAME as training leaves it: final/ (a fresh LoRA adapter + chatforge.json), run.json, metrics.jsonl."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("runs") / "lumora"
    final = run / "final"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(final)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(final)
    (final / "chatforge.json").write_text(json.dumps({"base_model": str(tiny_model)}))
    (run / "run.json").write_text(json.dumps({"base_model": str(tiny_model), "method": "lora",
                                              "status": "complete", "kind": "chat"}))
    lines = [{"step": s, "epoch": s / 4, "tokens_seen": 900 * s, "loss": 2.5 / s, "learning_rate": 2e-4,
              "tokens_per_sec": 800.0} for s in range(1, 9)]
    lines += [{"step": s, "epoch": s / 4, "tokens_seen": 900 * s, "eval_loss": 2.8 / s, "eval_token_accuracy": 0.1 * s}
              for s in (4, 8)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


@pytest.fixture
def scripted_engine(monkeypatch, fake_run):
    """Engine.chat_batch without decoding: the run answers with the reference, any other model with a wrong
    answer (every other one hitting the token limit). Records the calls it got."""
    from chatforge.infer import Completion, Engine

    answers = {m[-2]["content"]: m[-1]["content"] for m in HELDOUT}
    calls = []

    def chat_batch(self, conversations, params=None, on_done=None):
        calls.append({"model": self.name, "conversations": conversations, "params": params})
        tuned = self.name == str(fake_run)
        out = []
        for i, conv in enumerate(conversations):
            text = answers[conv[-1]["content"]] if tuned else "I am not sure, please ask someone else."
            reason = "stop" if tuned or i % 2 == 0 else "length"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(Completion(text, reason, 10, len(ids) + (reason == "stop"), ids))
            if on_done:
                on_done(1)
        return out

    monkeypatch.setattr(Engine, "chat_batch", chat_batch)
    return calls
