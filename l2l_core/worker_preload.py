"""Run first by the local Dask workers' forkserver (``jobs.WORKER_PRELOAD``): keeps Triton out of the workers.

torch._dynamo, which torch.optim imports on first use and the forkserver therefore preloads, imports Triton (a GPU
kernel compiler) whenever it is installed, as it is with torch's CUDA build. The jobs never compile anything, yet
Triton's library left ~70 MB resident in the forkserver, counted in every notebook's memory. Marked unimportable
here, in the forkserver only, Triton is seen as absent (``torch.utils._triton.has_triton_package()`` is False, as
on a machine without it) by the forkserver and the workers forked from it; notebooks and user code are untouched.
"""
import sys

sys.modules.setdefault("triton", None)  # None in sys.modules: ``import triton`` raises ImportError
