"""Optional fused CPU kernels for one LSTM layer (gate matmul, sigmoids and tanhs, cell and hidden update,
and the backward pass), compiled on first use with torch.utils.cpp_extension.

Why: the layer's work is two small matmuls (K = 23 or 41 inputs) around a lot of elementwise work on
(80, N) gate tensors; PyTorch writes those gates to memory and reads them back several times (matmul,
cell ops, autograd's saved tensors, the input concatenation). The kernels take a block of 64 coordinates,
accumulate a hidden unit's four gates in SIMD registers and apply the cell at once, so the gates never go
to memory; backward likewise keeps the gate gradients in a per-block buffer and adds dW in a fixed order
(the same thread count gives the same bits). sigmoid and tanh use an inlined rational approximation
(a few ulp), so results agree with the PyTorch path to float rounding (~1e-7; tested), not bit for bit.
Measured numbers are in bench/results.json. The first use compiles for ~20 s (cached afterwards in
torch's extension folder, one folder per source, flags, CPU model and torch install: ``build_tag``); any
failure (no compiler, no ninja) falls back to the plain PyTorch path with the same mathematics, and
``L2L_FUSED=0`` switches the kernels off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import shlex
import threading
from pathlib import Path

import torch

# The C++ source, built from the file on first use (torch.utils.cpp_extension; rebuilt when it changes).
_SOURCE_FILE = Path(__file__).with_name("fused_kernels.cpp")

# -fopenmp: at::parallel_for is inlined from ATen's headers as an OpenMP region; the extension's libgomp.so.1
# resolves to the one torch already loaded (same soname), so both share one thread pool.
# L2L_KERNEL_CFLAGS adds flags after these: "-march=haswell" builds for AVX2 on an AVX-512 CPU (to measure the other
# instruction set), "-ffp-contract=off" changes only the rounding (no fused multiply-add: objdump counts 436
# vfmadd instructions in the default build and 0 in this one; "-mno-fma" after -march=native left all 436 in
# place on the AMD EPYC with GCC 12): a run to check that verdicts do not depend on float rounding.
# -fno-finite-math-only after -ffast-math: the NaN guards need NaN and inf to get through the kernels as IEEE says.
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-mprefer-vector-width=512", "-fopenmp"]
_lock = threading.Lock()
_state: dict = {}
_enabled = [True]


def compile_flags() -> list[str]:
    """The flags the kernels are (or will be) compiled with, L2L_KERNEL_CFLAGS included (for bench records). Read at
    the call, not at import: a Dask worker imports this module before it takes its cluster's environment."""
    return [*_FLAGS, *shlex.split(os.environ.get("L2L_KERNEL_CFLAGS", ""))]


def set_enabled(flag: bool) -> bool:
    """Use (True) or bypass (False) the kernels from now on in this process; returns the previous setting.
    For comparisons and tests; ``L2L_FUSED=0`` in the environment switches them off before any compile."""
    previous, _enabled[0] = _enabled[0], bool(flag)
    return previous


def build_tag() -> str:
    """Names the build folder by everything the build depends on: the source, the flags, the CPU model and the
    torch install (version and headers' folder, by the path it was imported from: the build records that path's
    include folders and rebuilds when they differ, so one torch reached through a link and through its real path
    would otherwise rebuild in turn). Two checkouts or venvs in use at once (a run and the tests, two versions
    compared side by side) then never rebuild, or load, each other's kernels in one shared folder."""
    try:
        model = next(line for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    parts = (model, torch.__version__, str(Path(torch.__file__).parent), " ".join(compile_flags()), _SOURCE_FILE.read_text())
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]


def compile_source(name: str, source: str):
    """Compile (or load from torch's extension folder) a kernels source as the module ``name``, with the kernels'
    flags: ``kernels()`` for the source file, benches for variants of it (bench/kernel_parts.py)."""
    # a CPU machine with torch's CUDA build: cpp_extension warns "No CUDA runtime is found" on import, in every
    # process (each Dask worker too), about something that does not matter here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.cpp_extension import load_inline

    return load_inline(name, cpp_sources=source, functions=["layer_forward", "layer_backward"],
                       extra_cflags=compile_flags(), extra_ldflags=["-fopenmp"], verbose=False)


def kernels():
    """The compiled module, or None (disabled, or it could not be built: see ``unavailable_reason``)."""
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" not in _state:
            module, reason = None, None
            if os.environ.get("L2L_FUSED", "1") == "0":
                reason = "switched off by L2L_FUSED=0"
            else:
                try:
                    module = compile_source(f"l2l_fused_{build_tag()}", _SOURCE_FILE.read_text())
                except Exception as err:  # no compiler / ninja / headers: the PyTorch path is used
                    reason = f"{type(err).__name__}: {err}"
            _state["module"], _state["reason"] = module, reason
    return _state["module"]


def unavailable_reason() -> str | None:
    kernels()
    return _state.get("reason")


def usable(*tensors: torch.Tensor) -> bool:
    """True when the kernels are on and built and every tensor is a float32 CPU tensor."""
    return (_enabled[0] and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and kernels() is not None)


def _rowwise(t: torch.Tensor) -> torch.Tensor:
    """The kernels need unit stride along coordinates (rows may have any stride)."""
    return t if t.stride(1) == 1 else t.contiguous()


def pack(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """[W | b]: the kernels' (4H, inputs + H + 1) weight layout."""
    return torch.cat((weight, bias.unsqueeze(1)), dim=1).contiguous()


def layer_step(packed: torch.Tensor, x: torch.Tensor, h_prev: torch.Tensor, c_prev: torch.Tensor,
               h_out: torch.Tensor, c_out: torch.Tensor) -> None:
    """No-grad LSTM layer step: ``h_out``, ``c_out`` from the input rows ``x`` (I, N), ``h_prev``, ``c_prev``
    (H, N) and ``packed`` = [W | b]. Outputs may be the inputs (in place); all need unit stride along
    coordinates (rows may have any stride)."""
    kernels().layer_forward(packed, _rowwise(x), _rowwise(h_prev), _rowwise(c_prev), h_out, c_out)


class FusedLayer(torch.autograd.Function):
    """(x (I, N), h_prev (H, N), c_prev (H, N), weight (4H, I+H), bias (4H,)) -> (h, c), one LSTM layer
    with gates ordered input, forget, output, candidate. Saves only its inputs: backward recomputes the
    gates (cheaper here than writing (4H, N) activations to memory and reading them back)."""

    @staticmethod
    def forward(ctx, x, h_prev, c_prev, weight, bias):
        x, h_prev, c_prev = _rowwise(x), _rowwise(h_prev), _rowwise(c_prev)
        packed = pack(weight, bias)
        h, c = torch.empty_like(c_prev), torch.empty_like(c_prev)
        kernels().layer_forward(packed, x, h_prev, c_prev, h, c)
        ctx.save_for_backward(x, h_prev, c_prev, packed)
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        x, h_prev, c_prev, packed = ctx.saved_tensors
        need_x, need_h = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        empty = x.new_empty(0, 0)
        dx = torch.empty_like(x) if need_x else empty
        dh_prev = torch.empty_like(h_prev) if need_h else empty
        dc_prev, d_packed = torch.empty_like(c_prev), torch.empty_like(packed)
        kernels().layer_backward(packed, x, h_prev, c_prev, _rowwise(dh), _rowwise(dc), dx, dh_prev, dc_prev, d_packed)
        return (dx if need_x else None, dh_prev if need_h else None, dc_prev, d_packed[:, :-1], d_packed[:, -1])
