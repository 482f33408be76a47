import platform

import psutil
import pytest
import torch

from l2l_core.memory import _malloc_trim, release_freed_memory


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
