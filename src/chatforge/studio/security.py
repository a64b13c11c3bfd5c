"""The studio's request checks. It starts processes and reads files, so every request is checked:

- Host: only the address the studio listens on (and, on loopback, localhost / 127.0.0.1 / [::1]) with its
  port; anything else is a 403, so a web page whose DNS name was re-pointed at 127.0.0.1 (DNS rebinding)
  cannot talk to it.
- Origin: a request that changes state and carries an Origin header must come from the studio's own origin.
- CSRF: a request that changes state must carry the header `X-Chatforge-Studio: 1` (the forwarded chat API,
  /v1/..., must instead be JSON: `Content-Type: application/json`). A cross-site form can send neither, and a
  cross-site script would need a CORS preflight, which the studio never grants.
- Token: when one is set (always when the studio listens on anything but loopback), every request needs it:
  `Authorization: Bearer TOKEN`, or the `chatforge_studio` cookie that opening `/?token=TOKEN` sets (HttpOnly,
  SameSite=Strict). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi.responses import JSONResponse, RedirectResponse

COOKIE = "chatforge_studio"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    CSRF_HEADER = "X-Chatforge-Studio"

    def __init__(self, *, token: str | None, host: str, port: int):
        self.token = token
        names = {host, f"[{host}]" if ":" in host else host}
        if is_loopback(host) or host in ("0.0.0.0", "::"):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        self.hosts = {f"{n}:{port}" for n in names} | ({n for n in names} if port == 80 else set())
        self.any_host = host in ("0.0.0.0", "::")  # listening everywhere: the token is the protection
        self.origins = {f"http://{h}" for h in self.hosts}

    async def __call__(self, request, call_next):
        host = request.headers.get("host", "")
        if not self.any_host and host not in self.hosts:
            return _deny(403, f"host {host!r} is not this studio's address (DNS rebinding?)")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and origin not in self.origins and f"http://{host}" != origin:
                return _deny(403, f"origin {origin!r} may not change this studio's state")
            forwarded_api = request.url.path.startswith("/v1/")  # the chat server's own page calls its API
            json_body = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
            if forwarded_api and not json_body:
                return _deny(403, "the chat API takes JSON bodies only (Content-Type: application/json)")
            if not forwarded_api and request.headers.get(self.CSRF_HEADER) != "1":
                return _deny(403, f"a request that changes state needs the header {self.CSRF_HEADER}: 1")
        if self.token is not None:
            given = request.query_params.get("token") if request.url.path == "/" else None
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                response = RedirectResponse("/" + _keep_query(request), status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return response
            if not self._authorized(request):
                return _deny(401, "this studio needs its token: open the URL it printed (with ?token=...)")
        return await call_next(request)

    def _authorized(self, request) -> bool:
        auth = request.headers.get("authorization", "")
        candidates = [auth[7:]] if auth.lower().startswith("bearer ") else []
        candidates.append(request.cookies.get(COOKIE, ""))
        return any(hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates if c)


def _keep_query(request) -> str:
    """The query string without the token (e.g. ?lang=zh survives the redirect)."""
    rest = "&".join(f"{k}={v}" for k, v in request.query_params.multi_items() if k != "token")
    return f"?{rest}" if rest else ""


def _deny(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": None}}, status_code=status)
