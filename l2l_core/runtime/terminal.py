"""What ``make reproduce`` shows in the terminal while it runs: each notebook's job progress lines, and the time left
by the last run's timings (the peak memory it reports is ``memory.TreeMemory``'s)."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def job_lines_shown(log: Path, prefix: str):
    """While the block runs, the notebook's job progress lines (``jobs.report`` appends them to ``log``, named
    by ``$L2L_JOB_LOG`` for the kernel) are printed here, in the terminal, not into the notebook."""
    from l2l_core.runtime.jobs import LOG_ENV

    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    before, os.environ[LOG_ENV] = os.environ.get(LOG_ENV), str(log)
    stop = threading.Event()

    def follow():
        with open(log) as handle:
            while True:
                finished = stop.is_set()  # read once more after the block ended: nothing is lost
                for line in handle:
                    print(prefix + line.rstrip("\n").removeprefix("[jobs] "), flush=True)
                if finished:
                    return
                stop.wait(1.0)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if before is None:
            os.environ.pop(LOG_ENV, None)
        else:
            os.environ[LOG_ENV] = before


def time_left(previous: pd.DataFrame, names) -> float | None:
    """Seconds the notebooks ``names`` took in the last run (None if one of them has no earlier time)."""
    seconds = dict(zip(previous["notebook"], pd.to_numeric(previous["seconds"], errors="coerce")))
    values = [seconds.get(n, float("nan")) for n in names]
    return None if any(pd.isna(v) for v in values) else float(sum(values))


def minutes_text(seconds: float | None) -> str:
    return "unknown (no earlier run)" if seconds is None else f"{seconds / 60:.1f} min"
