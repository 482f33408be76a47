"""Independent jobs (an LSTM's meta-training, an evaluation) run in this process or on a Dask distributed cluster.

``L2L_SCHEDULER`` chooses where: ``serial`` (the library's default) runs them here, one after another; ``local``
(``make reproduce``'s default) starts a Dask ``LocalCluster`` sized to this machine (one single-task worker per
``L2L_JOB_THREADS`` cores, default ``CLUSTER_JOB_THREADS``);
``tcp://host:port`` uses an existing Dask scheduler (e.g. one that ``dask-jobqueue`` started on SLURM).
Why Dask: it installs from the package registry with no service to set up, a LocalCluster needs no
configuration, it re-runs the task of a worker that dies, and dask-jobqueue puts the same run on a cluster.
A job writes its results to files atomically and is skipped when they exist, so a re-run resumes; a job pins
its torch thread count, so its numbers are bit-identical to the serial run with that many threads.
Each finished job is reported (:func:`report`), with the time left at the pace so far.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable

SCHEDULER_ENV = "L2L_SCHEDULER"
THREADS_ENV = "L2L_JOB_THREADS"
# Where job progress lines go: a file named by L2L_JOB_LOG (`make reproduce` sets it and shows the lines in the
# terminal, so they stay out of the book's pages), else this process's stdout.
LOG_ENV = "L2L_JOB_LOG"
_clients: dict = {}


def report(line: str) -> None:
    """One progress line: appended to ``$L2L_JOB_LOG`` if set, else printed."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    else:
        print(line, flush=True)


def scheduler() -> str:
    """The scheduler setting (``serial``, ``local`` or a Dask scheduler address), checked."""
    value = os.environ.get(SCHEDULER_ENV, "serial").strip() or "serial"
    if value not in ("serial", "local") and "://" not in value:
        raise ValueError(f"{SCHEDULER_ENV}={value!r} is not a scheduler; allowed: 'serial', 'local' or a Dask "
                         "scheduler address such as 'tcp://10.0.0.5:8786'")
    return value


# Torch threads per job on a cluster unless L2L_JOB_THREADS says otherwise: one MNIST trajectory (~16k
# coordinates) keeps one or two threads busy, not more; make bench compares 1 x 2 with 2 x 1 (bench/results.json).
CLUSTER_JOB_THREADS = 1


def job_threads(setting: str | None = None) -> int:
    """Torch threads per job: ``L2L_JOB_THREADS``; else, run serially, this process's torch thread count, and on
    a cluster ``CLUSTER_JOB_THREADS``."""
    import torch

    value = os.environ.get(THREADS_ENV) or None  # "" is unset, as for every L2L_* variable
    if value is None:
        return torch.get_num_threads() if (setting or scheduler()) == "serial" else CLUSTER_JOB_THREADS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r} must be a positive integer (torch threads per job)")
    return int(value)


def client(setting: str | None = None):
    """The Dask client for ``setting`` (default: :func:`scheduler`), started once per process; None for serial."""
    setting = setting or scheduler()
    if setting == "serial":
        return None
    if setting not in _clients:
        from distributed import Client

        if setting == "local":
            start_local_cluster(max(1, (os.cpu_count() or 1) // job_threads(setting)))
        else:
            _clients[setting] = Client(setting)
        link = _clients[setting].dashboard_link
        report(f"[jobs] Dask scheduler {setting}: {len(_clients[setting].scheduler_info()['workers'])} workers"
               + (f", dashboard {link}" if link else ""))
    return _clients[setting]


_worker_env_keys: set = set()


def start_local_cluster(workers: int):
    """Start (or replace) the ``local`` Dask cluster with ``workers`` single-task worker processes.

    The workers fork from a multiprocessing forkserver that has imported ``process.WORKER_PRELOAD`` (a process
    trick: with ``L2L_PROCESS_TRICKS=0``, or on Windows, each is spawned). It starts with the first cluster, with the
    environment Dask gives spawned workers (so threads and hashing are the same), and keeps it: every ``L2L_*``
    variable this process has (or had at an earlier start) is handed to each new cluster's workers, set ones with
    their value, removed ones as "" (which every ``L2L_*`` reader takes as unset).
    """
    import dask
    from distributed import Client, LocalCluster

    from l2l_core.runtime.process import preload_forkserver

    if "local" in _clients:
        _close(_clients.pop("local"))
    preload_forkserver()
    # one job per worker at a time, the rest queued on the scheduler: Dask's default (1.1) hands a single-thread
    # worker a second job, which then waits behind a long one while the other worker may be idle
    dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
    _worker_env_keys.update(k for k in os.environ if k.startswith("L2L_"))
    env = {k: os.environ.get(k, "") for k in sorted(_worker_env_keys)}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env=env)
    _clients["local"] = Client(cluster)
    return _clients["local"]


def _close(c) -> None:
    cluster = c.cluster
    c.close()
    if cluster is not None:
        cluster.close()


def close_clients() -> None:
    """Shut down the clusters this process started (tests; the end of a run)."""
    for c in _clients.values():
        _close(c)
    _clients.clear()


def _run_pinned(fn: Callable, item, threads: int):
    """Run ``fn(item)`` with ``threads`` torch threads (the thread count decides the kernels' summation order), then
    hand the memory it freed back to the OS."""
    import torch

    from l2l_core.runtime.memory import release_freed_memory

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(item)
    finally:
        torch.set_num_threads(before)  # a serial job must not change the calling notebook's thread count
        release_freed_memory()  # an idle worker (or kernel) must not keep its last job's peak resident


def run_jobs(fn: Callable, items: Iterable, label: str = "job", setting: str | None = None) -> list:
    """``[fn(item) for item in items]``, serially or as one Dask task per item, in order of ``items``.

    ``fn`` and the items must be picklable; ``fn`` should write its results atomically (a worker that dies
    has its task re-run, possibly elsewhere). Reports each job as it finishes, with the time left at this pace.
    """
    return run_batches([(fn, items, label)], setting)[0]


def run_batches(batches: Iterable[tuple[Callable, Iterable, str]], setting: str | None = None) -> list[list]:
    """``run_jobs`` for several ``(fn, items, label)`` batches submitted together: one list of results per batch.

    Why: a batch of five jobs on two workers leaves one worker idle for its last job, and a job that takes longer
    (an LSTM that restarts) leaves it idle longer; batches submitted together fill that time with the next batch's
    jobs. Jobs start in the order given (the scheduler hands each worker one job at a time); each job's numbers
    are the same as when run alone (it pins its threads and draws from its own seeds).
    """
    batches = [(fn, list(items), label) for fn, items, label in batches]
    jobs_ = [(b, k, fn, item, label) for b, (fn, items, label) in enumerate(batches) for k, item in enumerate(items)]
    results: list[list] = [[None] * len(items) for _, items, _ in batches]
    if not jobs_:
        return results
    c = client(setting)
    threads = job_threads(setting)
    start = time.perf_counter()
    where = "here" if c is None else f"{len(c.scheduler_info()['workers'])} Dask workers"
    counts = ", ".join(f"{label}: {len(items)} jobs" for _, items, label in batches if items)
    report(f"[jobs] {counts}; {where}, {threads} torch thread(s) each")
    if c is None:
        for done, (b, k, fn, item, label) in enumerate(jobs_, 1):
            results[b][k] = _run_pinned(fn, item, threads)
            _report_done(label, item, done, len(jobs_), start)
        return results
    from distributed import as_completed

    futures = [c.submit(_run_pinned, fn, item, threads, key=f"{label}-{i}-{time.time_ns()}", pure=False,
                        retries=2) for i, (_, _, fn, item, label) in enumerate(jobs_)]
    index = {f.key: i for i, f in enumerate(futures)}
    for done, future in enumerate(as_completed(futures), 1):
        future.result()  # re-raises the job's exception here
        _, _, _, item, label = jobs_[index[future.key]]
        _report_done(label, item, done, len(jobs_), start)
    for (b, k, *_), future in zip(jobs_, futures):
        results[b][k] = future.result()
    return results


def _report_done(label: str, item, done: int, total: int, start: float) -> None:
    elapsed = time.perf_counter() - start
    left = f", about {elapsed / done * (total - done):.0f} s left at this pace" if done < total else ""
    report(f"[jobs] {label} {item!r} done ({done}/{total}, {elapsed:.0f} s{left})")
