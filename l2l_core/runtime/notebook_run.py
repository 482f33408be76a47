"""Running one notebook as `make reproduce` runs it: papermill in a local kernel of this interpreter, the executed
copy written atomically with only the injected parameters cell on its page, and the fused kernels compiled once
before any notebook starts."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

from l2l_core.io import atomic_path
from l2l_core.runtime.memory import TreeMemory
from l2l_core.runtime.terminal import job_lines_shown


def parse_overrides(items) -> dict:
    """``NAME=VALUE`` strings (``--param``, the Makefile's ``PARAMS``) as a dict; a value is read as a Python literal
    (``20``, ``[0, 1]``, ``None``) where it is one, else kept as text."""
    overrides = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"param={item!r} is not NAME=VALUE (e.g. n_tasks=20 or meta_seeds=[0,1])")
        try:
            overrides[name.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[name.strip()] = text.strip()
    return overrides


def show_injected_parameters_only(path: Path) -> None:
    """Tag the notebook's default parameters cell ``remove-cell``: the page then shows one parameters cell, the
    one papermill injected with the values this run used."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, path)


def local_kernel_manager():
    """The kernel manager papermill starts kernels with: this interpreter, over local IPC sockets where the OS has them.

    A kernel over TCP warns on every start that it is unencrypted ("Kernel is running over TCP without
    encryption"), which a user of `make reproduce` can do nothing about; a local socket needs no encryption.
    The kernel is this interpreter whatever a "python3" kernelspec names: a user's own spec may point at another
    environment, and the kernels that ``build_kernels`` compiled are reused only from the same interpreter path
    (torch's extension build records the include paths it was given, and rebuilds when they differ).
    Each kernel imports ``l2l_core.runtime.process`` before the first cell, which keeps Triton out (nothing in the book
    compiles) and returns the pages torch's CUDA libraries made resident.
    """
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class LocalKernelManager(AsyncKernelManager):
        if os.name != "nt":  # no IPC transport on Windows
            transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:  # ipykernel's own spec for this interpreter (jupyter's "native" one)
                spec = get_kernel_dict()
                spec["argv"] = [*spec["argv"], "--IPKernelApp.exec_lines=import l2l_core.runtime.lean_start"]
                self._kernel_spec = KernelSpec(name="python3", **spec)
            return self._kernel_spec

        async def _async_interrupt_kernel(self) -> None:
            """No SIGINT at shutdown: jupyter_client sends one to the kernel's process group before the shutdown
            request, which reaches a Dask cluster's processes too and makes the idle kernel print "KeyboardInterrupt
            caught in kernel" into the terminal; a finished notebook has nothing to interrupt."""
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return LocalKernelManager


def execute_notebook(source: Path, target: Path, params: dict, cwd: Path, job_log: Path, label: str,
                     progress: bool = False) -> tuple[float, float, dict]:
    """Execute ``source`` with ``params`` into ``target`` (atomically; kernel in ``cwd``, job lines into ``job_log``
    and the terminal under ``label``); returns seconds, the peak memory (MB) of its kernel with its workers, and
    that peak by kind of process. ``progress`` shows papermill's bar of executed cells."""
    import papermill

    start = time.perf_counter()
    with atomic_path(target) as tmp, job_lines_shown(job_log, label), TreeMemory() as memory:
        papermill.execute_notebook(str(source), str(tmp.with_suffix(".ipynb")), parameters=params, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=progress, report_mode=False,
                                   kernel_manager_class=local_kernel_manager())
        show_injected_parameters_only(tmp.with_suffix(".ipynb"))
        os.replace(tmp.with_suffix(".ipynb"), tmp)
    return time.perf_counter() - start, memory.peak_mb, memory.peak_parts


def build_kernels() -> str:
    """Compile the fused kernels once, in a process of their own, before any notebook runs: the compiler's memory
    (about 1.5 GB) and time then count against no notebook, and every later process loads the cached build.
    Returns the terminal line: ready, or why the PyTorch path will be used."""
    code = "from l2l_core.optimizers import fused; print(fused.unavailable_reason() or 'ready')"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    status = lines[-1] if done.returncode == 0 and lines else f"could not be checked: {done.stderr.strip()[-300:]}"
    return f"[reproduce] fused kernels: {status} ({time.perf_counter() - start:.1f} s)"
