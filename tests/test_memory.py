import platform

import psutil
import pytest
import torch

from l2l_core.memory import _malloc_trim, release_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or _malloc_trim() is None, reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_os():
    process = psutil.Process()
    # 2,000 tensors of 100 KB (below glibc's mmap threshold: heap memory), written so that they are resident;
    # a small tensor allocated after them keeps the heap's top in use, so glibc does not trim on its own
    chunks = [torch.ones(25_000) for _ in range(2_000)]
    pin = torch.ones(16)
    del chunks
    resident = process.memory_info().rss
    assert release_freed_memory()
    returned = resident - process.memory_info().rss
    assert returned > 0.75 * 2_000 * 100_000, f"only {returned / 2**20:.0f} MB of ~190 MB freed went back"
    del pin
