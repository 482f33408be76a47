"""Imported first by the processes ``make reproduce`` starts, which run on the CPU and compile nothing: the notebooks'
kernels (``reproduce.local_kernel_manager``) and the local Dask workers' forkserver (``jobs.WORKER_PRELOAD``).

Two things torch's CUDA build would otherwise leave resident in each of them, counted in every notebook's memory:
- Triton, a GPU kernel compiler that torch._dynamo imports whenever it is installed (torch.optim imports dynamo when
  the first optimizer is made): ~70 MB in the forkserver, ~77 MB in a kernel. Marked unimportable here, it is seen
  as absent (``torch.utils._triton.has_triton_package()`` is False, as on a machine without it);
- the CUDA libraries' pages that ``import torch`` made resident (``memory.release_cuda_library_pages``).
A notebook opened in Jupyter and user code are untouched.
"""
import sys

sys.modules.setdefault("triton", None)  # None in sys.modules: ``import triton`` raises ImportError

import torch  # noqa: E402,F401  loads the CUDA libraries, whose pages are released next

from l2l_core.memory import release_cuda_library_pages  # noqa: E402

release_cuda_library_pages()
