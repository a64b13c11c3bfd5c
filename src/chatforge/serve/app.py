"""The OpenAI-compatible API and the chat page: `create_app(engine, config)` -> a FastAPI app.

    POST /v1/chat/completions   chat (template applied by the server; never taken from the request)
    POST /v1/completions        raw text continuation (no template)
    GET  /v1/models             the one model served;  GET /v1/models/{id}
    GET  /health                liveness + load (never needs the API key)
    GET  /                      the chat page (no data in it; it asks for the API key when one is set)
    POST /v1/feedback, GET /v1/feedback   ratings, corrections, pairs, arena votes (serve/feedback.py)
    POST /v1/arena, GET /arena  with a second model to compare (serve/arena.py)

Every chat and text completion is kept in the store (chatforge.store) unless the server runs with --no-log or
the request says "store": false (OpenAI's field); its id (chatcmpl-... / cmpl-...) is the key feedback refers to.

Every error is OpenAI's object {"error": {"message", "type", "param", "code"}}: 400 a request the server
cannot serve (not JSON, n != 1, prompt or max_tokens beyond the context, a chat template, a field that would
change the answer but is not supported: _UNSUPPORTED, a tool result answering no call), 401 missing or wrong
API key, 404 unknown model or route, 413 body too large, 422 a field of the wrong type or out of its range,
429 queue full (with Retry-After), 503 the server stopped (Ctrl-C) before the answer was done.
Unlike OpenAI, `model` may be left out (there is one model). Defaults follow OpenAI: temperature 1, top_p 1;
max_tokens defaults to --max-tokens (capped by the context).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from contextlib import asynccontextmanager
from importlib import resources
from typing import AsyncIterator, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from chatforge.config import check_values
from chatforge.errors import ChatforgeError
from chatforge.infer import Completion, SamplingParams
from chatforge.models.template import with_system
from chatforge.serve import schemas as s
from chatforge.serve import tools
from chatforge.serve.config import ServeConfig
from chatforge.serve.scheduler import Job, QueueFull, Scheduler

log = logging.getLogger("chatforge.serve")
_TEMPLATE_FIELDS = ("chat_template", "chat_template_kwargs")  # a request never chooses the template
# OpenAI fields that would change the answer but are not supported: refused unless at their no-op values
# (null is always one). Fields that do not change the answer are accepted and ignored: user, store and
# metadata (used by the store), service_tier, prompt_cache_key, safety_identifier, and prediction (a predicted
# output only makes OpenAI faster; the answer is the same). functions / function_call: serve/tools.py.
_UNSUPPORTED = {"logit_bias": (None, {}), "logprobs": (None, False), "top_logprobs": (None, 0),
                "response_format": (None, {"type": "text"}), "echo": (None, False), "best_of": (None, 1),
                "suffix": (None, ""),
                "modalities": (None, ["text"]), "audio": (None,),  # audio output
                "web_search_options": (None,),  # even {} turns web search on
                "reasoning_effort": (None,),  # a reasoning budget the served model has no switch for
                "verbosity": (None, "medium"),  # "medium" is OpenAI's default
                # vLLM's other sampling extensions (top_k, min_p and repetition_penalty are served)
                "min_tokens": (None, 0), "ignore_eos": (None, False), "stop_token_ids": (None, []),
                "bad_words": (None, []), "allowed_token_ids": (None,), "include_stop_str_in_output": (None, False),
                "skip_special_tokens": (None, True), "use_beam_search": (None, False), "prompt_logprobs": (None,),
                "truncate_prompt_tokens": (None,), "continue_final_message": (None, False),
                "add_generation_prompt": (None, True), "guided_json": (None,), "guided_regex": (None,),
                "guided_choice": (None,), "guided_grammar": (None,), "structured_outputs": (None,)}
_MIN_TEMPERATURE = 1e-4  # below it logits / temperature overflows to inf; such requests are greedy (= 0)
# a top_p that rounds to 0 in float32 (1e-300) keeps no token at all; any top_p this small keeps only the top one
_MIN_TOP_P = 1e-9


class ApiError(Exception):
    """An error the client caused (or a busy server), sent as OpenAI's error object."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


def error_response(e: ApiError) -> JSONResponse:
    body = s.ErrorResponse(error=s.ErrorDetail(message=e.message, type=e.type, param=e.param, code=e.code))
    return JSONResponse(body.model_dump(), status_code=e.status, headers=e.headers)


def create_app(engine, config: ServeConfig | None = None, *, batcher: Callable | None = None, keeper=None,
               compare=None) -> FastAPI:
    """An app serving `engine` (a chatforge.infer.Engine, or another engine with the same interface) with one
    batching worker thread.

    `batcher(engine)` makes the running batch (default: engine.new_batch(), a chatforge.infer.Batch; tests pass
    a stand-in). `keeper` (serve.feedback.Keeper) keeps exchanges and takes feedback; `compare` is a second
    engine for the arena, with its own scheduler (model id: ServeConfig.compare)."""
    from chatforge.serve.feedback import Keeper

    config = config or ServeConfig()
    check_values(config)  # the Python API's config gets the CLI's checks (--port, --max-queue, ...)
    keeper = keeper or Keeper()
    service = _Service(engine, config, batcher, keeper)
    other = _Service(compare, _compare_config(config, service.model_id), batcher, keeper) if compare else None
    services = [service] + ([other] if other else [])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for svc in services:
            svc.scheduler.start()
        yield
        for svc in services:
            svc.scheduler.stop()

    app = FastAPI(title="chatforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler, app.state.model_id = service.scheduler, service.model_id
    add_error_handlers(app)
    api = APIRouter(dependencies=[Depends(service.check_key)])  # every route but /health and the page
    api.add_api_route("/v1/chat/completions", service.chat_completions, methods=["POST"])
    api.add_api_route("/v1/completions", service.completions, methods=["POST"])
    api.add_api_route("/v1/models", service.models, methods=["GET"])
    api.add_api_route("/v1/models/{name:path}", service.model, methods=["GET"])
    app.include_router(api)
    _add_feedback_routes(app, service, other)
    app.add_api_route("/health", service.health, methods=["GET"])
    app.add_api_route("/", service.page, methods=["GET"], response_class=HTMLResponse)
    return app


def _compare_config(config: ServeConfig, main_id: str) -> ServeConfig:
    """The second model's settings: the same limits, its own id (never the main model's)."""
    import dataclasses

    name = config.compare or "compare"
    return dataclasses.replace(config, model_id=name if name != main_id else f"{name} (compare)")


def _add_feedback_routes(app: FastAPI, service: "_Service", other: "_Service | None") -> None:
    """/v1/feedback, and with a second model the arena (/v1/arena, /arena)."""
    from chatforge.serve.arena import Side, arena_router

    read = lambda request: _read_json(request, service.config.max_body_bytes)  # noqa: E731
    add_feedback_api(app, service.keeper, service.check_key, service.config.max_body_bytes)
    if other is None:
        return
    app.state.compare_scheduler = other.scheduler
    sides = [Side(svc.model_id, svc.prepare, svc.answer) for svc in (service, other)]
    app.include_router(arena_router(sides, service.keeper, service.check_key, read, _parse,
                                    s.ChatCompletionRequest, ApiError, s.new_id))
    arena_html = _page(f"{service.model_id} vs ?", keeper=service.keeper, arena=True, name="static/arena.html")
    app.add_api_route("/arena", lambda: arena_html, methods=["GET"], response_class=HTMLResponse)


def add_feedback_api(app: FastAPI, keeper, check_key: Callable, max_body_bytes: int) -> None:
    """POST / GET /v1/feedback on `app` (also in front of another server: serve/vllm.py)."""
    from chatforge.serve.feedback import feedback_router

    read = lambda request: _read_json(request, max_body_bytes)  # noqa: E731
    app.include_router(feedback_router(keeper, check_key, read, _parse, ApiError))


class _Service:
    """The routes, and what they share: the engine, the settings, the scheduler."""

    def __init__(self, engine, config: ServeConfig, batcher: Callable | None, keeper):
        self.engine, self.config, self.keeper = engine, config, keeper
        self.api_key = config.api_key if config.api_key is not None else os.environ.get("CHATFORGE_API_KEY") or None
        self.model_id = config.model_id or engine.name
        self.scheduler = Scheduler(engine, max_concurrency=config.max_concurrency, max_queue=config.max_queue,
                                   batch_window=config.batch_window_ms / 1000, batcher=batcher)
        self.created = s.now()
        self.html = _page(self.model_id, system=config.system, keeper=keeper, arena=bool(config.compare))

    # ---- routes --------------------------------------------------------------------------------------------
    async def chat_completions(self, request: Request):
        req = _parse(s.ChatCompletionRequest, await _read_json(request, self.config.max_body_bytes,
                                                               self.config.body_timeout))
        self.check_model(req.model)
        if len(req.messages) > self.config.max_messages:
            raise ApiError(400, f"{len(req.messages)} messages; this server takes at most {self.config.max_messages}"
                                " (--max-messages)", param="messages")
        try:  # tools, tool_choice and tool messages: serve/tools.py
            messages = with_system(tools.template_messages(req.messages), self.config.system)
            plan = tools.plan_request(req, getattr(self.engine, "tokenizer", None))
        except tools.RequestError as e:
            raise ApiError(e.status, e.message, param=e.param, code="invalid_value") from None
        prompt, params = await self.prepare(req, messages, plan)
        job = self.submit(prompt, params)
        cid = s.new_id("chatcmpl")
        keep = self.keeper.callback(cid, self.model_id, messages, params, req)  # None: not kept

        def chunk(text: str, finish: str | None = None, usage: s.Usage | None = None, delta: dict | None = None):
            choices = [] if usage else [s.ChunkChoice(delta=delta or ({"content": text} if text else {}),
                                                      finish_reason=finish)]
            return s.ChatCompletionChunk(id=cid, created=s.now(), model=self.model_id, choices=choices, usage=usage)

        if req.stream:  # OpenAI's first chunk names the role
            return _sse(job, chunk, req.include_usage, first=chunk("", delta={"role": "assistant", "content": ""}),
                        on_done=keep, calls=tools.ToolStream(plan) if plan else None)
        done = await _finish(request, job)
        if keep:
            await keep(done)
        content, calls = tools.finish(plan, done.text) if plan else (done.text, [])
        message = s.AssistantMessage(content=content, tool_calls=calls or None)
        return s.ChatCompletion(id=cid, created=s.now(), model=self.model_id, usage=_usage(done), choices=[
            s.ChatChoice(message=message, finish_reason="tool_calls" if calls else done.finish_reason)])

    async def completions(self, request: Request):
        req = _parse(s.CompletionRequest, await _read_json(request, self.config.max_body_bytes,
                                                           self.config.body_timeout))
        self.check_model(req.model)
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(texts) != 1:
            raise ApiError(400, f"prompt must be one string (got a list of {len(texts)})", param="prompt")
        _check_unicode(texts[0], "prompt")
        prompt = await _off_loop(len(texts[0]), self.engine.encode_text, texts[0])
        if not prompt:
            raise ApiError(400, "prompt is empty", param="prompt")
        params = self.sampling(req, prompt, req.max_tokens, "prompt")
        job = self.submit(prompt, params)
        cid = s.new_id("cmpl")
        keep = self.keeper.callback(cid, self.model_id, None, params, req, prompt=texts[0])  # None: not kept

        def chunk(text: str, finish: str | None = None, usage: s.Usage | None = None) -> s.TextCompletion:
            choices = [] if usage else [s.TextChoice(text=text, finish_reason=finish)]
            return s.TextCompletion(id=cid, created=s.now(), model=self.model_id, choices=choices, usage=usage)

        if req.stream:
            return _sse(job, chunk, req.include_usage, on_done=keep)
        done = await _finish(request, job)
        if keep:
            await keep(done)
        return chunk(done.text, done.finish_reason).model_copy(update={"usage": _usage(done)})

    async def models(self) -> s.ModelList:
        return s.ModelList(data=[s.ModelCard(id=self.model_id, created=self.created)])

    async def model(self, name: str) -> s.ModelCard:
        self.check_model(name)
        return s.ModelCard(id=self.model_id, created=self.created)

    async def health(self) -> dict:
        sched = self.scheduler
        out = {"status": "ok", "model": self.model_id, "running": sched.running, "waiting": sched.waiting}
        cache = getattr(self.engine, "prefix_cache", None)
        if cache is not None:  # a bounded cache that fills as requests come: the server's RSS grows with it
            out["prefix_cache"] = {"tokens": cache.stored, "capacity": cache.max_tokens}
        return out

    async def page(self) -> str:
        return self.html

    # ---- checks --------------------------------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        if self.api_key and not authorized(request.headers.get("authorization"), self.api_key):
            raise ApiError(401, "missing or incorrect API key: send the header `Authorization: Bearer KEY`",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def check_model(self, name: str | None) -> None:
        if name is not None and name not in (self.model_id, self.engine.name):
            raise ApiError(404, f"the model `{name}` does not exist; this server serves `{self.model_id}`",
                           param="model", code="model_not_found")

    def sampling(self, req: s.SamplingFields, prompt: list[int], asked: int | None, field: str,
                 asked_field: str = "max_tokens") -> SamplingParams:
        """The request's settings, with max_tokens (sent as `asked_field`) checked against (or defaulted within)
        the context."""
        try:
            self.engine.check_prompt(prompt)
        except ChatforgeError as e:
            raise ApiError(400, e.message, param=field, code="context_length_exceeded") from None
        limit = self.config.max_prompt_tokens
        if limit is not None and len(prompt) > limit:
            raise ApiError(400, f"the prompt is {len(prompt)} tokens; this server takes at most {limit} "
                                "(--max-prompt-tokens)", param=field, code="context_length_exceeded")
        context = self.engine.context_length
        room = context - len(prompt)
        if asked is not None and asked > room:
            raise ApiError(400, f"{asked_field} is {asked}, but the prompt ({len(prompt)} tokens) leaves room for "
                                f"at most {room} new tokens in the model's context of {context}",
                           param=asked_field, code="context_length_exceeded")
        if req.n not in (None, 1):
            raise ApiError(400, f"n must be 1 (got {req.n}): this server returns one choice per request", param="n")
        temperature = 1.0 if req.temperature is None else req.temperature
        return SamplingParams(max_tokens=asked or min(self.config.max_tokens, room),
                              temperature=temperature if temperature >= _MIN_TEMPERATURE else 0.0,
                              top_p=1.0 if req.top_p is None else max(req.top_p, _MIN_TOP_P),
                              top_k=max(0, req.top_k or 0),
                              min_p=req.min_p or 0.0, repetition_penalty=req.repetition_penalty or 1.0,
                              frequency_penalty=req.frequency_penalty or 0.0,
                              presence_penalty=req.presence_penalty or 0.0, seed=req.seed, stop=req.stop_strings())

    async def prepare(self, req: s.ChatCompletionRequest, messages: list[dict],
                      plan: "tools.ToolPlan | None" = None) -> tuple[list[int], SamplingParams]:
        """A chat request's prompt ids (with its tools, see serve/tools.py) and checked sampling settings."""
        size = sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str))
        prompt = await _off_loop(size, _encode_chat, self.engine, messages, plan)
        if req.max_completion_tokens is not None:  # OpenAI's newer name wins over max_tokens
            return prompt, self.sampling(req, prompt, req.max_completion_tokens, "messages", "max_completion_tokens")
        return prompt, self.sampling(req, prompt, req.max_tokens, "messages")

    async def answer(self, request: Request, prompt: list[int], params: SamplingParams) -> Completion:
        """Generate a whole answer (not streamed)."""
        return await _finish(request, self.submit(prompt, params))

    def submit(self, prompt: list[int], params: SamplingParams) -> Job:
        try:
            return self.scheduler.submit(prompt, params)
        except QueueFull as e:
            raise ApiError(429, str(e), type="rate_limit_error", code="server_busy",
                           headers={"Retry-After": str(e.retry_after)}) from None


# ---- requests --------------------------------------------------------------------------------------------------


def authorized(header: str | None, key: str) -> bool:
    """Does an Authorization header carry `key` (Bearer, compared in constant time)?"""
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def _read_json(request: Request, limit: int, timeout: float = 30.0) -> dict:
    """The body as a JSON object; 413 past `limit` bytes (declared or actually sent), 408 when it takes longer
    than `timeout` seconds to arrive, 400 when not JSON (or when it holds a lone surrogate such as "\\ud800")."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes; the limit is {limit}", code="body_too_large")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for piece in request.stream():
                body += piece
                if len(body) > limit:
                    raise ApiError(413, f"the request body is over the limit of {limit} bytes",
                                   code="body_too_large")
    except TimeoutError:
        raise ApiError(408, f"the request body took longer than {timeout:g} s to arrive", code="timeout",
                       headers={"Connection": "close"}) from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    where = _surrogate_at(data)  # "\ud800" is valid JSON but not text: no field (stop, a tool, ...) can hold it
    if where is not None:
        raise ApiError(400, f"{where or 'the request body'} contains a lone surrogate (such as \"\\ud800\"): not "
                            "valid Unicode", param=where or None, code="invalid_value")
    for name, harmless in _UNSUPPORTED.items():
        if name in data and not any(_same(data[name], h) for h in harmless):
            allowed = " or ".join(json.dumps(h) for h in harmless if h is not None)
            raise ApiError(400, f"{name} is not supported by this server (it would change the answer): leave it "
                                "out" + (f" or send {allowed}" if allowed else ""), param=name,
                           code="unsupported_parameter")
    for name in _TEMPLATE_FIELDS:
        if name in data:
            raise ApiError(400, f"{name}: chat templates cannot be set by a request; the server uses the model's "
                                "own template", param=name)
    return data


def _surrogate_at(data) -> str | None:
    """Where `data` holds a string with a lone surrogate ("messages[0].content"; a key's: its object's place,
    "" for the top level), or None (a pair such as "\\ud83d\\ude00" is decoded into one character)."""
    todo = [("", data)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, str) and not _is_unicode(value):
            return where
        if isinstance(value, dict):
            for k, v in value.items():
                if not _is_unicode(k):
                    return where
                todo.append((f"{where}.{k}" if where else k, v))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _same(value, harmless) -> bool:
    """value is the no-op `harmless` (0 and 0.0 alike; False is not 0)."""
    if harmless is None or isinstance(harmless, bool) or isinstance(value, bool):
        return value is harmless
    if isinstance(harmless, (int, float)):
        return isinstance(value, (int, float)) and value == harmless
    return value == harmless


def _check_unicode(text: str, param: str) -> None:
    """A lone surrogate ("\\ud800" in the JSON) is valid JSON but not text: the tokenizer cannot take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"{param} contains a lone surrogate at character {e.start}: not valid Unicode",
                       param=param, code="invalid_value") from None


def _parse(model: type[BaseModel], data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = max(e.errors(), key=lambda x: len(x["loc"]))  # the deepest is the most precise (inside unions)
        param = _param(err["loc"])
        raise ApiError(422, f"{param or 'body'}: {err['msg']}" + (f" ({len(e.errors())} problems in all)"
                                                                   if len(e.errors()) > 1 else ""),
                       param=param, code="invalid_value") from None


def _param(loc: tuple) -> str | None:
    """('messages', 0, 'content', 'list[TextPart]', 0, 'type') -> 'messages[0].content[0].type'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part not in ("str", "int", "float", "bool", "list", "dict"):
            out += ("." if out else "") + part
    return out or None


OFF_LOOP_CHARS = 20_000  # prompts longer than this are tokenised in a thread (~20 ms of work and more)


async def _off_loop(chars: int, fn, *args):
    """fn(*args), in a worker thread when its text is long: tokenising the largest body (1 MiB) takes ~1 s, which on
    the event loop would pause every other stream. Safe beside the generation thread: the fast tokenizer's encode
    only reads it (and releases the GIL), and the generation thread only decodes."""
    if chars <= OFF_LOOP_CHARS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def _encode_chat(engine, messages: list[dict], plan: "tools.ToolPlan | None" = None) -> list[int]:
    from jinja2 import TemplateError  # the model's template may refuse a conversation (e.g. no system role)

    from chatforge.models.template import encode_prompt
    from chatforge.models.tools import has_tool_parts

    for m in messages:
        if isinstance(m.get("content"), str):
            _check_unicode(m["content"], "messages")
    try:
        if plan is None and not has_tool_parts(messages):
            return engine.encode_chat(messages)
        return encode_prompt(engine.tokenizer, messages, tools=plan.prompt_tools if plan else None,
                             prefix=plan.prefix if plan else "")
    except TemplateError as e:
        raise ApiError(400, f"the model's chat template rejected these messages: {e}", param="messages") from None


# ---- responses -------------------------------------------------------------------------------------------------


def _usage(done: Completion) -> s.Usage:
    return s.Usage.of(done.prompt_tokens, done.completion_tokens)


async def _finish(request: Request, job: Job) -> Completion:
    """Wait for a non-streamed job; stop generating it if the client hangs up meanwhile."""
    async def watch():
        while not await request.is_disconnected():
            await asyncio.sleep(0.2)
        job.cancel()

    watcher = asyncio.create_task(watch())
    try:
        async for update in job.updates():
            if update.done is not None:
                return update.done
        # cancelled: either the client left (nobody reads this) or the server is shutting down
        raise ApiError(503, "the server stopped before this request finished", type="server_error")
    finally:
        watcher.cancel()
        job.cancel()  # no-op once finished; stops the sequence if this handler was cancelled


def _sse(job: Job, chunk: Callable[..., BaseModel], include_usage: bool,
         first: BaseModel | None = None, on_done: Callable | None = None,
         calls: "tools.ToolStream | None" = None) -> StreamingResponse:
    """Server-sent events: `first`, chunk(text) per delta, chunk("", finish_reason), chunk("", usage=), [DONE].

    `await on_done(completion)` runs before the finish chunk is sent (the store keeps the exchange first).
    With `calls`, text that may be a tool call is held back and sent as delta.tool_calls chunks at the end."""
    def event(obj: BaseModel) -> str:
        return f"data: {obj.model_dump_json(exclude={'usage'} if obj.usage is None else None)}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield event(first)
            async for u in job.updates():
                delta = calls.feed(u.delta) if calls else u.delta
                if delta:
                    yield event(chunk(delta))
                if u.done is not None:
                    if on_done is not None:
                        await on_done(u.done)
                    finish = u.done.finish_reason
                    if calls:
                        rest, found = calls.finish(u.done.text)
                        if rest:
                            yield event(chunk(rest))
                        for d in tools.call_deltas(found):
                            yield event(chunk("", delta=d))
                        finish = "tool_calls" if found else finish
                    yield event(chunk("", finish))
                    if include_usage:
                        yield event(chunk("", usage=_usage(u.done)))
            yield "data: [DONE]\n\n"
        except Exception:  # the 200 status is already sent: report the failure inside the stream
            log.exception("generation failed while streaming")
            err = s.ErrorResponse(error=s.ErrorDetail(message="generation failed on the server", type="server_error"))
            yield f"data: {err.model_dump_json()}\n\n"
        finally:  # the client went away (Starlette cancels this generator) or we are done: free the slot
            job.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _page(model_id: str, *, system: str | None = None, keeper=None, arena: bool = False,
          name: str = "static/index.html") -> str:
    """A page with the model id and the default system prompt (HTML-escaped), whether conversations are kept,
    whether there is an arena, the message catalogs (static/i18n-*.json) the page takes its texts from and the
    language code both pages share (static/i18n.js).
    One pass over the template: a value is never searched again for another placeholder."""
    import html
    import re

    text = resources.files("chatforge.serve").joinpath(name).read_text(encoding="utf-8")
    values = {"MODEL_ID": html.escape(model_id, quote=True),
              "KEPT": "1" if keeper is not None and keeper.enabled else "0",
              "ARENA": "1" if arena else "0",
              "SYSTEM_PROMPT": html.escape(system or "", quote=True),
              "I18N": _catalogs_json(),
              "I18N_JS": resources.files("chatforge.serve").joinpath("static/i18n.js").read_text(encoding="utf-8")}
    return re.sub(r"__(MODEL_ID|KEPT|ARENA|SYSTEM_PROMPT|I18N_JS|I18N)__", lambda m: values[m.group(1)], text)


PAGE_LANGUAGES = ("en", "zh")


def page_catalogs() -> dict[str, dict[str, str]]:
    """The chat page's and the arena's message catalogs, {"en": {key: text}, "zh": {...}}."""
    folder = resources.files("chatforge.serve").joinpath("static")
    return {lang: json.loads(folder.joinpath(f"i18n-{lang}.json").read_text(encoding="utf-8"))
            for lang in PAGE_LANGUAGES}


def _catalogs_json() -> str:
    """The catalogs as JSON that is safe inside <script type="application/json"> (no "</script>" can occur)."""
    return json.dumps(page_catalogs(), ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


# ---- errors ----------------------------------------------------------------------------------------------------


def add_error_handlers(app: FastAPI) -> None:
    """Every failure becomes OpenAI's error object; no traceback ever reaches a client."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return error_response(ApiError(e.status_code, str(e.detail), code="not_found" if e.status_code == 404
                                       else None, headers=getattr(e, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        err = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        loc = tuple(err["loc"])  # ("query", "limit"): the parameter is `limit`
        param = _param(loc[1:] if loc[:1] in (("query",), ("path",), ("body",)) else loc)
        return error_response(ApiError(422, f"{param or 'request'}: {err['msg']}", param=param,
                                       code="invalid_value"))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, e: ClientDisconnect):  # it left while sending its body: nobody to tell
        return Response(status_code=400)

    @app.exception_handler(ChatforgeError)
    async def chatforge_error(request: Request, e: ChatforgeError):
        return error_response(ApiError(400, e.message))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal server error (see the server log)", type="server_error"))
