"""The studio's state on disk: one workspace directory (uploads, runs, exports), and nothing in the browser.

    WORKSPACE/
      data/              uploaded data files (safe names)
      runs/NAME/         training runs, exactly as `chatforge train --out runs/NAME` writes them
      exports/NAME/      exports
      models/            local models (Hugging Face directories, .gguf files) to pick from
      .studio/           the studio's own bookkeeping: configs it launched runs with, jobs (pid, argv, log)

Every path that comes from the browser goes through `Workspace.resolve`, which refuses absolute paths, `..`
and symlinks that lead outside the workspace.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from chatforge.errors import ChatforgeError

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
NAME = re.compile(r"^[\w][\w.\-]{0,99}$")  # run / export names: letters (any script), digits, _ . -


class StudioError(ChatforgeError):
    """A request the studio refuses: sent as {"error": {"message", "field"}} with a 4xx status."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
        raise StudioError(400, f"{field}: use letters, digits, '_', '-' and '.' (at most 100), not {name!r}",
                          field)
    return name


def safe_filename(name: str) -> str:
    """An uploaded file's name reduced to a safe one: its last path part, normalised, no leading dots."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^\w.\-]", "_", base).lstrip(".")[:120]
    if not base or Path(base).suffix.lower() not in DATA_SUFFIXES:
        raise StudioError(400, f"file name {name!r}: a data file must end in " + ", ".join(DATA_SUFFIXES), "name")
    return base


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        for sub in ("data", "runs", "exports", ".studio/configs", ".studio/jobs", ".studio/logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def resolve(self, rel: str, field: str = "path", *, must_exist: bool = True) -> Path:
        """A browser-given path, relative to the workspace, as a real path inside it (else a 4xx)."""
        if not isinstance(rel, str) or not rel.strip():
            raise StudioError(400, f"{field}: a path inside the workspace is required", field)
        if "\x00" in rel or Path(rel).is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
            raise StudioError(403, f"{field}: {rel!r} is not a path inside the workspace", field)
        if any(part == ".." for part in re.split(r"[\\/]", rel)):
            raise StudioError(403, f"{field}: '..' is not allowed in {rel!r}", field)
        path = (self.root / rel).resolve()  # follows symlinks: a link that leaves the workspace is caught here
        if not path.is_relative_to(self.root):
            raise StudioError(403, f"{field}: {rel!r} leads outside the workspace", field)
        if must_exist and not path.exists():
            raise StudioError(404, f"{field}: {rel!r} does not exist in the workspace", field)
        return path

    def rel(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def data_files(self) -> list[dict]:
        """Data files anywhere in the workspace but runs/, exports/ and .studio/ (newest first)."""
        out = []
        for p in self.root.rglob("*"):
            top = p.relative_to(self.root).parts[0]
            if top in ("runs", "exports", "models", ".studio") or not p.is_file() or p.suffix.lower() not in DATA_SUFFIXES:
                continue
            if not p.resolve().is_relative_to(self.root):
                continue
            out.append({"path": self.rel(p), "bytes": p.stat().st_size, "mtime": p.stat().st_mtime})
        return sorted(out, key=lambda f: -f["mtime"])

    def save_upload(self, name: str, body: bytes, limit: int) -> Path:
        if len(body) > limit:
            raise StudioError(413, f"the file is {len(body):,} bytes, more than the limit of {limit:,}", "file")
        if not body:
            raise StudioError(400, "the file is empty", "file")
        path = self.root / "data" / safe_filename(name)
        tmp = path.with_name("." + path.name + ".part")
        tmp.write_bytes(body)
        tmp.replace(path)  # a half-written upload never looks like a data file
        return path

    def run_dir(self, name: str, *, must_exist: bool = True) -> Path:
        path = self.runs_dir / check_name(name, "run")
        if must_exist and not path.is_dir():
            raise StudioError(404, f"run {name!r} does not exist", "run")
        return path

    def run_names(self) -> list[str]:
        return sorted((p.name for p in self.runs_dir.iterdir()
                       if p.is_dir() and ((p / "run.json").is_file() or (p / "config.yaml").is_file())),
                      key=lambda n: -(self.runs_dir / n).stat().st_mtime)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return rows
