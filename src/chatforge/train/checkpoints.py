"""Checkpoints that are never half-written and never trusted blindly.

Layout: RUN/checkpoints/checkpoint-STEP/ (what transformers.Trainer writes: weights or adapter, optimizer.pt,
scheduler.pt, rng_state*.pth, trainer_state.json) plus `chatforge_manifest.json`.

- Atomic: the Trainer writes into RUN/checkpoints/.staging/checkpoint-STEP; only after every file is on disk
  (fsync) is the manifest written and the directory renamed into place. A directory named checkpoint-STEP with
  a manifest is therefore complete; anything else (a killed save, a full disk) is ignored and cleaned up.
- Trusted: optimizer/scheduler/RNG states are pickles. The manifest lists the SHA-256 of every file and is
  signed (HMAC) with a per-user key kept in CHATFORGE_HOME, so `--resume` refuses files chatforge did not write
  (a replaced optimizer.pt, an extra .pkl) before any of them is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
from pathlib import Path

from chatforge.atomic import usual_modes
from chatforge.errors import ChatforgeError
from chatforge.home import chatforge_home

MANIFEST = "chatforge_manifest.json"
STAGING = ".staging"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _key() -> bytes:
    """The per-user signing key, created once (0600) on first use."""
    path = chatforge_home() / "checkpoint.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".checkpoint.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32).hex().encode())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process created first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> dict[str, Path]:
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def _sign(files: dict[str, str]) -> str:
    payload = json.dumps(files, sort_keys=True).encode()
    return hmac.new(_key(), payload, hashlib.sha256).hexdigest()


def _fsync_tree(directory: Path) -> None:
    """Flush file contents before the rename that makes the checkpoint visible (power loss, SIGKILL)."""
    for p in [*directory.rglob("*"), directory]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(staged: Path, root: Path, keep: int) -> Path:
    """Sign the staged checkpoint, move it to root/checkpoint-STEP, then drop all but the newest `keep`."""
    usual_modes(staged)  # the adapter's safetensors are written 0600, the rest by the umask
    files = {name: _sha256(p) for name, p in _files(staged).items()}
    (staged / MANIFEST).write_text(json.dumps({"files": files, "hmac": _sign(files)}, indent=1))
    _fsync_tree(staged)
    final = root / staged.name
    if final.exists():  # a checkpoint of the same step from an earlier attempt (resumed run)
        shutil.rmtree(final)
    staged.rename(final)
    _fsync_tree(root)
    for old in complete(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(root: Path) -> list[Path]:
    """Complete checkpoints (named checkpoint-STEP, with a manifest), oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and p.is_dir() and (p / MANIFEST).is_file()]
    return [p for _, p in sorted(found)]


def last(root: Path) -> Path | None:
    """The newest complete checkpoint, or None. Partial saves (the staging directory) are never returned."""
    done = complete(root)
    return done[-1] if done else None


def clean_partial(root: Path) -> None:
    """Remove what an interrupted save left behind."""
    shutil.rmtree(root / STAGING, ignore_errors=True)


def verify(checkpoint: Path) -> None:
    """Refuse a checkpoint whose files are not exactly the ones chatforge wrote and signed."""
    try:
        manifest = json.loads((checkpoint / MANIFEST).read_text())
        listed: dict[str, str] = manifest["files"]
        signature = manifest["hmac"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ChatforgeError(f"{checkpoint}: unreadable checkpoint manifest ({e})") from None
    hint = ("resume only from checkpoints this chatforge installation wrote (the signing key is "
            f"{chatforge_home() / 'checkpoint.key'}); or start the run again without --resume")
    if not hmac.compare_digest(signature, _sign(listed)):
        raise ChatforgeError(f"{checkpoint}: the checkpoint manifest is not signed by this chatforge "
                             "installation; refusing to load its pickle files", hint=hint)
    present = _files(checkpoint)
    extra = sorted(set(present) - set(listed))
    missing = sorted(set(listed) - set(present))
    changed = sorted(n for n in set(listed) & set(present) if _sha256(present[n]) != listed[n])
    problems = ([f"not written by chatforge: {', '.join(extra)}"] if extra else []) + \
               ([f"missing: {', '.join(missing)}"] if missing else []) + \
               ([f"modified after chatforge wrote them: {', '.join(changed)}"] if changed else [])
    if problems:
        raise ChatforgeError(f"{checkpoint}: refusing to resume from this checkpoint ({'; '.join(problems)})",
                             hint=hint)


def step_of(checkpoint: Path) -> int:
    return int(_NAME.match(checkpoint.name).group(1))
