"""Putting a finished directory in place atomically, shared by the stages that write outputs (eval, export)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from chatforge.errors import ChatforgeError


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC, also when a library wraps it in its own error (safetensors: "... (os error 28)")."""
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e)


def disk_full_error(target: Path, what: str) -> ChatforgeError:
    """The error for a write that ran out of space; what was there before is still there (replace_dir)."""
    kept = f"; the previous {what} in {target} is kept" if Path(target).exists() else ""
    return ChatforgeError(f"{target}: the disk is full: the {what} was not written{kept}",
                          hint="free some space (or write elsewhere) and run it again", exit_code=1)


def usual_modes(path: Path) -> None:
    """Give the files of a finished output (a file, or a directory's files) the permissions a plain open() gives
    them under the umask. safetensors (0.8) writes its files 0600 (through a private temporary file), so the
    weights of an export or a checkpoint were readable by their owner alone while the files beside them were not
    (a serving account could read the config but not the model). Only such private files are changed."""
    mode = 0o666 & ~_umask()
    for p in [path] if path.is_file() else path.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o777 == 0o600 and mode != 0o600:
            p.chmod(mode)


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask can only be read by setting it, racing other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_dir(new: Path, target: Path) -> None:
    """Rename the finished directory `new` to `target` (same filesystem). An existing `target` (a directory or a
    link) is first moved aside into a hidden temporary directory and deleted only once `new` is in place, so
    at every moment `target` is either the old complete output or the new one. Its files get the usual
    permissions first (usual_modes)."""
    usual_modes(new)
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        target.rename(old / target.name)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # rmtree removes a moved link itself, never what it points to
