"""`chatforge serve` as a user runs it: a real process, the printed URL, the env API key, Ctrl-C."""

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest


def test_serve_runs_until_ctrl_c_and_prints_how_to_use_it(tiny_model):
    env = dict(os.environ, CHATFORGE_API_KEY="env-key", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "chatforge", "serve", str(tiny_model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        seen = []
        for line in proc.stdout:  # up to the banner's first line, which names the URL
            seen.append(line)
            if " at http://" in line:
                break
        banner = "".join(seen)
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", banner)
        assert url, banner
        url = url.group(1)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        assert httpx.post(url + "/v1/chat/completions", json=body, timeout=30).status_code == 401
        ok = httpx.post(url + "/v1/chat/completions", json=body, timeout=30,
                        headers={"Authorization": "Bearer env-key"})
        assert ok.status_code == 200 and ok.json()["model"] == str(tiny_model)
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"Authorization": "Bearer env-key"},
                          json=dict(body, max_tokens=2000, stream=True), timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGINT)  # Ctrl-C while an answer is streaming: it ends, cleanly
            assert [line for line in lines if line][-1] == "data: [DONE]"
        proc.wait(timeout=30)
        rest = proc.stdout.read()  # (not communicate(): it would miss what the line reader buffered)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    output = banner + rest
    assert f"model id: {tiny_model}" in output and "curl " in output and "OpenAI(base_url=" in output
    assert "chatforge serve: stopped" in output and "Traceback" not in output


def test_a_busy_port_is_a_clear_error_before_the_model_loads(run_cli, tiny_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli("serve", tiny_model, "--port", port)
    assert code == 2
    assert f"--port {port}: cannot listen there" in err and "Traceback" not in err


def test_compare_without_the_log_is_a_clear_error(run_cli, tiny_model):
    code, out, err = run_cli("serve", tiny_model, "--compare", tiny_model, "--no-log", "--port", "0")
    assert code == 2 and "--compare needs the store" in err and "Traceback" not in err


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_refused_while_parsing_before_any_model_loads(run_cli, capsys, tmp_path, port):
    missing = tmp_path / "no-such-model"  # were it loaded first, the error would be about the model
    with pytest.raises(SystemExit) as e:
        run_cli("serve", missing, "--port", port)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert f"argument --port: must be 0-65535 (0: any free port), got {port}" in err, err
    assert "no-such-model" not in err and "OverflowError" not in err and "Traceback" not in err


def test_a_port_out_of_range_in_a_config_mapping_names_the_option():
    from chatforge.config import from_mapping
    from chatforge.errors import ChatforgeError
    from chatforge.serve.config import ServeConfig

    assert from_mapping(ServeConfig, {"port": 0}, "serve.yaml") == {"port": 0}  # 0: any free port
    with pytest.raises(ChatforgeError, match=r"serve.yaml: port: must be 0-65535"):
        from_mapping(ServeConfig, {"port": 70000}, "serve.yaml")
