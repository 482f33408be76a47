import platform

import psutil
import pytest
import torch

from l2l_core.runtime.memory import _malloc_trim, release_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or _malloc_trim() is None, reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_os():
    process = psutil.Process()
    before = process.memory_info().rss
    # 2,000 tensors of 100 KB (below glibc's mmap threshold: heap memory), written so that they are resident (in
    # fresh pages or in free ones an earlier test left resident: either way above ``before`` without a trim); the
    # last one allocated stays, keeping the heap's top in use, so that glibc does not give the rest back on its own
    chunks = [torch.ones(25_000) for _ in range(2_001)]
    last = chunks.pop()
    freed = 2_000 * 100_000
    del chunks
    assert release_freed_memory()
    still = process.memory_info().rss - before
    assert still < 0.25 * freed, f"{still / 2**20:.0f} MB of the ~190 MB freed is still resident"
    del last


_RELEASE = """
import json, sys, torch
from l2l_core.runtime.process import cuda_library_mappings, release_cuda_library_pages
resident = lambda: sum(mb for _, _, releasable, mb in cuda_library_mappings() if releasable)
before = resident()
released = release_cuda_library_pages()
after = resident()
p = torch.ones(64, requires_grad=True)
opt = torch.optim.SGD([p], lr=0.5)
(torch.ones(64, 64) @ p).sum().backward()
opt.step()
json.dump({"before": before, "released": released, "after": after, "p": sorted(set(p.tolist()))}, sys.stdout)
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/smaps, calls madvise")
def test_the_cuda_libraries_pages_go_back_and_torch_still_works():
    """The read-only, unrelocated pages of torch's CUDA libraries are dropped (a fresh process, as the book's kernels
    and forkserver do it), and torch computes on: a released page is read from the file again if ever used, while
    relocated pages, which the file cannot give back, are kept (dropping those crashed the process)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    if result["before"] == 0:
        pytest.skip("this torch maps no CUDA library pages (a CPU build)")
    assert result["released"] == pytest.approx(result["before"])
    assert result["after"] < 0.05 * result["before"], result  # what remains was read again since (symbol lookups)
    assert result["p"] == [1 - 0.5 * 64]  # d/dp sum(ones(64, 64) @ p) = 64 for every coordinate, exact in float32
