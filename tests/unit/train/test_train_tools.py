"""A tiny model trained on one tool conversation of the bundled data learns to call, and what it learned is what
the server parses: the official openai client gets message.tool_calls (plain and streamed), sends the tool
result back, and gets the trained answer. The real engine, batch, templates and HTTP server are used."""

import json
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    import torch

    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    rows = [json.loads(x) for x in (EXAMPLES / "lumora_tools_train.jsonl").read_text(encoding="utf-8").splitlines()]
    row = next(r for r in rows if len(r["messages"]) == 5 and r.get("tools"))  # system, ask, call, result, answer
    d = tmp_path_factory.mktemp("tool-run")
    (d / "data.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(TrainConfig(model=str(tiny_model), data=str(d / "data.jsonl"), eval_split=0.0, out=str(d / "run"),
                                method="full", lr=3e-3, max_steps=80, max_length=512, micro_batch_tokens=1024,
                                batch_tokens=1024, precision="fp32", warmup=0.0, scheduler="constant",
                                tensorboard=False))
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(run=run, row=row)


@pytest.fixture(scope="module")
def client(trained):
    from chatforge.infer import Engine
    from chatforge.models.load import load_model
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig
    from chatforge.serve.server import background

    engine = Engine(load_model(str(trained.run)))
    with background(create_app(engine, ServeConfig(max_tokens=64))) as url:
        yield SimpleNamespace(ai=openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60),
                              model=engine.name)


def test_trained_call_round_trip_through_the_server(client, trained):
    system, ask, reference_call, result, answer = trained.row["messages"]
    tools, ai = trained.row["tools"], client.ai
    expected = reference_call["tool_calls"][0]["function"]
    r = ai.chat.completions.create(model=client.model, messages=[system, ask], tools=tools, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.function.name == expected["name"]
    assert json.loads(call.function.arguments) == json.loads(expected["arguments"])
    with ai.chat.completions.stream(model=client.model, messages=[system, ask], tools=tools, temperature=0) as s:
        streamed = s.get_final_completion().choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in streamed] == \
        [(call.function.name, json.loads(call.function.arguments))]
    # the client runs the tool and sends the result back: the model answers with it
    follow = [system, ask, choice.message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": result["content"]}]
    final = ai.chat.completions.create(model=client.model, messages=follow, tools=tools, temperature=0)
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert final.choices[0].message.content == answer["content"]
    # without tools offered, the same model's call is not parsed: it is plain text
    plain = ai.chat.completions.create(model=client.model, messages=[system, ask], temperature=0)
    assert not plain.choices[0].message.tool_calls


def test_training_on_tool_data_records_what_it_trained(trained):
    stats = json.loads((Path(trained.run) / "data_stats.json").read_text())
    train = stats.get("train", stats)
    assert train["examples"] == 1 and 0 < train["tokens_trained"] < train["tokens_total"]
