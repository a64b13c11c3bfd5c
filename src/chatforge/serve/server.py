"""Running the app with uvicorn: in the foreground (`chatforge serve`) or in a background thread (tests, bench)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from chatforge.errors import ChatforgeError


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0 = any free one), or a clear error when that address is taken."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # listening now: a client that read the banner can connect before uvicorn's loop runs
    except OSError as e:
        raise ChatforgeError(f"--host {host} --port {port}: cannot listen there ({e.strerror})",
                             hint="pick another --port, or stop the program that uses it") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app):
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            """On Ctrl-C, end the running generations first, so open streams finish and the shutdown is quick."""
            for name in ("scheduler", "compare_scheduler"):  # the arena's second model has its own
                scheduler = getattr(app.state, name, None)
                if scheduler is not None:
                    scheduler.stop(wait=False)
            super().handle_exit(sig, frame)

    # A short graceful shutdown: connections still open after 3 s are cut rather than holding Ctrl-C hostage.
    return Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))


def run(app, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn shuts down cleanly, then re-raises the Ctrl-C: swallowed here)."""
    try:
        _server(app).run(sockets=[sock])
    except KeyboardInterrupt:
        pass


@contextmanager
def background(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` from a thread for the duration of the block; yields the base URL (http://host:port)."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="chatforge-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server thread did not start")
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
