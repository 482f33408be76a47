"""Hand memory that a finished phase freed back to the operating system.

glibc keeps freed heap memory for reuse instead of returning it, so a notebook's kernel that tuned baselines (a few
hundred MB of tensors, all freed) kept that much resident while its Dask workers ran the next jobs, and an idle
worker kept its last job's peak while the other one peaked. ``release_freed_memory`` after such a phase returns it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS (values and results are untouched); False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
