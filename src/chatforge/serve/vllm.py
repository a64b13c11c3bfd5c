"""`chatforge serve --engine vllm`: the same OpenAI-compatible API, served by vLLM's own server (GPU machines).

chatforge resolves the model argument as always (a run directory, a model name, a directory) and hands vLLM
what the run was trained with:

    base weights            --model BASE_DIR (the run's base model; or the merged export directory)
    LoRA adapter            --enable-lora --lora-modules MODEL_ID=ADAPTER_DIR --max-lora-rank R: clients ask
                            for MODEL_ID and get the adapter (the bare base is served as MODEL_ID-base)
    chat template           --chat-template FILE (the run's tokenizer's template, written to a file)
    stop tokens             --generation-config DIR whose generation_config.json lists the run's end-of-turn ids
    --max-concurrency       --max-num-seqs;   --dtype -> --dtype;   --api-key -> VLLM_API_KEY (not on argv)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from chatforge.errors import ChatforgeError

INSTALL_HINT = "pip install vllm  (on a machine with an NVIDIA GPU; see https://docs.vllm.ai)"


def check_installed() -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec("vllm") is not None
    except (ValueError, ImportError):  # a broken or blocked install
        found = False
    if not found:
        raise ChatforgeError("--engine vllm needs vLLM, which is not installed", hint=INSTALL_HINT)


def vllm_command(model: str | None, cfg, gen, workdir: Path) -> tuple[list[str], dict]:
    """(argv, extra environment) that run vLLM's OpenAI server for `model` with the serve/model options."""
    from chatforge.models.load import load_tokenizer
    from chatforge.models.resolve import resolve
    from chatforge.models.template import end_of_turn_ids

    if gen.quantize:
        raise ChatforgeError("--quantize applies to chatforge's engine; with --engine vllm use an export, or vLLM's "
                             "own quantized model formats")
    resolved = resolve(model)
    tokenizer = load_tokenizer(resolved, trust_remote_code=gen.trust_remote_code)
    model_id = cfg.model_id or model or resolved.name
    template = workdir / "chat_template.jinja"
    template.write_text(tokenizer.chat_template, encoding="utf-8")
    generation = workdir / "generation"
    generation.mkdir(parents=True, exist_ok=True)
    (generation / "generation_config.json").write_text(json.dumps({"eos_token_id": end_of_turn_ids(tokenizer)}))
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(resolved.path),
            "--host", cfg.host, "--port", str(cfg.port), "--chat-template", str(template),
            "--generation-config", str(generation), "--max-num-seqs", str(cfg.max_concurrency),
            "--dtype", gen.dtype if gen.dtype != "auto" else "auto"]
    if resolved.adapter is not None:
        if any((resolved.adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            argv += ["--tokenizer", str(resolved.adapter)]
        argv += ["--served-model-name", f"{model_id}-base", "--enable-lora", "--lora-modules",
                 f"{model_id}={resolved.adapter}", "--max-lora-rank", str(_lora_rank(resolved.adapter))]
    else:
        argv += ["--served-model-name", model_id]
    if gen.trust_remote_code:
        argv.append("--trust-remote-code")
    env = {}
    key = cfg.api_key if cfg.api_key is not None else os.environ.get("CHATFORGE_API_KEY")
    if key:
        env["VLLM_API_KEY"] = key
    return argv, env


def _lora_rank(adapter: Path) -> int:
    """vLLM's --max-lora-rank must be one of its supported sizes and at least the adapter's rank."""
    try:
        r = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, KeyError, ValueError) as e:
        raise ChatforgeError(f"{adapter}: cannot read the LoRA rank from adapter_config.json ({e})") from None
    return next((s for s in (8, 16, 32, 64, 128, 256, 320, 512) if s >= r), r)


def run_vllm(model: str | None, cfg, gen) -> int:
    """Run vLLM's server in the foreground until it exits (Ctrl-C stops it); its exit code is ours."""
    import subprocess
    import tempfile

    check_installed()
    with tempfile.TemporaryDirectory(prefix="chatforge-vllm-") as tmp:
        argv, env = vllm_command(model, cfg, gen, Path(tmp))
        print("chatforge serve: starting vLLM: " + " ".join(argv[1:]), file=sys.stderr, flush=True)
        try:
            return subprocess.call(argv, env={**os.environ, **env})
        except KeyboardInterrupt:
            return 0
