"""Memory that a long-running process keeps flat: oneDNN's kernel caches bounded (chatforge/memory.py), and the
allocator's free memory handed back (tests/unit/serve/test_scheduler_memory.py, the train callback tests)."""

import os
import subprocess
import sys
import textwrap

import pytest

from chatforge import memory

# 400 products of the default model's MLP shape (576 -> 1536, bf16), each with a row count not seen before (a
# server's prompts, a preference run's micro-batches): the process's growth in MB, after a trim, on stdout.
GROWTH = textwrap.dedent("""
    import ctypes, sys
    if sys.argv[1] == "chatforge":
        import chatforge
    import torch
    torch.set_num_threads(1)
    def rss():
        return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
    lin = torch.nn.Linear(576, 1536, bias=False).to(torch.bfloat16)
    x = torch.randn(1000, 576, dtype=torch.bfloat16)
    with torch.no_grad():
        lin(x[:1])
        before = rss()
        for m in range(600, 1000):
            lin(x[:m])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    print(rss() - before)
""")


def test_bound_kernel_caches_sets_both_capacities_and_keeps_the_users(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    memory.bound_kernel_caches(32)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")
def test_importing_chatforge_keeps_varying_bf16_products_from_growing_the_process():
    from chatforge.models.load import cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("bf16 products run through oneDNN's cached kernels only on CPUs with AMX / AVX-512 bf16")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}

    def growth(first: str) -> float:
        out = subprocess.run([sys.executable, "-c", GROWTH, first], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        return float(out.stdout.split()[-1])

    plain, bounded = growth("torch"), growth("chatforge")
    assert plain > 150  # torch alone keeps ~0.8 MB for each new shape (2 x 1,024 cached kernels)
    assert bounded < plain / 2, (plain, bounded)  # 2 x 128 entries kept, then no more
