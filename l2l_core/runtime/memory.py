"""Memory: freed heap handed back to the operating system, and the peak memory of a process tree.

glibc keeps freed heap memory for reuse instead of returning it, so a notebook's kernel that tuned baselines (a few
hundred MB of tensors, all freed) kept that much resident while its Dask workers ran the next jobs, and an idle
worker kept its last job's peak while the other one peaked. ``release_freed_memory`` after such a phase returns it.
``TreeMemory`` samples the peak memory of a notebook's kernel with its workers (``make reproduce`` reports it).
(The pages that loading torch's CUDA libraries made resident are a process trick: ``process``.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading


@functools.cache
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def c_library():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    trim = getattr(c_library(), "malloc_trim", None)
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


class TreeMemory:
    """Peak memory (MB) of this process's children and their descendants (a notebook's kernel and its Dask
    workers), sampled every ``interval`` seconds in a background thread while the ``with`` block runs.

    Memory is the proportional set size (PSS) where the OS reports it: a page shared by n processes (torch's
    libraries in every Dask worker) counts 1/n in each, so the sum is the memory the notebook really takes; else
    RSS. Reading a process's PSS walks its page tables (~15-20 ms of CPU for each of torch's processes, measured on
    the 2-vCPU AMD EPYC: ~85 ms a second for a notebook's tree, taken from the jobs when they keep both vCPUs busy),
    so it is read every ``exact_every`` samples, and in between only when a cheap estimate says the peak may have
    been passed: a process's last PSS plus its RSS change since (RSS is nearly free to read; it errs high, as a
    newly touched shared page counts fully in RSS). The peak is always an exact reading: an estimate alone counted
    pages shared by both workers (a data set both map) twice, and put chapter 03's peak ~390 MB too high."""

    def __init__(self, interval: float = 1.0, exact_every: int = 5):
        self.interval, self.exact_every, self.peak_mb, self.peak_parts = interval, exact_every, 0.0, {}
        self._stop = threading.Event()
        self._exact: dict = {}  # process -> (its PSS, its RSS) at the last exact reading (MB)
        self._samples = 0

    def _sample(self, exact: bool | None = None) -> tuple[float, dict, bool]:
        """The tree's memory now (MB), in total and by kind of process (``_process_kind``), and whether every
        process's reading was exact (``exact``: read PSS everywhere; None: every ``exact_every``-th sample)."""
        import psutil

        if exact is None:
            exact = self._samples % self.exact_every == 0
        self._samples += 1
        parts, exact_readings, all_exact = {}, {}, True
        for child in psutil.Process().children(recursive=True):
            try:
                if exact or child not in self._exact:
                    try:
                        info = child.memory_full_info()
                        exact_readings[child] = (getattr(info, "pss", info.rss) / 2**20, info.rss / 2**20)
                    except psutil.AccessDenied:
                        rss = child.memory_info().rss / 2**20
                        exact_readings[child] = (rss, rss)
                    mb = exact_readings[child][0]
                else:
                    pss, rss = self._exact[child]
                    mb = pss + child.memory_info().rss / 2**20 - rss
                    all_exact = False
            except psutil.Error:  # it ended between listing and reading
                continue
            kind = _process_kind(child)
            parts[kind] = parts.get(kind, 0.0) + mb
        self._exact = exact_readings if exact else {**self._exact, **exact_readings}
        return sum(parts.values()), parts, all_exact

    def _run(self):
        while not self._stop.wait(self.interval):
            total, parts, exact = self._sample()
            if total > self.peak_mb and not exact:  # the estimate may be high: read PSS now, and keep that
                total, parts, exact = self._sample(exact=True)
            if total > self.peak_mb:
                self.peak_mb, self.peak_parts = total, parts

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _process_kind(process) -> str:
    """What a process of a notebook's tree is, for the memory breakdown: kernel, Dask worker, nanny, compiler."""
    try:
        cmd = " ".join(process.cmdline())
    except Exception:  # psutil.Error: gone, or not ours to read
        return "other"
    if "ipykernel" in cmd:
        return "kernel"
    if "distributed" in cmd or "dask" in cmd or "multiprocessing" in cmd:
        return "Dask workers and nannies"
    if any(c in cmd for c in ("cc1plus", "g++", "ninja", "ld ")):
        return "kernel compile"
    return "other"
