"""`chatforge studio`: the whole pipeline in the browser. `create_app(workspace, ...)` -> a FastAPI app.

Every page works over a stage's own interface, never a re-written copy of its logic: check, train, eval and
export run as `chatforge` processes started from argument lists built from the stage's typed config (see
jobs.py), chat goes to a `chatforge serve` process that the studio starts and forwards to. The studio follows
a run through the files the run writes (events.jsonl, metrics.jsonl, run.json), so it can be restarted at any
time and shows the same runs, including those still training.

    GET  /                         the app (static, offline: no CDN)      GET /api/state   models, data, runs, jobs
    PUT  /api/data/{name}          upload (raw body, size limit)          POST /api/check  the check report
    GET  /api/train/schema         the form, from TrainConfig             POST /api/runs   start a training run
    GET  /api/runs/{name}          a run: status, config, metrics, log    GET  /api/runs/{name}/events  (SSE)
    POST /api/runs/{name}/stop     SIGTERM (a checkpoint is kept)         POST /api/runs/{name}/resume
    DELETE /api/runs/{name}?confirm=NAME                                  GET  /api/diff?a=RUN&b=RUN
    POST /api/eval  POST /api/export  (jobs)                              GET  /api/jobs/{id}[/events]
    POST /api/chat/start {model}   a chat server for a model              POST /api/chat/v1/...  forwarded to it
    GET  /files/{path}             a workspace file (reports, exports), read-only

Security (a local tool that starts processes and reads files): see security.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatforge.errors import ChatforgeError
from chatforge.export.config import QUANTS
from chatforge.studio.jobs import Jobs, chatforge_argv
from chatforge.train import checkpoints
from chatforge.studio.security import Guard
from chatforge.studio.workspace import StudioError, Workspace, check_name, read_json, read_jsonl

UPLOAD_LIMIT = 64 << 20  # bytes
BASIC_TRAIN_FIELDS = ("model", "data", "eval_data", "method", "epochs", "max_steps", "lr", "max_length")
HIDDEN_TRAIN_FIELDS = ("out", "resume", "device")  # the studio chooses these
SSE_POLL = 0.5  # seconds between looks at a followed file


def create_app(workspace: str | Path, *, token: str | None = None, host: str = "127.0.0.1", port: int = 7860,
               upload_limit: int = UPLOAD_LIMIT) -> FastAPI:
    ws = Workspace(workspace)
    jobs = Jobs(ws)
    chat = ChatServers(jobs)
    app = FastAPI(title="chatforge studio", docs_url=None, redoc_url=None, openapi_url=None)
    guard = Guard(token=token, host=host, port=port)
    app.middleware("http")(guard)
    app.state.workspace, app.state.jobs, app.state.guard = ws, jobs, guard

    @app.exception_handler(StudioError)
    async def _studio_error(request, e: StudioError):
        return _error(e.status, e.message, e.field)

    @app.exception_handler(ChatforgeError)
    async def _chatforge_error(request, e: ChatforgeError):
        return _error(400, e.message, None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e: StarletteHTTPException):
        return _error(e.status_code, "no such page" if e.status_code == 404 else str(e.detail), None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        field = str(first.get("loc", ["", ""])[-1])
        return _error(400, f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):  # a bug: one line, never a traceback in the browser
        return _error(500, f"internal error: {type(e).__name__}", None)

    # ---- the page ------------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    async def static(name: str):
        types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
        suffix = Path(name).suffix
        if suffix not in types or "/" in name or name.startswith("."):
            raise StudioError(404, f"no such file: {name}")
        try:
            return HTMLResponse(_static(name), media_type=types[suffix])
        except FileNotFoundError:
            raise StudioError(404, f"no such file: {name}") from None

    @app.get("/api/state")
    async def state():
        return {"workspace": str(ws.root), "models": await run_in_threadpool(_models, ws),
                "data_files": ws.data_files(),
                "runs": [_finite(_run_summary(ws, jobs, n)) for n in _run_names(ws, jobs)],
                "jobs": [_public_job(j) for j in jobs.all()[:50]], "csrf_header": guard.CSRF_HEADER,
                "upload_limit": upload_limit}

    # ---- data ------------------------------------------------------------------------------------------------
    @app.put("/api/data/{name:path}")
    async def upload(name: str, request: Request):
        size = int(request.headers.get("content-length") or 0)
        if size > upload_limit:
            raise StudioError(413, f"the file is {size:,} bytes, more than the limit of {upload_limit:,}", "file")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > upload_limit:
                raise StudioError(413, f"the file is more than the limit of {upload_limit:,} bytes", "file")
        path = ws.save_upload(name, bytes(body), upload_limit)
        return JSONResponse({"path": ws.rel(path), "bytes": len(body)}, status_code=201)

    @app.post("/api/check")
    async def check(request: Request):
        body = await _json(request)
        path = ws.resolve(_str(body, "file"), "file")
        argv = ["check", str(path), "--json"]
        if body.get("eval_file"):
            argv += ["--eval-data", str(ws.resolve(_str(body, "eval_file"), "eval_file"))]
        if body.get("model"):
            argv += ["--model", _model(ws, _str(body, "model"))]
        if body.get("columns"):  # "question=title+ask answer=answer": check's own --columns (it validates them)
            argv += ["--columns", *_str(body, "columns").split()]
        if body.get("column_separator"):
            argv += ["--column-separator", _str(body, "column_separator")]
        if not body.get("estimate", True):
            argv.append("--no-estimate")
        code, out, err = await run_in_threadpool(_run_cli, argv, ws.root)
        try:
            report = json.loads(out)
        except ValueError:
            raise StudioError(400, _last_line(err) or "check failed", "file") from None
        report["data"] = ws.rel(path)
        return report

    # ---- train -----------------------------------------------------------------------------------------------
    @app.get("/api/train/schema")
    async def train_schema():
        from chatforge.config import describe
        from chatforge.train.config import TrainConfig

        fields = [dict(f, advanced=f["name"] not in BASIC_TRAIN_FIELDS) for f in describe(TrainConfig)
                  if f["cli"] and f["name"] not in HIDDEN_TRAIN_FIELDS]
        order = {n: i for i, n in enumerate(BASIC_TRAIN_FIELDS)}
        return {"fields": sorted(fields, key=lambda f: (f["advanced"], order.get(f["name"], 99)))}

    @app.post("/api/runs")
    async def start_run(request: Request):
        body = await _json(request)
        name = check_name(_str(body, "name"), "name")
        run_dir = ws.run_dir(name, must_exist=False)
        if run_dir.exists():
            raise StudioError(409, f"run {name!r} already exists: choose another name, or resume it", "name")
        values = _train_values(ws, body.get("config"))
        run_dir.mkdir(parents=True)  # at once: the name is taken before the training process starts
        config_file = ws.root / ".studio" / "configs" / f"{name}.yaml"
        _write_yaml(values, config_file)
        job = jobs.start("train", name, chatforge_argv("train", "--config", config_file, "--out", run_dir))
        return JSONResponse({"run": name, "job": _public_job(job)}, status_code=201)

    @app.get("/api/runs/{name}")
    async def get_run(name: str):
        run_dir = ws.run_dir(name)
        out = _run_summary(ws, jobs, name)
        out["config"] = _read_yaml(run_dir / "config.yaml")
        out["metrics"] = read_jsonl(run_dir / "metrics.jsonl")
        job = jobs.latest("train", name)
        out["log"] = jobs.log_tail(job) if job else ""
        out["evals"] = _evals(ws, run_dir)
        return _finite(out)

    @app.get("/api/runs/{name}/events")
    async def run_events(name: str):
        run_dir = ws.run_dir(name)

        async def stream():
            from chatforge.events import read_events

            offset, job = 0, jobs.latest("train", name)
            log, log_offset = (ws.root / job["log"], _size(ws.root / job["log"])) if job else (None, 0)
            while True:
                events, offset = read_events(run_dir / "events.jsonl", offset)
                for e in events:
                    yield _sse("progress", e.__dict__)
                text, log_offset = _read_from(log, log_offset) if log else ("", 0)
                if text:
                    yield _sse("log", {"text": text})
                summary = _run_summary(ws, jobs, name)
                if not events and not text and not summary["running"]:
                    yield _sse("status", summary)
                    return
                await asyncio.sleep(SSE_POLL)

        return _sse_response(stream())

    @app.post("/api/runs/{name}/stop")
    async def stop_run(name: str):
        ws.run_dir(name)
        job = jobs.latest("train", name)
        if not job or not job["running"]:
            raise StudioError(409, f"run {name!r} is not training", "run")
        if job.get("stopping"):
            raise StudioError(409, f"run {name!r} is already stopping (it saves a checkpoint first)", "run")
        jobs.stop(job)
        return {"run": name, "stopping": True}

    @app.post("/api/runs/{name}/resume")
    async def resume_run(name: str):
        run_dir = ws.run_dir(name)
        summary = _run_summary(ws, jobs, name)
        if summary["running"]:
            raise StudioError(409, f"run {name!r} is still training", "run")
        if summary["status"] == "complete":
            raise StudioError(409, f"run {name!r} is complete; there is nothing to resume", "run")
        if checkpoints.last(run_dir / "checkpoints") is None:  # the CLI's --resume would fail in the job
            raise StudioError(409, f"run {name!r} has no checkpoint to resume; start a new run instead", "run")
        job = jobs.start("train", name, chatforge_argv("train", "--out", run_dir, "--resume"))
        return {"run": name, "job": _public_job(job)}

    @app.delete("/api/runs/{name}")
    async def delete_run(name: str, confirm: str = ""):
        run_dir = ws.run_dir(name)
        if confirm != name:
            raise StudioError(400, f"to delete run {name!r}, confirm with its name", "confirm")
        if _run_summary(ws, jobs, name)["running"]:
            raise StudioError(409, f"run {name!r} is training: stop it first", "run")
        busy = [j for j in jobs.all() if j["running"] and j["kind"] in ("eval", "export") and j.get("run") == name]
        if busy:  # the job reads runs/NAME/final: deleting it would fail the job half-way
            raise StudioError(409, f"run {name!r} is in use by a running {busy[0]['kind']} job: wait for it "
                                   "to finish", "run")
        await run_in_threadpool(shutil.rmtree, run_dir)
        return {"deleted": name}

    @app.get("/api/diff")
    async def diff(a: str, b: str):
        ca, cb = (_read_yaml(ws.run_dir(n) / "config.yaml") for n in (a, b))
        keys = sorted(set(ca) | set(cb))
        return {"a": a, "b": b, "differ": [{"option": k, "a": ca.get(k), "b": cb.get(k)} for k in keys
                                           if ca.get(k) != cb.get(k)],
                "same": [k for k in keys if ca.get(k) == cb.get(k)]}

    # ---- eval and export (jobs) ------------------------------------------------------------------------------
    @app.post("/api/eval")
    async def start_eval(request: Request):
        body = await _json(request)
        name = _str(body, "run")
        run_dir = _finished_run(ws, name)
        data = ws.resolve(_str(body, "data"), "data")
        argv = ["eval", run_dir, "--data", data, "--out", run_dir / "eval"]
        if body.get("max_examples") not in (None, ""):
            argv += ["--max-examples", _int(body, "max_examples")]
        job = jobs.start("eval", name, chatforge_argv(*argv), run=name)
        return JSONResponse({"job": _public_job(job)}, status_code=201)

    @app.post("/api/export")
    async def start_export(request: Request):
        body = await _json(request)
        name = _str(body, "run")
        run_dir = _finished_run(ws, name)
        fmt = _choice(body, "format", ("hf", "gguf"))
        quant = _choice(body, "quant", QUANTS[fmt]) if body.get("quant") else None
        out_name = check_name(body.get("out") or f"{name}-{fmt}" + (f"-{quant}" if quant else ""), "out")
        argv = ["export", run_dir, "--format", fmt, "--out", ws.root / "exports" / out_name, "--force"]
        if quant:
            argv += ["--quant", quant]
        if body.get("ollama"):
            if fmt != "gguf":
                raise StudioError(400, "ollama: an Ollama Modelfile needs --format gguf", "ollama")
            argv.append("--ollama")
        job = jobs.start("export", out_name, chatforge_argv(*argv), run=name)
        return JSONResponse({"job": _public_job(job), "out": f"exports/{out_name}"}, status_code=201)

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str):
        job = jobs.get(job_id)
        out = _public_job(job)
        out["log"] = jobs.log_tail(job)
        if job["kind"] == "export":
            out_dir = ws.root / "exports" / job["target"]
            out["files"] = [ws.rel(p) for p in sorted(out_dir.rglob("*")) if p.is_file()] if out_dir.is_dir() else []
        return out

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str):
        job = jobs.get(job_id)
        log = ws.root / job["log"]

        async def stream():
            offset = 0
            while True:
                text, offset = _read_from(log, offset)
                if text:
                    yield _sse("log", {"text": text})
                current = jobs.get(job_id)
                if not text and not current["running"]:
                    yield _sse("status", _public_job(current))
                    return
                await asyncio.sleep(SSE_POLL)

        return _sse_response(stream())

    # ---- chat ------------------------------------------------------------------------------------------------
    @app.post("/api/chat/start")
    async def chat_start(request: Request):
        body = await _json(request)
        model = _model(ws, _str(body, "model"))
        compare = _model(ws, _str(body, "compare")) if body.get("compare") else None
        return chat.start(model, body.get("model"), compare)

    @app.get("/api/chat")
    async def chat_status():
        return await run_in_threadpool(chat.status)

    # The chat server's own page, arena and API, forwarded (streamed) so the browser only talks to the studio:
    # /chat -> its /, /arena -> its /arena, /v1/... -> its /v1/... (feedback, arena votes, completions).
    @app.get("/chat")
    async def chat_page(request: Request):
        return await chat.proxy(request, "/")

    @app.get("/arena")
    async def arena_page(request: Request):
        return await chat.proxy(request, "/arena")

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def chat_api(path: str, request: Request):
        return await chat.proxy(request, "/v1/" + path)

    @app.get("/files/{path:path}")
    async def files(path: str):
        target = ws.resolve(path, "path")
        if not target.is_file():
            raise StudioError(404, f"{path!r} is not a file", "path")
        if target.relative_to(ws.root).parts[0] == ".studio" and target.suffix != ".log":
            raise StudioError(403, "the studio's own files are not served", "path")
        headers = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
        return FileResponse(target, headers=headers)

    return app


class ChatServers:
    """One `chatforge serve` process for the model being chatted with (loopback, a random port), and a streaming
    forwarder to it: its page keeps its own feedback controls (thumbs, edit, regenerate) and, with a model to
    compare, its blind arena."""

    def __init__(self, jobs: Jobs):
        self.jobs = jobs
        self.current: dict | None = None  # {"job", "port", "model", "compare"}

    def start(self, model: str, label: str, compare: str | None = None) -> dict:
        if self.current and (self.current["model"], self.current["compare"]) == (model, compare) \
                and self.jobs.get(self.current["job"])["running"]:
            return self.status()
        if self.current:
            self.jobs.stop(self.jobs.get(self.current["job"]))
        port = _free_port()
        argv = ["serve", model, "--host", "127.0.0.1", "--port", port, "--model-id", label]
        if compare:
            argv += ["--compare", compare]
        job = self.jobs.start("chat", label, chatforge_argv(*argv))
        self.current = {"job": job["id"], "port": port, "model": model, "compare": compare}
        return self.status()

    def status(self) -> dict:
        if not self.current:
            return {"loaded": False, "ready": False}
        job = self.jobs.get(self.current["job"])
        return {"loaded": True, "ready": job["running"] and self._ready(), "running": job["running"],
                "job": job["id"], "model": job["target"], "compare": bool(self.current["compare"]),
                "log": self.jobs.log_tail(job, 4000) if not job["running"] else ""}

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.current['port']}/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    async def proxy(self, request: Request, path: str):
        import httpx

        if not self.current:
            raise StudioError(409, "no chat model is loaded: pick a model in the Chat page first", "model")
        if not self.jobs.get(self.current["job"])["running"]:
            raise StudioError(502, "the chat server stopped (see its log in the Chat page)", "model")
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.current['port']}", timeout=None)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        req = client.build_request(request.method, path, params=request.query_params, headers=headers,
                                   content=await request.body())
        try:
            upstream = await client.send(req, stream=True)
        except httpx.TransportError:
            await client.aclose()
            raise StudioError(503, "the model is still loading; try again in a moment", "model") from None

        async def body():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                await client.aclose()

        keep = {k: v for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "cache-control", "retry-after")}
        return StreamingResponse(body(), status_code=upstream.status_code, headers=keep)


# ---- helpers -----------------------------------------------------------------------------------------------
def _static(name: str) -> str:
    return resources.files("chatforge.studio").joinpath("static", name).read_text(encoding="utf-8")


def _error(status: int, message: str, field: str | None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": field}}, status_code=status)


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise StudioError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise StudioError(400, "the request body must be a JSON object")
    return body


def _str(body: dict, key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v.strip():
        raise StudioError(400, f"{key}: required (a string)", key)
    return v.strip()


def _int(body: dict, key: str) -> int:
    v = body.get(key)
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise StudioError(400, f"{key}: must be a whole number, not {v!r}", key) from None
    if n < 1:
        raise StudioError(400, f"{key}: must be >= 1", key)
    return n


def _choice(body: dict, key: str, choices: tuple[str, ...]) -> str:
    v = body.get(key)
    if v not in choices:
        raise StudioError(400, f"{key}: must be one of {', '.join(choices)}, not {v!r}", key)
    return v


def _finished_run(ws: Workspace, name: str) -> Path:
    """A run with its final model: eval and export read runs/NAME/final, so without it their job would fail."""
    run_dir = ws.run_dir(name)
    if not (run_dir / "final").is_dir():
        raise StudioError(409, f"run {name!r} has no final model yet (it has not finished training)", "run")
    return run_dir


def _models(ws: Workspace) -> list[dict]:
    from chatforge.models.catalog import CATALOG, DEFAULT_MODEL
    from chatforge.models.resolve import cached_models

    out = [{"value": e.name, "label": e.name, "kind": "catalog", "default": e.name == DEFAULT_MODEL,
            "description": e.description} for e in CATALOG.values()]
    out += [{"value": c["name"], "label": c["name"], "kind": "cached"} for c in cached_models()
            if c["name"] not in CATALOG]
    local = ws.root / "models"  # local models put in the workspace: HF directories and .gguf files
    if local.is_dir():
        out += [{"value": ws.rel(p), "label": ws.rel(p), "kind": "local"} for p in sorted(local.iterdir())
                if (p / "config.json").is_file() or p.suffix == ".gguf"]
    out += [{"value": f"runs/{n}", "label": f"runs/{n}", "kind": "run"} for n in ws.run_names()
            if (ws.runs_dir / n / "final").is_dir()]
    return out


def _model(ws: Workspace, value: str) -> str:
    """A model the browser picked: a catalog name or cached id as it is, a workspace path made real."""
    from chatforge.models.catalog import CATALOG
    from chatforge.models.resolve import cached_models

    if value in CATALOG or value in {c["name"] for c in cached_models()}:
        return value
    return str(ws.resolve(value, "model"))


def _train_values(ws: Workspace, config) -> dict:
    """The form's values checked by TrainConfig's own rules (types, choices, parsers); paths made real."""
    from chatforge.config import from_mapping
    from chatforge.train.config import TrainConfig

    if not isinstance(config, dict):
        raise StudioError(400, "config: an object of option: value is required", "config")
    config = {k: v for k, v in config.items() if v not in (None, "")}
    for k in HIDDEN_TRAIN_FIELDS:
        if k in config:
            raise StudioError(400, f"{k}: chosen by the studio, not the form", k)
    try:
        values = from_mapping(TrainConfig, config, "form")
        cfg = TrainConfig(**values)
    except ChatforgeError as e:
        raise StudioError(400, e.message, _field_named(e.message, config)) from None
    except TypeError as e:
        raise StudioError(400, f"form: {e}", None) from None
    if "data" not in values:
        raise StudioError(400, "data: pick a training data file", "data")
    try:
        _cli_checks(cfg)
    except ChatforgeError as e:
        raise StudioError(400, e.message + (f" ({e.hint})" if getattr(e, "hint", None) else ""),
                          _field_named(e.message, config)) from None
    for key in ("data", "eval_data"):
        if key in values:
            values[key] = str(ws.resolve(values[key], key))
    if "model" in values:
        values["model"] = _model(ws, values["model"])
    return values


def _cli_checks(cfg) -> None:
    """The checks `chatforge train` makes before its first step, made here so that a config the job would refuse
    (--max-length 1, --batch-tokens under --max-length, a bad --columns) is a 400 and no run directory is left."""
    from chatforge.train.run import check_request

    check_request(cfg)  # the CLI's own checks: every option's rule, the data options', the cross-option rules


def _field_named(message: str, config: dict) -> str | None:
    """The form field an error message names first (the one it is about): as `--max-length` (the CLI's flag),
    `: max_length` or ` max_length ` (a form key)."""
    found = []
    for k in config:
        at = [i for i in (message.find(f"--{k.replace('_', '-')} "), message.find(f": {k}"), message.find(f" {k} "))
              if i >= 0]
        if at:
            found.append((min(at), k))
    return min(found)[1] if found else None


def _write_yaml(values: dict, path: Path) -> None:
    import yaml

    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_names(ws: Workspace, jobs: Jobs) -> list[str]:
    """The workspace's runs, and the run directories a training job of the studio's left without a run.json
    (its process failed before the first step): listed as failed with their log, so the user sees why the name
    is taken and can delete it."""
    names = ws.run_names()
    started = {j["target"] for j in jobs.all("train")}
    orphans = [n for n in sorted(started - set(names)) if (ws.runs_dir / n).is_dir()]
    return names + orphans


def _run_summary(ws: Workspace, jobs: Jobs, name: str) -> dict:
    run_dir = ws.runs_dir / name
    info = read_json(run_dir / "run.json")
    job = jobs.latest("train", name)
    running = bool(job and job["running"])
    status = info.get("status") or ("starting" if running else "failed")
    if status == "running" and not running:
        status = "interrupted"  # killed without a word (a crash, a power cut): --resume continues it
    if running and status != "running":
        status = "starting"
    last = (read_jsonl(run_dir / "metrics.jsonl") or [{}])[-1]
    return {"name": name, "status": status, "running": running, "base_model": info.get("base_model"),
            "method": info.get("method"), "data": info.get("data"), "data_sha256": info.get("data_sha256"),
            "steps": info.get("steps", last.get("step")), "eval_loss": info.get("eval_loss"),
            "final_train_loss": info.get("final_train_loss"), "tokens_per_sec": info.get("tokens_per_sec"),
            "error": info.get("error") or _failed_before_start(jobs, job, info, running),
            "job": job["id"] if job else None,
            "returncode": job.get("returncode") if job else None, "has_final": (run_dir / "final").is_dir()}


def _failed_before_start(jobs: Jobs, job: dict | None, info: dict, running: bool) -> str | None:
    """Why a run that never wrote run.json failed: the CLI's error line in its job's log (a hint may follow it),
    else the log's last line."""
    if info or running or not job:
        return None
    lines = [line for line in jobs.log_tail(job, 4000).splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    return (errors or lines or [None])[-1]


def _evals(ws: Workspace, run_dir: Path) -> list[dict]:
    """The run's eval reports, each with the stage's own metrics table (header, rows)."""
    from chatforge.evaluate.report import table_rows

    out = []
    for metrics in sorted(run_dir.glob("eval*/metrics.json")):
        data = read_json(metrics)
        try:
            header, rows = table_rows(data)
        except (KeyError, TypeError):
            continue  # a report this version cannot read
        out.append({"dir": ws.rel(metrics.parent), "report": ws.rel(metrics.parent / "report.html"),
                    "header": header, "rows": rows, "examples": data.get("examples_evaluated")})
    return out


def _public_job(job: dict) -> dict:
    return {k: job.get(k) for k in ("id", "kind", "target", "running", "returncode", "started", "ended", "log")}


def _run_cli(argv: list, cwd: Path) -> tuple[int, str, str]:
    import subprocess

    p = subprocess.run(chatforge_argv(*argv), capture_output=True, text=True, cwd=cwd, timeout=900,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(1 << 16)
    except OSError:
        return "", offset
    cut = _complete_utf8(data)  # never split a UTF-8 character between two events
    return data[:cut].decode("utf-8", "replace"), offset + cut


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _complete_utf8(data: bytes) -> int:
    """The length of `data` without a trailing, incomplete multi-byte UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # the last lead (or ASCII) byte
            need = 1 if b < 0x80 else 2 if b >= 0xC0 and b < 0xE0 else 3 if b < 0xF0 else 4
            return len(data) - back if need > back else len(data)
    return len(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(_finite(data), ensure_ascii=False, default=str)}\n\n"


def _finite(value):
    """`value` with every NaN/inf float made None: a diverged run logs `"loss": NaN`, which is neither JSON the
    response encoder accepts (a 500) nor JSON the page's JSON.parse reads. Used for every metric and event sent."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sse_response(gen) -> StreamingResponse:
    return StreamingResponse(gen, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
