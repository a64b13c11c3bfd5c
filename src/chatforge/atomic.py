"""Putting a finished directory in place atomically, shared by the stages that write outputs (eval, export)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


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
