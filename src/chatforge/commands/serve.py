"""Serve a model behind an OpenAI-compatible HTTP API, with a web chat page at /.

Routes: POST /v1/chat/completions, POST /v1/completions (streamed with "stream": true), GET /v1/models,
GET /health. Concurrent requests are generated together (continuous batching: a new request joins the running
batch at the next decode step, up to --max-concurrency at once); up to --max-queue more wait, further ones get
429 with Retry-After. Listens on 127.0.0.1 unless --host says otherwise.
With --api-key (or CHATFORGE_API_KEY), every route but /health and the page needs `Authorization: Bearer KEY`;
the page asks for the key. Ctrl-C stops the server.
Every exchange is kept in the store (CHATFORGE_HOME/chatforge.db, or --store PATH) with the model, its
fingerprint, the sampling settings, token counts and latency, so that feedback can improve the model: thumbs,
corrections and better-of-two picks on the page or POST /v1/feedback (see `chatforge feedback`). --no-log keeps
nothing. /v1/completions (raw text) exchanges are kept too, and so are vLLM's (--engine vllm: vLLM listens on a
private port behind chatforge's front). With --compare OTHER, /arena shows two hidden answers (this model's and
OTHER's) to vote on.

Example:  chatforge serve runs/lumora --port 8000
          curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
               -d '{"messages": [{"role": "user", "content": "Hello!"}]}'
          chatforge serve runs/lumora-2 --compare runs/lumora      # the arena at http://127.0.0.1:8000/arena
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.generation_config import GenerateConfig
from chatforge.serve.config import ServeConfig
from chatforge.store.config import LogConfig

# Sampling settings come from each request, so only the model-loading options of GenerateConfig apply here.
_SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                    "presence_penalty", "stop", "seed")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_OR_RUN", nargs="?", default=None,
                        help="Model name, directory, .gguf file or run directory (default: smollm2-135m-instruct).")
    add_config_arguments(parser, ServeConfig)
    add_config_arguments(parser, GenerateConfig, exclude=_SAMPLING_FIELDS)
    add_config_arguments(parser, LogConfig)


def run(args) -> int:
    import sys

    from chatforge.config import build
    from chatforge.errors import ChatforgeError
    from chatforge.serve.feedback import Keeper
    from chatforge.serve.server import bind

    cfg = build(ServeConfig, args)
    logging = build(LogConfig, args)
    if cfg.compare and not logging.log:
        raise ChatforgeError("--compare needs the store to keep the arena's votes: leave out --no-log")
    gen = build(GenerateConfig, args)
    if cfg.engine == "vllm":  # vLLM runs its own server (behind chatforge's logging front unless --no-log)
        from chatforge.serve.vllm import run_vllm

        if cfg.compare:
            raise ChatforgeError("--compare (the arena) needs chatforge's engine; leave out --engine vllm")

        return run_vllm(args.model, cfg, gen, logging)
    if cfg.engine == "llama.cpp":
        from chatforge.infer.llamacpp import load_llama_class

        load_llama_class()  # a missing llama-cpp-python is a clear error before anything else
    sock = bind(cfg.host, cfg.port)  # before loading the model: a busy port fails in a second, not after it
    print(f"chatforge serve: loading {args.model or 'the default model'} ...", file=sys.stderr, flush=True)
    engine = _engine(args.model, cfg, gen)
    compare = _engine(cfg.compare, cfg, gen) if cfg.compare else None
    if cfg.system is None and cfg.engine != "llama.cpp":  # what the run was trained with (one shared prompt)
        from chatforge.models.resolve import resolve

        cfg.system = resolve(args.model).system_prompt
    model_id = cfg.model_id or engine.name
    models = {model_id: _identity(args.model, cfg)}
    if compare is not None:
        models[_compare_id(cfg.compare, model_id)] = _identity(cfg.compare, cfg)
    store, ids = logging.open(source="serve", models=models)
    return serve(engine, cfg, sock, keeper=Keeper(store, ids), compare=compare)


def _engine(model: str | None, cfg: ServeConfig, gen: GenerateConfig):
    if cfg.engine == "llama.cpp":
        from chatforge.errors import ChatforgeError
        from chatforge.infer.llamacpp import LlamaCppEngine

        if not model or not model.endswith(".gguf"):
            raise ChatforgeError(f"--engine llama.cpp serves a .gguf file, not {model or 'the default model'}",
                                 hint="export one with: chatforge export RUN --format gguf --out DIR")
        return LlamaCppEngine(model, name=cfg.model_id or model)
    import sys

    from chatforge.infer import Engine

    loaded = gen.load(model)
    for note in loaded.notes:
        print(f"chatforge serve: {note}", file=sys.stderr)
    return Engine(loaded, compile=gen.compile)


def _identity(model: str | None, cfg: ServeConfig):
    """What the store records of a served model (name, weights, adapter): the .gguf file itself for llama.cpp,
    else the resolved weights (cached by now: the files that were just loaded)."""
    from types import SimpleNamespace

    from chatforge.models.resolve import resolve

    if cfg.engine == "llama.cpp":
        return SimpleNamespace(name=model, path=model, adapter=None)
    return resolve(model)


def _compare_id(name: str, main_id: str) -> str:
    return name if name != main_id else f"{name} (compare)"  # as serve.app names the second model


def serve(engine, cfg: ServeConfig, sock, keeper=None, compare=None) -> int:
    """Run the server on a bound socket until Ctrl-C (or SIGTERM)."""
    from chatforge.serve import server
    from chatforge.serve.app import create_app

    app = create_app(engine, cfg, keeper=keeper, compare=compare)
    print(_banner(app.state.model_id, cfg, server.url_of(sock), keyed=bool(cfg.api_key or _env_key()),
                  store=keeper.store.path if keeper is not None and keeper.enabled else None), flush=True)
    server.run(app, sock)
    if keeper is not None and keeper.enabled:
        keeper.store.close()
    print("chatforge serve: stopped", flush=True)
    return 0


def _env_key() -> str | None:
    import os

    return os.environ.get("CHATFORGE_API_KEY") or None


def _banner(model_id: str, cfg: ServeConfig, url: str, keyed: bool, store=None) -> str:
    auth = " -H \"Authorization: Bearer $CHATFORGE_API_KEY\"" if keyed else ""
    key = "os.environ['CHATFORGE_API_KEY']" if keyed else "'none'"
    lines = [
        f"chatforge serve: {model_id} at {url}  (chat page: {url}/, Ctrl-C to stop)",
        f"  model id: {model_id}",
        f"  API key:  {'required (Authorization: Bearer ...)' if keyed else 'none'}",
        f"  log:      {store if store else 'off (--no-log): nothing is kept'}",
        *([f"  arena:    {url}/arena  ({model_id} vs {cfg.compare}, hidden)"] if cfg.compare else []),
        *([f"  system prompt for requests without one: {cfg.system}"] if cfg.system else []),
        "",
        f"  curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} \\",
        "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'",
        "",
        f"  from openai import OpenAI{'; import os' if keyed else ''}",
        f"  client = OpenAI(base_url='{url}/v1', api_key={key})",
        f"  client.chat.completions.create(model='{model_id}', messages=[{{'role': 'user', 'content': 'Hello!'}}])",
    ]
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not keyed:
        lines.append(f"\n  warning: listening on {cfg.host} without --api-key: anyone who can reach it can use it")
    return "\n".join(lines)
