"""Putting a finished directory in place atomically, shared by the stages that write outputs (eval, export)."""

from __future__ import annotations

import errno
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


def replace_dir(new: Path, target: Path) -> None:
    """Rename the finished directory `new` to `target` (same filesystem). An existing `target` (a directory or a
    link) is first moved aside into a hidden temporary directory and deleted only once `new` is in place, so
    at every moment `target` is either the old complete output or the new one."""
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        target.rename(old / target.name)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # rmtree removes a moved link itself, never what it points to
