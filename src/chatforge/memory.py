"""Keeping a long-running process's memory flat (stdlib only): bounded kernel caches, and free memory handed
back to the system.

oneDNN, which runs torch's bf16 matrix products on CPUs with AMX / AVX-512 bf16, keeps every kernel it builds,
one per problem shape, in two caches (its own and ideep's, PyTorch's wrapper around it): 1,024 entries each by
default, each holding buffers about the size of the product's output. Fixed shapes (packed training rows) hit
the same few entries; varying ones (a server's prompts, preference micro-batches) add entries until both caches
are full: measured here, 1,000 new row counts through the default model's four weight shapes grew a process by
2.2 GB, by 364 MB with 128 entries (then flat), at the same speed where the shapes repeat.
`bound_kernel_caches` sets both capacities in the environment (where the user has not), which oneDNN reads when
it builds its first kernel.

glibc keeps memory freed by Python and torch in its arenas (one per thread that allocated). When tensor shapes
vary from one step to the next (a server's requests, preference micro-batches of a varying row count), freed
blocks fit the next shapes badly, and a process's RSS creeps up well past what it holds: a DPO run on the
default model went from 1.8 to 3.3 GiB over 8 steps holding the same tensors, 2.7 GiB with a trim per step.
malloc_trim(0) returns the free parts. A no-op where libc has no malloc_trim.
"""

from __future__ import annotations

import os

# per cache: a LoRA step on 2,048-token rows uses ~40 shapes, plus ~4 per example length in attention's backward
KERNEL_CACHE_ENTRIES = 128
_KERNEL_CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN's, ideep's
_trim = None  # libc's malloc_trim once looked up; False where there is none


def bound_kernel_caches(entries: int = KERNEL_CACHE_ENTRIES) -> None:
    """Bound oneDNN's kernel caches for this process and its children; a value the user set is kept."""
    for name in _KERNEL_CACHES:
        os.environ.setdefault(name, str(entries))


def release_free_memory() -> None:
    global _trim
    if _trim is None:
        import ctypes
        import ctypes.util

        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)
