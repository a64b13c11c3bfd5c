"""What was trained is what is served: a run's dominant system prompt is recorded and applied by default.

The bundled example conversations all carry one system prompt; a run trained on them answers as trained only
when asked with it. `check` reports it, `train` records it, and generate, chat, serve and eval put it in front
of a conversation without a system message of its own (an explicit one still wins).
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
LUMORA = "You are Lumora Home's customer support assistant. Answer briefly and accurately."
OTHER = "You are a pirate. Answer in rhymes."


def _chat(system, user="Hi", answer="Hello"):
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def sensitive_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with its weights scaled up 10x: a random model with small weights answers nearly the same
    whatever the prompt; this one's (greedy) answer depends on every token of it."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sensitive")
    shutil.copytree(tiny_model, out, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(10.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained_run(sensitive_model, tmp_path_factory) -> Path:
    """runs/lumora as `chatforge train` leaves a full fine-tuning run: final/ + run.json recording the prompt."""
    run = tmp_path_factory.mktemp("runs") / "lumora"
    shutil.copytree(sensitive_model, run / "final")
    (run / "final" / "chatforge.json").write_text(json.dumps({"system_prompt": LUMORA}))
    (run / "run.json").write_text(json.dumps({"status": "complete", "system_prompt": LUMORA}))
    return run


# ---- the data: which system prompts, and the dominant one ---------------------------------------------------
def test_dominant_system_prompt_is_the_one_on_more_than_half():
    from chatforge.data.stats import system_prompt_stats

    records = [_chat(LUMORA)] * 4 + [_chat(OTHER), _chat(None)]
    stats = system_prompt_stats(records)
    assert stats["dominant"] == LUMORA and stats["without"] == 1 and stats["distinct"] == 2
    assert stats["top"] == [{"text": LUMORA, "count": 4}, {"text": OTHER, "count": 1}]
    # a majority among prompts that vary per conversation (departments: 63 % one of them) is no default
    departments = [_chat("Cardiology")] * 63 + [_chat("Dermatology")] * 20 + [_chat("Neurology")] * 17
    assert system_prompt_stats(departments)["dominant"] is None
    assert system_prompt_stats([_chat(LUMORA), _chat(OTHER)])["dominant"] is None  # no majority: none
    assert system_prompt_stats([_chat(LUMORA), _chat(None), _chat(None)])["dominant"] is None
    assert system_prompt_stats([_chat(None)])["top"] == []


def test_check_reports_the_system_prompts(run_cli, tiny_model):
    data = EXAMPLES / "lumora_train.jsonl"
    n = len(data.read_text(encoding="utf-8").splitlines())
    code, out, err = run_cli("check", data, "--model", tiny_model, "--no-estimate")
    assert code == 0, err
    assert f"system prompts  1 distinct; {n} of {n} conversations have one" in out
    assert f"{n} (100%)  {json.dumps(LUMORA)}" in out and "the most common one is the default" in out
    code, out, _ = run_cli("check", data, "--model", tiny_model, "--no-estimate", "--json")
    assert json.loads(out)["stats"]["system_prompts"]["dominant"] == LUMORA


# ---- the template helpers ---------------------------------------------------------------------------------------
def test_with_system_never_overrides_an_explicit_one():
    from chatforge.models.template import with_system

    user = [{"role": "user", "content": "Hi"}]
    assert with_system(user, LUMORA) == [{"role": "system", "content": LUMORA}] + user
    assert with_system([{"role": "system", "content": OTHER}] + user, LUMORA)[0]["content"] == OTHER
    assert with_system([{"role": "developer", "content": OTHER}] + user, LUMORA)[0]["role"] == "developer"
    assert with_system(user, None) == user and with_system(user, "") == user


@pytest.mark.parametrize("system", [LUMORA, '他说："你好"\\n{{ raise }} {% endif %} 😀'])
def test_default_system_in_the_template_renders_as_if_given(tiny_model, tiny_gpt2, system):
    from chatforge.models.load import load_tokenizer
    from chatforge.models.template import render, set_default_system, template_default_system

    user = [{"role": "user", "content": "Hi"}]
    for tok in (load_tokenizer(str(tiny_model)), load_tokenizer(str(tiny_gpt2))):  # ChatML, chatforge's default
        given = render(tok, [{"role": "system", "content": system}] + user, add_generation_prompt=True)
        explicit = render(tok, [{"role": "system", "content": OTHER}] + user, add_generation_prompt=True)
        assert set_default_system(tok, system)
        assert render(tok, user, add_generation_prompt=True) == given
        assert render(tok, [{"role": "system", "content": OTHER}] + user, add_generation_prompt=True) == explicit
        assert template_default_system(tok) == system


def test_template_default_system_finds_smollm2s_stock_prompt(tokenizer, tiny_gpt2):
    from chatforge.models.load import load_tokenizer
    from chatforge.models.template import template_default_system

    assert "SmolLM" in template_default_system(tokenizer)  # the default model's template inserts one
    assert template_default_system(load_tokenizer(str(tiny_gpt2))) is None  # chatforge's default has none


# ---- the run records it; resolving the run finds it ------------------------------------------------------------
def test_resolve_reads_the_recorded_system_prompt(trained_run, tiny_model, tmp_path):
    from chatforge.models.resolve import resolve

    assert resolve(str(trained_run)).system_prompt == LUMORA
    assert resolve(str(trained_run / "final")).system_prompt == LUMORA  # final/ on its own: chatforge.json
    assert resolve(str(tiny_model)).system_prompt is None
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "final")
    (run / "run.json").write_text(json.dumps({"system_prompt": None}))  # recorded: none
    assert resolve(str(run)).system_prompt is None


# ---- generate and chat apply it --------------------------------------------------------------------------------
def test_generate_applies_the_runs_system_prompt_unless_told_otherwise(run_cli, trained_run, sensitive_model):
    tiny_model = sensitive_model  # the same weights as the run, without its record
    def answer(*args):
        code, out, err = run_cli("generate", *args, "--max-tokens", "8")
        assert code == 0, err
        return out

    trained = answer(trained_run, "Where is my order?")
    assert trained == answer(tiny_model, "Where is my order?", "--system", LUMORA)
    assert trained != answer(tiny_model, "Where is my order?")  # (the same weights, without it)
    assert answer(trained_run, "Where is my order?", "--system", OTHER) == \
        answer(tiny_model, "Where is my order?", "--system", OTHER)
    assert answer(trained_run, "Where is my order?", "--system", "") == answer(tiny_model, "Where is my order?")


def test_chat_applies_it_and_system_alone_clears_it(run_cli, trained_run, sensitive_model, monkeypatch):
    import io

    def chat(model, *lines, args=()):
        monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))  # piped: one turn per line
        code, out, err = run_cli("chat", model, "--max-tokens", "8", *args)
        assert code == 0, err
        return out

    trained = chat(trained_run, "Where is my order?")
    assert trained == chat(sensitive_model, "Where is my order?", args=("-s", LUMORA))
    assert trained != chat(sensitive_model, "Where is my order?")
    assert chat(trained_run, "/system", "Where is my order?") == chat(sensitive_model, "Where is my order?")


# ---- serve applies it, and the page shows it -------------------------------------------------------------------
def test_serve_applies_the_default_to_requests_without_a_system_message(sensitive_model):
    import httpx

    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(sensitive_model)))
    app = create_app(engine, ServeConfig(max_tokens=8, system=LUMORA + " <b>&</b>"))
    user = [{"role": "user", "content": "Where is my order?"}]

    def ask(c, messages):
        r = c.post("/v1/chat/completions", json={"messages": messages, "temperature": 0})
        assert r.status_code == 200, r.text
        return r.json()

    with background(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        default = ask(c, user)
        given = ask(c, [{"role": "system", "content": LUMORA + " <b>&</b>"}] + user)
        other = ask(c, [{"role": "system", "content": OTHER}] + user)
        none = ask(c, [{"role": "system", "content": " "}] + user)
        page = c.get("/").text
    assert default["usage"]["prompt_tokens"] == given["usage"]["prompt_tokens"]
    assert default["choices"][0]["message"]["content"] == given["choices"][0]["message"]["content"]
    assert other["usage"]["prompt_tokens"] == len(engine.encode_chat([{"role": "system", "content": OTHER}] + user))
    assert other["choices"][0]["message"]["content"] != default["choices"][0]["message"]["content"]
    assert none["usage"]["prompt_tokens"] < default["usage"]["prompt_tokens"]
    shown = LUMORA.replace("'", "&#x27;") + " &lt;b&gt;&amp;&lt;/b&gt;"
    assert f">\n{shown}</textarea>" in page  # (a browser drops the one newline after <textarea>)


def test_serve_banner_names_it():
    from chatforge.commands.serve import _banner
    from chatforge.serve.config import ServeConfig

    assert f"system prompt for requests without one: {LUMORA}" in _banner("m", ServeConfig(system=LUMORA),
                                                                            "http://127.0.0.1:1", False)
    assert "system prompt" not in _banner("m", ServeConfig(), "http://127.0.0.1:1", False)


# ---- eval asks the held-out questions as chat does -------------------------------------------------------------
def test_eval_asks_conversations_without_one_with_the_trained_prompt(trained_run, tmp_path):
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import setup

    held = tmp_path / "held.jsonl"
    held.write_text("\n".join(json.dumps({"messages": m}) for m in (_chat(None, "Q1", "A1"), _chat(OTHER, "Q2", "A2"))))
    plan = setup(EvalConfig(model=str(trained_run), data=str(held), baseline="none", out=str(tmp_path / "r")))
    assert plan.cases[0].prompt == [{"role": "system", "content": LUMORA}, {"role": "user", "content": "Q1"}]
    assert plan.cases[1].prompt[0] == {"role": "system", "content": OTHER}  # explicit wins
    assert any("1 of 2 held-out conversations have no system message" in n and LUMORA in n for n in plan.notes)
