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
