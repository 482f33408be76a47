"""Imported first by the book's processes that compile nothing: keeps Triton, a GPU kernel compiler, out of them.

torch._dynamo, which torch.optim imports when the first optimizer is made, imports Triton whenever it is installed
(as with torch's CUDA build), and Triton's library then stays resident: ~70 MB in the Dask workers' forkserver and
~77 MB in a notebook's kernel, counted in every notebook's memory. Marked unimportable here, Triton is seen as
absent (``torch.utils._triton.has_triton_package()`` is False, as on a machine without it). Imported by the local
workers' forkserver (``jobs.WORKER_PRELOAD``) and by the kernels ``make reproduce`` runs the notebooks in
(``reproduce.local_kernel_manager``); a notebook opened in Jupyter and user code are untouched.
"""
import sys

sys.modules.setdefault("triton", None)  # None in sys.modules: ``import triton`` raises ImportError
