"""glibc's malloc while ONNX Runtime loads a model: big blocks straight from the kernel, so that
what the load frees goes back to it.

ONNX Runtime parses the ONNX file's weights into heap blocks (one per initializer, ~2-10 MB
for a base-size model), copies them into its tensors and frees them. glibc serves a block
above its mmap threshold with its own mapping, returned on free; but the threshold is dynamic:
once such a block is freed it rises to that block's size (up to 32 MB), later blocks come from
the heap, and freed heap blocks below live ones stay resident. Which way it goes depends on
the order of frees, so the same load ends resident at two sizes: all-mpnet-base-v2's fp32
graph (436 MB) at 530 or 728 MB, about half of fresh processes each (bench/results/load_rss.md).

model_load() pins the threshold low while a session is made, so every weight-sized block is
its own mapping, then pins it at glibc's dynamic ceiling (32 MB: where a long-running
process's threshold ends up anyway) and trims the heap. Pinning is process-wide and ends
glibc's dynamic threshold for good; a process whose environment sets the threshold itself
(MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES) is left as it is, and so is any libc but glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
LOAD_THRESHOLD = 1 << 20  # while loading: every block of 1 MB or more is its own mapping
AFTER_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit

_lock = threading.Lock()  # one load at a time may move the process-wide threshold


def _glibc() -> Any | None:
    """The C library, if it is glibc and the environment leaves its mmap threshold alone."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    if "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextmanager
def model_load() -> Iterator[None]:
    """Around the creation of an ONNX Runtime session (see the module's docstring)."""
    with _lock:
        libc = _glibc()
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, LOAD_THRESHOLD)
        try:
            yield
        finally:
            if libc is not None:
                libc.mallopt(M_MMAP_THRESHOLD, AFTER_THRESHOLD)
                libc.malloc_trim(0)
