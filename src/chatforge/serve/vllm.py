"""`chatforge serve --engine vllm`: the same OpenAI-compatible API, served by vLLM's own server (GPU machines).

chatforge resolves the model argument as always (a run directory, a model name, a directory) and hands vLLM
what the run was trained with:

    base weights            --model BASE_DIR (the run's base model; or the merged export directory)
    LoRA adapter            --enable-lora --lora-modules MODEL_ID=ADAPTER_DIR --max-lora-rank R: clients ask
                            for MODEL_ID and get the adapter (the bare base is served as MODEL_ID-base)
    chat template           --chat-template FILE (the run's tokenizer's template, written to a file)
    stop tokens             --generation-config DIR whose generation_config.json lists the run's end-of-turn ids
    --max-concurrency       --max-num-seqs;   --dtype -> --dtype;   --api-key -> VLLM_API_KEY (not on argv)

Every exchange is kept in the store as with chatforge's engine (unless --no-log or "store": false): vLLM then
listens on a private port of 127.0.0.1 and chatforge's front (`proxy_app`) listens on --host/--port, checks the
API key, forwards each request as it is, keeps the exchange (messages or prompt, answer, model and fingerprint,
sampling, tokens, latency) before the last chunk or the JSON answer goes back, and serves /v1/feedback.
With --no-log, vLLM listens on --host/--port itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the routes' annotations here

from chatforge.errors import ChatforgeError

log = logging.getLogger("chatforge.serve")
INSTALL_HINT = "pip install vllm  (on a machine with an NVIDIA GPU; see https://docs.vllm.ai)"


def check_installed() -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec("vllm") is not None
    except (ValueError, ImportError):  # a broken or blocked install
        found = False
    if not found:
        raise ChatforgeError("--engine vllm needs vLLM, which is not installed", hint=INSTALL_HINT)


def vllm_command(model: str | None, cfg, gen, workdir: Path, *, host: str | None = None,
                 port: int | None = None) -> tuple[list[str], dict]:
    """(argv, extra environment) that run vLLM's OpenAI server for `model` with the serve/model options, on
    host:port (default: --host/--port; chatforge's logging front passes a private one)."""
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
            "--host", host or cfg.host, "--port", str(port or cfg.port), "--chat-template", str(template),
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


def served_models(model: str | None, cfg) -> dict:
    """What vLLM serves under each model id (for the store): the run itself, and with an adapter its bare base
    as MODEL_ID-base (the ids vllm_command gives vLLM)."""
    from types import SimpleNamespace

    from chatforge.models.resolve import resolve

    resolved = resolve(model)
    model_id = cfg.model_id or model or resolved.name
    models = {model_id: resolved}
    if resolved.adapter is not None:
        models[f"{model_id}-base"] = SimpleNamespace(name=f"{model_id}-base", path=resolved.path, adapter=None)
    return models


def run_vllm(model: str | None, cfg, gen, log_cfg=None) -> int:
    """Run vLLM's server until it exits (Ctrl-C stops it); its exit code is ours. With logging on (`log_cfg`, a
    store.config.LogConfig), vLLM listens privately and chatforge's logging front serves --host/--port."""
    import subprocess
    import tempfile

    check_installed()
    keep = log_cfg is not None and log_cfg.log
    sock = None
    if keep:
        from chatforge.serve.server import bind

        sock = bind(cfg.host, cfg.port)  # the user's address first: a busy port fails before vLLM starts
    with tempfile.TemporaryDirectory(prefix="chatforge-vllm-") as tmp:
        private = _free_port() if keep else None
        argv, env = vllm_command(model, cfg, gen, Path(tmp), host="127.0.0.1" if keep else None, port=private)
        print("chatforge serve: starting vLLM: " + " ".join(argv[1:]), file=sys.stderr, flush=True)
        if not keep:
            try:
                return subprocess.call(argv, env={**os.environ, **env})
            except KeyboardInterrupt:
                return 0
        return _serve_logged(model, cfg, log_cfg, sock, argv, env, f"http://127.0.0.1:{private}")


def _serve_logged(model, cfg, log_cfg, sock, argv, env, upstream: str) -> int:
    import subprocess

    from chatforge.serve import server
    from chatforge.serve.feedback import Keeper

    import signal
    import threading

    store, ids = log_cfg.open(source="serve", models=served_models(model, cfg))
    proc = subprocess.Popen(argv, env={**os.environ, **env})

    def watch():  # vLLM gone (it failed to load the model, or crashed): stop the front too, as Ctrl-C would
        if proc.wait() not in (0, -signal.SIGTERM, -signal.SIGINT):
            print(f"chatforge serve: vLLM exited with code {proc.returncode}; stopping", file=sys.stderr,
                  flush=True)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="chatforge-vllm-watch", daemon=True).start()
    try:
        app = proxy_app(upstream, Keeper(store, ids), api_key=_key(cfg), upstream_key=env.get("VLLM_API_KEY"),
                        max_body_bytes=cfg.max_body_bytes)
        print(f"chatforge serve: vLLM behind {server.url_of(sock)} (every exchange kept in {store.path}; "
              "requests get 503 until vLLM has loaded the model)", file=sys.stderr, flush=True)
        server.run(app, sock)
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        store.close()
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code


def _key(cfg) -> str | None:
    return cfg.api_key if cfg.api_key is not None else os.environ.get("CHATFORGE_API_KEY") or None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the logging front ------------------------------------------------------------------------------------------

_SAMPLING = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
             "frequency_penalty", "presence_penalty", "seed", "stop")


def record(path: str, request: dict, answer: str, finish_reason: str | None, usage: dict | None,
           latency_s: float) -> dict:
    """What the store keeps of one exchange vLLM answered (Store.log_completion's fields, less id and model):
    the request's messages (chat) or prompt (text), the answer, its sampling settings and token counts."""
    stop = request.get("stop")
    sampling = {k: request[k] for k in _SAMPLING if request.get(k) is not None}
    if "stop" in sampling:
        sampling["stop"] = [stop] if isinstance(stop, str) else list(stop)
    usage = usage or {}
    out = dict(answer=answer, finish_reason=finish_reason or "stop", sampling=sampling,
               prompt_tokens=int(usage.get("prompt_tokens") or 0),
               completion_tokens=int(usage.get("completion_tokens") or 0), latency_s=latency_s,
               conversation_id=(request.get("metadata") or {}).get("conversation_id"))
    if path == "/v1/chat/completions":
        out["messages"] = [{"role": m.get("role"), "content": _text(m.get("content"))}
                           for m in request.get("messages") or []]
    else:
        prompt = request.get("prompt")
        out["prompt"] = prompt if isinstance(prompt, str) else "".join(prompt or [])
    return out


def _text(content) -> str:
    """A message's content as text (OpenAI's list of parts: their text, joined)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class _Answer:
    """An answer read from vLLM's JSON or accumulated from its stream's chunks."""

    def __init__(self):
        self.id, self.text, self.finish, self.usage = None, "", None, None

    def add(self, body: dict) -> None:
        self.id = self.id or body.get("id")
        self.usage = body.get("usage") or self.usage
        for choice in body.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            part = choice.get("delta", {}).get("content") if "delta" in choice else (
                choice.get("message", {}).get("content") if "message" in choice else choice.get("text"))
            self.text += part or ""
            self.finish = choice.get("finish_reason") or self.finish


def proxy_app(upstream: str, keeper, *, api_key: str | None = None, upstream_key: str | None = None,
              max_body_bytes: int = 1 << 20, timeout: float = 600.0):
    """chatforge's front for another OpenAI-compatible server at `upstream` (vLLM's): the same routes, each
    request forwarded as it is (less the store's own fields "store" and "metadata"), each answered exchange kept
    through `keeper` (serve.feedback.Keeper) before the answer's end is sent, and /v1/feedback."""
    import json
    import time

    import httpx
    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from chatforge.serve.app import ApiError, add_error_handlers, add_feedback_api, authorized

    client = httpx.AsyncClient(base_url=upstream, timeout=timeout,
                               headers={"Authorization": f"Bearer {upstream_key}"} if upstream_key else None)
    app = FastAPI(title="chatforge (vLLM)", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)

    def check_key(request: Request) -> None:
        if api_key and not authorized(request.headers.get("authorization"), api_key):
            raise ApiError(401, "missing or incorrect API key: send the header `Authorization: Bearer KEY`",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def send(method: str, path: str, body: dict | None = None, stream: bool = False) -> httpx.Response:
        try:
            return await client.send(client.build_request(method, path, json=body), stream=stream)
        except httpx.TransportError as e:
            raise ApiError(503, f"vLLM is not answering yet (still loading the model?) or has stopped ({e})",
                           type="server_error", code="upstream_unavailable", headers={"Retry-After": "5"}) from None

    async def generate(request: Request):
        path = request.url.path
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise ApiError(413, f"the request body is over the limit of {max_body_bytes} bytes", code="body_too_large")
        try:
            req = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
        if not isinstance(req, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        body = {k: v for k, v in req.items() if k not in ("store", "metadata")}
        model = body.get("model") or next(iter(keeper.model_ids), None)
        kept = keeper.wants(model, req.get("store"))
        started = time.monotonic()
        stream = bool(body.get("stream"))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if stream and kept:  # the token counts come in a last chunk, which the client gets only if it asked
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        resp = await send("POST", path, body, stream=stream)
        if not stream or resp.status_code != 200:
            content = await resp.aread()
            if kept and resp.status_code == 200:
                answer = _Answer()
                try:
                    answer.add(json.loads(content))
                except (ValueError, AttributeError):  # not an OpenAI answer: passed on as it is, not kept
                    log.warning("vLLM's answer to %s is not a JSON object; not kept", path)
                else:
                    await keep(path, req, model, answer, started)
            return Response(content, status_code=resp.status_code, media_type=resp.headers.get("content-type"))

        async def relay():
            answer = _Answer()
            try:
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: "):]
                    if data.strip() == "[DONE]":
                        if kept:
                            await keep(path, req, model, answer, started)
                    else:
                        try:
                            chunk = json.loads(data)
                            answer.add(chunk)
                        except (ValueError, AttributeError):  # passed on as it is
                            chunk = {"choices": [None]}
                        if not chunk.get("choices") and chunk.get("usage") and not wants_usage:
                            continue  # the usage chunk chatforge asked for, not the client
                    yield f"{line}\n\n"
            finally:
                await resp.aclose()

        return StreamingResponse(relay(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def keep(path, req, model, answer: "_Answer", started: float) -> None:
        if answer.id:
            await keeper.keep(answer.id, model, **record(path, req, answer.text, answer.finish, answer.usage,
                                                         time.monotonic() - started))

    async def passthrough(request: Request):
        resp = await send("GET", request.url.path)
        return Response(resp.content, status_code=resp.status_code, media_type=resp.headers.get("content-type"))

    async def health():
        resp = await send("GET", "/health")
        return JSONResponse({"status": "ok" if resp.status_code == 200 else "starting", "upstream": "vllm"},
                            status_code=200 if resp.status_code == 200 else 503)

    keyed = [Depends(check_key)]
    app.add_api_route("/v1/chat/completions", generate, methods=["POST"], dependencies=keyed)
    app.add_api_route("/v1/completions", generate, methods=["POST"], dependencies=keyed)
    app.add_api_route("/v1/models", passthrough, methods=["GET"], dependencies=keyed)
    app.add_api_route("/v1/models/{name:path}", passthrough, methods=["GET"], dependencies=keyed)
    app.add_api_route("/health", health, methods=["GET"])
    add_feedback_api(app, keeper, check_key, max_body_bytes)
    return app
