"""Process tricks: what the processes ``make reproduce`` starts do to hold less memory, in one place, behind one switch.

``L2L_PROCESS_TRICKS=0`` turns every trick off; unset, empty or ``1`` leaves them on (the default). None of them
changes a value or a result, only what a process keeps resident; ``tests/test_process.py`` runs a smoke experiment
(meta-training and evaluation as jobs on the local cluster) with the tricks on and off and compares its files byte for
byte. They apply where the switch is read: :func:`make_lean`, which the notebooks' kernels
(``notebook_run.local_kernel_manager``) and the local Dask workers' forkserver run first (by importing
``l2l_core.runtime.lean_start``), and :func:`preload_forkserver`, which ``jobs.start_local_cluster`` calls. A notebook
opened in Jupyter and user code are untouched.

1. **Triton kept out** (:func:`keep_triton_out`). torch._dynamo imports Triton, a GPU kernel compiler, whenever it is
   installed, and torch.optim imports dynamo when the first optimizer is made: ~70 MB in the forkserver, ~77 MB in a
   kernel. ``sys.modules["triton"] = None`` makes ``import triton`` raise ImportError, so torch sees it as absent
   (``torch.utils._triton.has_triton_package()`` is False, as on a machine without it). Nothing in the book compiles.
2. **The CUDA libraries' pages released** (:func:`release_cuda_library_pages`). ``import torch`` (its CUDA build,
   which the project pins) leaves these libraries' pages resident although a CPU run never reads them again: 212 MB of
   libnvJitLink, libnvrtc and libcublasLt on the 2-core Intel Xeon (clean file pages, which its Linux 6.18 maps in
   large folios), counted in the PSS of every process of a notebook. ``madvise(MADV_DONTNEED)`` drops them, for
   read-only mappings without relocated pages only, so anything that uses them later reads the same bytes from the
   file again.
3. **Workers forked from a preloaded server** (:func:`preload_forkserver`). Local Dask workers fork from a
   multiprocessing forkserver that has imported ``WORKER_PRELOAD`` (the modules whose functions run as jobs, and what
   those jobs import on first use), so those pages are shared copy-on-write by every worker instead of paid by each.
   Measured on the 2-vCPU AMD EPYC: two workers after importing torch and the job modules took 908 MB (PSS) when
   spawned, 520 MB (server included) when forked; two workers each meta-training three MNIST trajectories peaked at
   1,247 MB, and at 986 MB with torch._dynamo preloaded too. Off, the workers are spawned (Dask's default).

The fused kernels' compiler flags are no process trick: they keep NaN/inf semantics (``optimizers.fused``).
"""
from __future__ import annotations

import ctypes
import os
import re
import sys

from l2l_core.runtime.memory import c_library

SWITCH_ENV = "L2L_PROCESS_TRICKS"


def enabled() -> bool:
    """Whether the process tricks are on: ``L2L_PROCESS_TRICKS`` unset, empty or 1 (on) or 0 (off)."""
    value = os.environ.get(SWITCH_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{SWITCH_ENV}={value!r} must be 0 (process tricks off) or 1 (on, the default)")
    return value != "0"


# ------------------------------------------------------------------ 1. Triton
def keep_triton_out() -> None:
    """Mark Triton unimportable in this process (``import triton`` raises ImportError) unless already imported."""
    sys.modules.setdefault("triton", None)


# ------------------------------------------------------------------ 2. the CUDA libraries' pages
MADV_DONTNEED = 4  # Linux: drop the range's pages; a private file mapping reads them from the file again if used
# torch's CUDA build: its own CUDA library and those of NVIDIA's wheels (cuBLAS, nvrtc, nvJitLink, cuFFT, ...)
CUDA_LIBRARY = re.compile(r"/nvidia/.*\.so|/libtorch_cuda[^/]*\.so")
_MAPPING_HEADER = re.compile(r"[0-9a-f]+-[0-9a-f]+")  # an smaps entry's first line starts with its address range


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
    there are none, or no madvise). Values and results cannot change: see trick 2 above."""
    madvise = getattr(c_library(), "madvise", None)
    if madvise is None:
        return 0.0
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    released = 0.0
    for start, end, releasable, resident_mb in cuda_library_mappings():
        if releasable and resident_mb and madvise(start, end - start, MADV_DONTNEED) == 0:
            released += resident_mb
    return released


def make_lean() -> None:
    """Tricks 1 and 2 in this process, when the switch is on: Triton kept out, then torch imported (it loads the CUDA
    libraries) and their pages released."""
    if not enabled():
        return
    keep_triton_out()
    import torch  # noqa: F401  loads the CUDA libraries, whose pages are released next

    release_cuda_library_pages()


# The statement a process runs first to apply ``make_lean`` (a notebook kernel's exec_lines; the forkserver's preload
# list names the same module).
LEAN_START = "import l2l_core.runtime.lean_start"


# ------------------------------------------------------------------ 3. the workers' forkserver
# What a local worker process imports before it forks: the modules whose functions the package runs as jobs, and
# what those jobs import on first use (torch.optim imports torch._dynamo, with Triton, when the first optimizer is
# made; results are written as parquet). ``lean_start`` comes first: it keeps Triton out and returns the CUDA
# libraries' pages. A module that a torch version lacks is skipped.
WORKER_PRELOAD = ("l2l_core.runtime.lean_start", "torch", "torch._dynamo", "pyarrow.parquet", "pyarrow.pandas_compat",
                  "l2l_core.experiments.lstms", "l2l_core.evaluation.evaluate")


def preload_forkserver() -> bool:
    """Have Dask's local workers fork from a forkserver that imported ``WORKER_PRELOAD`` (trick 3); False, and Dask's
    default (spawned workers) left alone, when the switch is off or the OS has no forkserver (Windows)."""
    import multiprocessing

    import dask

    if not enabled() or "forkserver" not in multiprocessing.get_all_start_methods():
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})  # Dask's default
        return False
    from distributed.utils import get_mp_context

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    get_mp_context()  # Dask sets its own preload list on its first call only: ours, set next, replaces it
    multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed", *WORKER_PRELOAD])
    return True
