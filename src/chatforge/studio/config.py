"""StudioConfig: the options of `chatforge studio`. Light imports only."""

from __future__ import annotations

from dataclasses import dataclass

from chatforge.config import option, positive_int


@dataclass
class StudioConfig:
    workspace: str = option("studio-workspace", "The workspace directory: uploads, runs and exports live here "
                                                "(created when missing).")
    host: str = option("127.0.0.1", "Address to listen on. Anything but loopback requires a token (--token, "
                                    "or one is generated and printed).")
    port: int = option(7860, "TCP port to listen on.")
    token: str | None = option(None, "Require this token on every request (default: none on loopback, a "
                                     "generated one otherwise; or the CHATFORGE_STUDIO_TOKEN variable).")
    open: bool = option(False, "Open the studio in a web browser.")
    upload_limit_mb: int = option(64, "Largest data file that can be uploaded, in MiB.", parse=positive_int)
