"""Open chatforge studio: the whole pipeline in the browser (data check, training with live curves, runs,
evaluation, chat with feedback, export), on this machine, in English or Chinese (?lang=zh).

Training, evaluation and export run as separate chatforge processes: the studio stays responsive, closing the
browser does not stop them, and a restarted studio shows the same runs (its state is the workspace).
Listens on 127.0.0.1 unless --host says otherwise; any other address needs a token.

Examples:  chatforge studio                              # http://127.0.0.1:7860
           chatforge studio --workspace ~/assistant --open
           chatforge studio --host 0.0.0.0 --port 8080    # prints a URL with a generated token
"""

from chatforge.config import add_arguments as add_config_arguments
from chatforge.studio.config import StudioConfig


def add_arguments(parser):
    add_config_arguments(parser, StudioConfig)


def run(args) -> int:
    import os
    import secrets
    import webbrowser

    from chatforge.config import build
    from chatforge.errors import ChatforgeError
    from chatforge.studio.security import is_loopback

    cfg = build(StudioConfig, args)
    token = cfg.token or os.environ.get("CHATFORGE_STUDIO_TOKEN") or None
    if token is None and not is_loopback(cfg.host):
        token = secrets.token_urlsafe(24)
    if not 0 < cfg.port < 65536:
        raise ChatforgeError(f"--port must be between 1 and 65535, got {cfg.port}")
    import uvicorn

    from chatforge.studio.app import create_app

    app = create_app(cfg.workspace, token=token, host=cfg.host, port=cfg.port,
                     upload_limit=cfg.upload_limit_mb << 20)
    shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    url = f"http://{shown}:{cfg.port}/" + (f"?token={token}" if token else "")
    print(f"chatforge studio: {url}  (workspace {app.state.workspace.root}; Ctrl-C stops)", flush=True)
    if cfg.open:
        webbrowser.open(url)
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    except OSError as e:
        raise ChatforgeError(f"--port {cfg.port}: cannot listen on {cfg.host} ({e.strerror})") from None
    return 0
