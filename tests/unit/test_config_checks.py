"""The Python API's configs get the checks the CLI gives their options, before any model loads: a bad value
raises one ChatforgeError naming the option, as `chatforge <stage> --option VALUE` would."""

import pytest

from chatforge.errors import ChatforgeError


def test_eval_config_values_are_checked_before_loading():
    from chatforge.evaluate.config import EvalConfig
    from chatforge.evaluate.run import setup

    # model and data are missing too: the value check comes first, nothing is resolved or read
    with pytest.raises(ChatforgeError, match=r"--batch-size 0: .*"):
        setup(EvalConfig(model="no-such-model", data="no-such-file.jsonl", batch_size=0))
    with pytest.raises(ChatforgeError, match=r"--max-tokens -3"):
        setup(EvalConfig(model="no-such-model", data="no-such-file.jsonl", max_tokens=-3))


def test_serve_config_values_are_checked_before_serving():
    from chatforge.serve.app import create_app
    from chatforge.serve.config import ServeConfig

    with pytest.raises(ChatforgeError, match=r"--port 70000: must be 0-65535"):
        create_app(None, ServeConfig(port=70000))
    with pytest.raises(ChatforgeError, match=r"--max-tokens 0"):
        create_app(None, ServeConfig(max_tokens=0))


def test_yaml_errors_name_the_file_and_line_of_the_option(tmp_path):
    from chatforge.config import build
    from chatforge.train.config import TrainConfig

    cfg = tmp_path / "run.yaml"
    cfg.write_text("# my run\nmodel: tiny\nlr: fast\nmethod: lora\n")
    with pytest.raises(ChatforgeError, match=rf"^{cfg}:3: lr"):
        build(TrainConfig, yaml_file=cfg)
    cfg.write_text("model: tiny\nmethod: lorra\n")
    with pytest.raises(ChatforgeError, match=rf"^{cfg}:2: method must be one of"):
        build(TrainConfig, yaml_file=cfg)
    cfg.write_text("model: tiny\n\nlearning_rat: 1e-4\n")
    with pytest.raises(ChatforgeError, match=rf"^{cfg}:3: unknown option learning_rat"):
        build(TrainConfig, yaml_file=cfg)
    cfg.write_text("model: tiny\nlr: [1\n")  # not YAML at all: the parser's line
    with pytest.raises(ChatforgeError, match=rf"^{cfg}:\d+: invalid YAML"):
        build(TrainConfig, yaml_file=cfg)
    cfg.write_text("model: tiny\nlr: 0.002\n")
    assert build(TrainConfig, yaml_file=cfg).lr == 0.002


@pytest.mark.parametrize("value", ["inf", "1e309", "nan"])
def test_an_infinite_or_nan_learning_rate_is_refused(run_cli, value, tmp_path, capsys):
    """lr 1e309 (inf) was accepted: the run trained at an infinite learning rate until its loss became nan."""
    from chatforge.config import check_values
    from chatforge.train.config import TrainConfig

    with pytest.raises(SystemExit) as e:  # argparse's own exit for a bad option value
        run_cli("train", "--data", tmp_path / "x.jsonl", "--lr", value)
    assert e.value.code == 2 and "argument --lr: must be a finite number" in capsys.readouterr().err
    with pytest.raises(ChatforgeError, match=r"--lr .*finite"):
        check_values(TrainConfig(lr=float(value)))
