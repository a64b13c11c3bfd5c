"""Serve a model behind an OpenAI-compatible HTTP API, with a web chat page at /.

Routes: POST /v1/chat/completions, POST /v1/completions (streamed with "stream": true), GET /v1/models,
GET /health. Concurrent requests are generated together (continuous batching: a new request joins the running
batch at the next decode step, up to --max-concurrency at once); up to --max-queue more wait, further ones get
429 with Retry-After. Listens on 127.0.0.1 unless --host says otherwise.
With --api-key (or CHATFORGE_API_KEY), every route but /health and the page needs `Authorization: Bearer KEY`;
the page asks for the key. Ctrl-C stops the server.

Example:  chatforge serve runs/lumora --port 8000
          curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
               -d '{"messages": [{"role": "user", "content": "Hello!"}]}'
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.generation_config import GenerateConfig
from chatforge.serve.config import ServeConfig

# Sampling settings come from each request, so only the model-loading options of GenerateConfig apply here.
_SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "seed")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_OR_RUN", nargs="?", default=None,
                        help="Model name, directory, .gguf file or run directory (default: smollm2-135m-instruct).")
    add_config_arguments(parser, ServeConfig)
    add_config_arguments(parser, GenerateConfig, exclude=_SAMPLING_FIELDS)


def run(args) -> int:
    import sys

    from chatforge.config import build
    from chatforge.serve.server import bind

    cfg = build(ServeConfig, args)
    sock = bind(cfg.host, cfg.port)  # before loading the model: a busy port fails in a second, not after it
    print(f"chatforge serve: loading {args.model or 'the default model'} ...", file=sys.stderr, flush=True)
    from chatforge.models.resolve import resolve

    resolved = resolve(args.model)
    engine = build(GenerateConfig, args).engine(resolved)
    if cfg.system is None:  # what the run was trained with (when its data shared one system prompt)
        cfg.system = resolved.system_prompt
    return serve(engine, cfg, sock)


def serve(engine, cfg: ServeConfig, sock) -> int:
    """Run the server on a bound socket until Ctrl-C (or SIGTERM)."""
    from chatforge.serve import server
    from chatforge.serve.app import create_app

    app = create_app(engine, cfg)
    print(_banner(app.state.model_id, cfg, server.url_of(sock), keyed=bool(cfg.api_key or _env_key())), flush=True)
    server.run(app, sock)
    print("chatforge serve: stopped", flush=True)
    return 0


def _env_key() -> str | None:
    import os

    return os.environ.get("CHATFORGE_API_KEY") or None


def _banner(model_id: str, cfg: ServeConfig, url: str, keyed: bool) -> str:
    auth = " -H \"Authorization: Bearer $CHATFORGE_API_KEY\"" if keyed else ""
    key = "os.environ['CHATFORGE_API_KEY']" if keyed else "'none'"
    lines = [
        f"chatforge serve: {model_id} at {url}  (chat page: {url}/, Ctrl-C to stop)",
        f"  model id: {model_id}",
        f"  API key:  {'required (Authorization: Bearer ...)' if keyed else 'none'}",
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
