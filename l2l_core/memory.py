"""Hand memory that a process holds but does not use back to the operating system.

glibc keeps freed heap memory for reuse instead of returning it, so a notebook's kernel that tuned baselines (a few
hundred MB of tensors, all freed) kept that much resident while its Dask workers ran the next jobs, and an idle
worker kept its last job's peak while the other one peaked. ``release_freed_memory`` after such a phase returns it.
``release_cuda_library_pages`` returns the pages that loading torch's CUDA libraries made resident.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re

MADV_DONTNEED = 4  # Linux: drop the range's pages; a private file mapping reads them from the file again if used
# torch's CUDA build: its own CUDA library and those of NVIDIA's wheels (cuBLAS, nvrtc, nvJitLink, cuFFT, ...)
CUDA_LIBRARY = re.compile(r"/nvidia/.*\.so|/libtorch_cuda[^/]*\.so")
_MAPPING_HEADER = re.compile(r"[0-9a-f]+-[0-9a-f]+")  # an smaps entry's first line starts with its address range


@functools.cache
def _libc():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
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


def cuda_library_mappings(path: str = "/proc/self/smaps") -> list[tuple[int, int, bool, float]]:
    """This process's mappings of CUDA libraries (``CUDA_LIBRARY``): (start, end, releasable, resident MB) each, where
    releasable means read-only and without an anonymous page (none of the loader's relocations): its pages are
    the file's, and dropping them loses nothing. Empty where ``path`` cannot be read (not Linux)."""
    mappings, current = [], None
    try:
        with open(path) as smaps:
            for line in smaps:
                fields = line.split()
                if not fields:
                    continue
                if _MAPPING_HEADER.fullmatch(fields[0]):
                    current = None
                    if len(fields) >= 6 and CUDA_LIBRARY.search(fields[5]):
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        current = [start, end, "w" not in fields[1], 0.0]
                        mappings.append(current)
                elif current is not None and fields[0] == "Rss:":
                    current[3] = int(fields[1]) / 1024
                elif current is not None and fields[0] == "Anonymous:" and int(fields[1]):
                    current[2] = False
    except OSError:
        return []
    return [tuple(m) for m in mappings]


def release_cuda_library_pages() -> float:
    """Drop the resident pages of this process's releasable CUDA library mappings; returns the MB they held (0 where
    there are none, or no madvise).

    Why: ``import torch`` (its CUDA build, which the project pins) leaves these libraries' pages resident although a
    CPU run never reads them again: 212 MB of libnvJitLink, libnvrtc and libcublasLt on the 2-core Intel Xeon (clean
    file pages, which its Linux 6.18 maps in large folios), counted in the PSS of every process of a notebook. Only
    read-only mappings without relocated pages are touched, so anything that uses them later reads the same bytes
    from the file again: values and results cannot change.
    """
    madvise = getattr(_libc(), "madvise", None)
    if madvise is None:
        return 0.0
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    released = 0.0
    for start, end, releasable, resident_mb in cuda_library_mappings():
        if releasable and resident_mb and madvise(start, end - start, MADV_DONTNEED) == 0:
            released += resident_mb
    return released
