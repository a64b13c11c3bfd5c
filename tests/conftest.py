"""Shared fixtures. All user state goes to a temporary CHATFORGE_HOME; models are tiny and random."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.fixture(scope="session", autouse=True)
def chatforge_home(tmp_path_factory):
    """Redirect every piece of user state (converted models, caches) to a temp dir, once per session."""
    home = tmp_path_factory.mktemp("chatforge-home")
    os.environ["CHATFORGE_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the default model's tokenizer and ChatML template."""
    from chatforge.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer random GPT-2 without a chat template (a base model: chatforge's default template applies)."""
    from chatforge.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2")


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from chatforge.models.load import load_tokenizer

    return load_tokenizer(str(tiny_model))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def run_cli(capsys):
    """Run `chatforge ARGS...` in-process; returns (exit_code, stdout, stderr)."""
    from chatforge.cli import main

    def _run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(megabytes) -> a directory on a real tmpfs of that size (a disk that fills up); skipped with the
    reason where this process may not mount one (not root, no CAP_SYS_ADMIN)."""
    import subprocess

    mounts = []

    def make(megabytes: int) -> Path:
        d = tmp_path / f"disk{len(mounts)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill up: {r.stderr.strip() or 'mount failed'}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def fill_disk():
    """fill_disk(directory, leave_bytes=0): fill the file system of `directory` until about that much is free."""
    return _fill


def _fill(directory: Path, leave_bytes: int = 0) -> None:
    import errno

    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize - leave_bytes
    try:
        with open(directory / ".filler", "wb") as f:
            while free > 0:
                n = min(free, 1 << 20)
                f.write(b"\0" * n)
                free -= n
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
