"""Optional fused CPU kernels for the LSTM cell's elementwise work (the gates' sigmoids and tanhs, the
cell and hidden updates, and their backward pass), compiled on first use with torch.utils.cpp_extension.

Why: after the gate matmuls, the cell's elementwise ops are most of the LSTM's cost; PyTorch runs them as
six to ten separate passes over (80, N) tensors (and autograd saves and revisits each), the fused kernels
make one pass forward and one backward, vectorised with the compiler's SIMD math library.
Measured numbers are in bench/results.json. The first use compiles for ~25 s (cached afterwards in
torch's extension folder, per CPU model); any failure (no compiler, no ninja) falls back to the plain
PyTorch path with identical mathematics, and ``L2L_FUSED=0`` switches the kernels off.
Results agree with the PyTorch path to float rounding (a few 1e-7 relative; tested), not bit for bit.
"""
from __future__ import annotations

import hashlib
import os
import platform
import threading

import torch

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>

// Gate rows of G (4H x N, row stride ldg): input, forget, output (sigmoid), candidate (tanh).
// Forward: c <- f * c_prev + i * g, h <- o * tanh(c). Columns are independent coordinates.
static inline float sig(float x) { return 1.0f / (1.0f + expf(-x)); }

void cell_forward(torch::Tensor G, torch::Tensor c_prev, torch::Tensor c, torch::Tensor h,
                  torch::Tensor acts, torch::Tensor tc, bool save) {
  const int64_t H = c.size(0), N = c.size(1);
  const float* g = G.data_ptr<float>(); const float* cp = c_prev.data_ptr<float>();
  float* cn = c.data_ptr<float>(); float* hp = h.data_ptr<float>();
  float* ap = save ? acts.data_ptr<float>() : nullptr; float* tp = save ? tc.data_ptr<float>() : nullptr;
  const int64_t ldg = G.stride(0), ldcp = c_prev.stride(0), ldc = c.stride(0), ldh = h.stride(0);
  const int64_t lda = save ? acts.stride(0) : 0, ldt = save ? tc.stride(0) : 0;
  at::parallel_for(0, N, 2048, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < H; ++r) {
      const float* gi = g + r * ldg; const float* gf = g + (H + r) * ldg;
      const float* go = g + (2 * H + r) * ldg; const float* gg = g + (3 * H + r) * ldg;
      const float* cpr = cp + r * ldcp; float* cr = cn + r * ldc; float* hr = hp + r * ldh;
      if (save) {
        float* ai = ap + r * lda; float* af = ap + (H + r) * lda; float* ao = ap + (2 * H + r) * lda;
        float* ag = ap + (3 * H + r) * lda; float* tr = tp + r * ldt;
        #pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          float i = sig(gi[j]), f = sig(gf[j]), o = sig(go[j]), cand = tanhf(gg[j]);
          float cv = f * cpr[j] + i * cand, t = tanhf(cv);
          ai[j] = i; af[j] = f; ao[j] = o; ag[j] = cand; tr[j] = t; cr[j] = cv; hr[j] = o * t;
        }
      } else {
        #pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          float i = sig(gi[j]), f = sig(gf[j]), o = sig(go[j]), cand = tanhf(gg[j]);
          float cv = f * cpr[j] + i * cand;
          cr[j] = cv; hr[j] = o * tanhf(cv);
        }
      }
    }
  });
}

// Backward of cell_forward given dL/dh, dL/dc: gradients of the gate pre-activations and of c_prev.
void cell_backward(torch::Tensor acts, torch::Tensor tc, torch::Tensor c_prev, torch::Tensor dh,
                   torch::Tensor dc, torch::Tensor dG, torch::Tensor dc_prev) {
  const int64_t H = tc.size(0), N = tc.size(1);
  const float* ap = acts.data_ptr<float>(); const float* tp = tc.data_ptr<float>();
  const float* cp = c_prev.data_ptr<float>(); const float* dhp = dh.data_ptr<float>();
  const float* dcp = dc.data_ptr<float>(); float* dg = dG.data_ptr<float>(); float* dcpr = dc_prev.data_ptr<float>();
  const int64_t lda = acts.stride(0), ldt = tc.stride(0), ldcp = c_prev.stride(0), ldh = dh.stride(0),
                ldc = dc.stride(0), ldg = dG.stride(0), ldo = dc_prev.stride(0);
  at::parallel_for(0, N, 2048, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < H; ++r) {
      const float* ai = ap + r * lda; const float* af = ap + (H + r) * lda;
      const float* ao = ap + (2 * H + r) * lda; const float* ag = ap + (3 * H + r) * lda;
      const float* tr = tp + r * ldt; const float* cpr = cp + r * ldcp;
      const float* dhr = dhp + r * ldh; const float* dcr = dcp + r * ldc;
      float* di = dg + r * ldg; float* df = dg + (H + r) * ldg; float* dout = dg + (2 * H + r) * ldg;
      float* dcand = dg + (3 * H + r) * ldg; float* dcprev = dcpr + r * ldo;
      #pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        float i = ai[j], f = af[j], o = ao[j], cand = ag[j], t = tr[j], dhv = dhr[j];
        float dcv = dcr[j] + dhv * o * (1.0f - t * t);
        dout[j] = dhv * t * o * (1.0f - o);
        di[j] = dcv * cand * i * (1.0f - i);
        df[j] = dcv * cpr[j] * f * (1.0f - f);
        dcand[j] = dcv * i * (1.0f - cand * cand);
        dcprev[j] = dcv * f;
      }
    }
  });
}
"""

# -fopenmp: at::parallel_for is inlined from ATen's headers as an OpenMP region; the extension's libgomp.so.1
# resolves to the one torch already loaded (same soname), so both share one thread pool.
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-mprefer-vector-width=512", "-fopenmp"]
_lock = threading.Lock()
_state: dict = {}
_enabled = [True]


def set_enabled(flag: bool) -> bool:
    """Use (True) or bypass (False) the kernels from now on in this process; returns the previous setting.
    For comparisons and tests; ``L2L_FUSED=0`` in the environment switches them off before any compile."""
    previous, _enabled[0] = _enabled[0], bool(flag)
    return previous


def _cpu_tag() -> str:
    try:
        model = next(line for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return hashlib.sha1((model + torch.__version__ + " ".join(_FLAGS)).encode()).hexdigest()[:10]


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
                    from torch.utils.cpp_extension import load_inline

                    module = load_inline(f"l2l_fused_{_cpu_tag()}", cpp_sources=_SOURCE,
                                         functions=["cell_forward", "cell_backward"], extra_cflags=_FLAGS,
                                         extra_ldflags=["-fopenmp"],
                                         verbose=False)
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


def cell_step(gates: torch.Tensor, c_prev: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor) -> None:
    """No-grad cell step: ``c_out`` <- f*c_prev + i*g, ``h_out`` <- o*tanh(c_out) from pre-activations
    ``gates``; ``c_out`` may be ``c_prev`` (in place). Outputs need unit stride along coordinates."""
    empty = gates.new_empty(0, 0)
    kernels().cell_forward(_rowwise(gates), _rowwise(c_prev), c_out, h_out, empty, empty, False)


class FusedCell(torch.autograd.Function):
    """(gate pre-activations (4H, N), c_prev (H, N)) -> (h, c), with a fused backward pass."""

    @staticmethod
    def forward(ctx, gates, c_prev):
        gates, c_prev = _rowwise(gates), _rowwise(c_prev)
        hidden, n = c_prev.shape
        c, h, tc = (c_prev.new_empty(hidden, n) for _ in range(3))
        acts = torch.empty_like(gates)
        kernels().cell_forward(gates, c_prev, c, h, acts, tc, True)
        ctx.save_for_backward(acts, tc, c_prev)
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        acts, tc, c_prev = ctx.saved_tensors
        d_gates, dc_prev = torch.empty_like(acts), torch.empty_like(c_prev)
        kernels().cell_backward(acts, tc, c_prev, _rowwise(dh), _rowwise(dc), d_gates, dc_prev)
        return d_gates, dc_prev
