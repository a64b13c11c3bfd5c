"""Stages report progress through one on_event callback (chatforge.events), not by printing: train, eval and
export each send their events to the caller; the CLI's console view and the studio follow them."""

import io
import json

from chatforge.events import ConsoleView, Event, JsonlSink, Progress, read_events

HELDOUT = [[{"role": "user", "content": "How long is the warranty on the Halo?"},
            {"role": "assistant", "content": "The Halo has a two-year warranty."}],
           [{"role": "user", "content": "东西已经拆封了，还能退吗？"}, {"role": "assistant", "content": "可以，45 天内。"}]]


def test_jsonl_sink_and_reader_skip_a_line_still_being_written(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    sink(Event("train", "start", step=0, total=3))
    sink(Event("train", "step", step=1, total=3, metrics={"loss": 2.5}))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"stage": "train", "phase": "st')  # a writer killed mid-line
    events, offset = read_events(path)
    assert [(e.phase, e.step) for e in events] == [("start", 0), ("step", 1)]
    assert events[1].metrics == {"loss": 2.5}
    with open(path, "a", encoding="utf-8") as f:
        f.write('ep", "step": 2, "total": 3}\n')
    more, _ = read_events(path, offset)
    assert [(e.phase, e.step) for e in more] == [("step", 2)]


def test_console_view_prints_messages_and_closes_finished_bars():
    out = io.StringIO()
    view = ConsoleView(file=out)
    progress = Progress(view, "eval", 2, "tuned: answering")
    assert "tuned: answering" in view.bars
    progress.update()
    progress.update()
    assert view.bars == {}  # the task reached its total: its bar is closed
    view(Event("eval", "message", message="loading base model x"))
    assert "chatforge eval: loading base model x" in out.getvalue()


def test_evaluate_reports_progress_through_on_event(tiny_model, tmp_path, capsys):
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import evaluate

    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in HELDOUT), encoding="utf-8")
    events = []
    evaluate(EvalConfig(model=str(tiny_model), data=str(data), baseline="none", max_tokens=4, bootstrap=10,
                        out=str(tmp_path / "report")), on_event=events.append)
    assert capsys.readouterr().err == ""  # nothing printed: the caller decides what to show
    assert {e.stage for e in events} == {"eval"}
    assert any(e.phase == "message" and "loading tuned model" in e.message for e in events)
    answering = [e for e in events if e.phase == "step" and e.message == "tuned: answering"]
    assert [e.step for e in answering] == [0, 1, 2] and {e.total for e in answering} == {2}
    assert events[-1].phase == "done" and events[-1].metrics["report_dir"] == str(tmp_path / "report")


def test_export_reports_progress_through_on_event(tiny_model, tmp_path, capsys):
    from chatforge.export.config import ExportConfig
    from chatforge.export.run import export

    events = []
    out = export(ExportConfig(model=str(tiny_model), format="hf", out=str(tmp_path / "hf")), on_event=events.append)
    assert capsys.readouterr().err == ""
    messages = [e.message for e in events if e.phase == "message"]
    assert any(m.startswith("loading") for m in messages) and any("verifying" in m for m in messages)
    assert events[-1].phase == "done" and events[-1].metrics["out"] == str(out)


def test_train_reports_progress_through_on_event_and_events_jsonl(tiny_model, tmp_path, monkeypatch):
    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in HELDOUT * 6),
                    encoding="utf-8")
    events = []
    run = train(TrainConfig(model=str(tiny_model), data=str(data), out=str(tmp_path / "run"), max_steps=2,
                            max_length=128, micro_batch_tokens=128, batch_tokens=128, precision="fp32",
                            eval_split=0.0, tensorboard=False), on_event=events.append)
    phases = [e.phase for e in events]
    assert phases[0] == "start" and phases[-1] == "done" and phases.count("step") == 2
    assert events[0].total == 2 and "loss" in events[1].metrics
    written, _ = read_events(run / "events.jsonl")
    assert [e.phase for e in written] == phases
