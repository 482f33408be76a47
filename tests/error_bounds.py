"""Float32 rounding-error bounds for tests that compare float32 computations which exist only in float32 (the
fused kernels), derived from the computation and from the actual tensors' magnitudes, not tuned on one CPU.

Model (u = 2**-24, float32's unit roundoff; Higham, "Accuracy and Stability of Numerical Algorithms", ch. 2-3):
* one +, - or * rounds once: |fl(a op b) - a op b| <= u |a op b|;
* a sum of K terms, in ANY order, with or without FMA, at any SIMD width (AVX-512, AVX2, SSE):
  |error| <= gamma(K) * sum |terms|, gamma(K) = K u / (1 - K u) (Higham eq. 3.5; K - 1 would do, K is simpler);
* sigmoid and tanh (values in [-1, 1]) have absolute error <= FN_ERR = 32 u: the kernels' rational
  approximation (a couple of ulp) evaluated by Horner's rule (degree 13 over 6: under gamma(14) + gamma(8) + 2u
  even without FMA); PyTorch's are within 2 ulp. ``test_fused.py`` checks this on the CPU it runs on.
  An input error e moves f(a) by at most e * max |f'| on [a - e, a + e] <= e * (f'(a) + e max|f''|), with
  max|sigmoid''| < 0.1 and max|tanh''| < 0.77.

Each quantity is a ``Bounded``: ``v`` the exact (float64, ~1e-16 relative) value of the mathematics for the
float32 inputs, ``e`` a bound on |float32 result - v| elementwise, propagated through every operation (products
keep their higher-order terms, so no linearisation is hidden). Two float32 implementations of the same
mathematics (kernels vs PyTorch) each lie within ``e`` of ``v``, so they differ by at most 2 e, on any CPU.
The bounds are worst cases (all rounding errors aligned, |W| for W): typically 10-100x above the actual error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

U = 2.0 ** -24
FN_ERR = 32 * U


def assert_close64(actual, expected, rtol: float = 1e-10) -> None:
    """Two float64 results of computations equal in exact arithmetic (other shapes, orders or code paths).

    float64 rounding is ~1e-16 relative per operation; rtol 1e-10 leaves a factor 1e6 for its growth over the steps
    (1e-9 where Adam's or RMSprop's normalisation amplifies it). A near-zero entry's rounding error comes from the
    operands' scale, not its own, so the absolute tolerance is rtol times the largest |expected|. Any CPU: no
    float32 step is involved.
    """
    actual, expected = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.array(x)) for x in (actual, expected))  # a copy: read-only arrays warn
    assert actual.dtype == expected.dtype == torch.float64, (actual.dtype, expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


@dataclass
class Bounded:
    v: torch.Tensor  # float64 value
    e: torch.Tensor  # float64 bound on |float32 result - v|

    @staticmethod
    def exact(t: torch.Tensor) -> "Bounded":
        """A float32 tensor both computations start from (its float64 copy is exact)."""
        v = t.detach().double()
        return Bounded(v, torch.zeros_like(v))

    def mag(self) -> torch.Tensor:  # bounds |float32 result|
        return self.v.abs() + self.e

    def __getitem__(self, index) -> "Bounded":
        return Bounded(self.v[index], self.e[index])

    def map(self, fn) -> "Bounded":
        """A copy-like operation (views, column copies, zero fills): applied to values and bounds alike."""
        return Bounded(fn(self.v), fn(self.e))

    def check(self, *results: torch.Tensor, name: str = "") -> float:
        """Assert that each float32 result lies within the bound; returns the largest error / bound ratio."""
        worst = 0.0
        for r in results:
            err = (r.detach().double() - self.v).abs()
            bad = err > self.e
            assert not bad.any(), (f"{name}: {int(bad.sum())} of {err.numel()} entries outside the float32 bound; "
                                   f"worst error {err[bad].max().item():.3g} vs bound {self.e[bad].min().item():.3g}")
            worst = max(worst, (err / self.e.clamp_min(1e-300)).max().item())
        return worst


def cat(parts, dim=0) -> Bounded:
    return Bounded(torch.cat([p.v for p in parts], dim), torch.cat([p.e for p in parts], dim))


def add(*terms: Bounded) -> Bounded:
    """Sum of the terms (each possibly negated beforehand with ``neg``), in any order."""
    v = sum(t.v for t in terms)
    return Bounded(v, sum(t.e for t in terms) + gamma(len(terms) - 1) * sum(t.mag() for t in terms))


def neg(a: Bounded) -> Bounded:
    return Bounded(-a.v, a.e)


def one_minus(a: Bounded) -> Bounded:
    return add(Bounded.exact(torch.ones_like(a.v)), neg(a))


def mul(*factors: Bounded) -> Bounded:
    """Product of the factors, in any order: |prod(a + da) - prod(a)| <= prod(|a| + e) - prod(|a|)."""
    v, exact_mag, mag = factors[0].v, factors[0].v.abs(), factors[0].mag()
    for f in factors[1:]:
        v, exact_mag, mag = v * f.v, exact_mag * f.v.abs(), mag * f.mag()
    return Bounded(v, (mag - exact_mag) + gamma(len(factors) - 1) * mag)


def scale(a: Bounded, c: float) -> Bounded:
    """c * a with a Python constant c (rounded to float32 first, then the product rounds)."""
    return Bounded(c * a.v, abs(c) * a.e + gamma(2) * abs(c) * a.mag())


def matmul(a: Bounded, b: Bounded) -> Bounded:
    """a @ b: each entry a dot product of K = a.shape[-1] terms, summed in any order."""
    k = a.v.shape[-1]
    propagated = a.v.abs() @ b.e + a.e @ b.v.abs() + a.e @ b.e
    return Bounded(a.v @ b.v, propagated + gamma(k) * (a.mag() @ b.mag()))


def sigmoid(a: Bounded) -> Bounded:
    s = torch.sigmoid(a.v)
    slope = (s * (1 - s) + 0.1 * a.e).clamp(max=0.25)
    return Bounded(s, slope * a.e + FN_ERR)


def tanh(a: Bounded) -> Bounded:
    t = torch.tanh(a.v)
    slope = (1 - t * t + 0.77 * a.e).clamp(max=1.0)
    return Bounded(t, slope * a.e + FN_ERR)


def one_minus_square(a: Bounded) -> Bounded:
    return one_minus(mul(a, a))


# ----------------------------------------------------------------------------- one LSTM layer
def packed(weight: torch.Tensor, bias: torch.Tensor) -> Bounded:
    """[W | b]: the gates are one matmul with inputs [x; h; 1] (the bias a term of the sum), as in both paths."""
    return Bounded.exact(torch.cat((weight.detach(), bias.detach().unsqueeze(1)), dim=1))


def layer_forward(A: Bounded, x: Bounded, h: Bounded, c: Bounded):
    """One LSTM layer (gates input, forget, output, candidate): (h_new, c_new, cache for ``layer_backward``)."""
    H = c.v.shape[0]
    z = cat([x, h, Bounded.exact(torch.ones(1, c.v.shape[1]))])
    a = matmul(A, z)
    i, f, o, g = sigmoid(a[:H]), sigmoid(a[H:2 * H]), sigmoid(a[2 * H:3 * H]), tanh(a[3 * H:])
    c_new = add(mul(f, c), mul(i, g))
    t = tanh(c_new)
    return mul(o, t), c_new, (A, z, c, i, f, o, g, t)


def layer_backward(cache, dh: Bounded, dc: Bounded):
    """Backward of ``layer_forward`` (the kernels and autograd use the same local derivatives, in other orders):
    (d inputs [x; h] (I + H, N), dc_prev, d[W | b] summed over the N columns)."""
    A, z, c, i, f, o, g, t = cache
    dcv = add(dc, mul(dh, o, one_minus_square(t)))
    d_gates = cat([mul(dcv, g, i, one_minus(i)), mul(dcv, c, f, one_minus(f)), mul(dh, t, o, one_minus(o)),
                   mul(dcv, i, one_minus_square(g))])
    dz = matmul(Bounded(A.v.t(), A.e.t()), d_gates)
    dA = matmul(d_gates, Bounded(z.v.t(), z.e.t()))
    return dz[:-1], mul(dcv, f), dA


# ----------------------------------------------------------------------------- the learned optimizer
class LSTMBound:
    """``LSTMOptimizer`` step by step with error bounds: forward (``step``) and the meta-gradient (``backward``)."""

    def __init__(self, lstm):
        cfg = lstm.config
        self.hidden, self.scale_, self.layers = cfg.hidden_size, cfg.output_scale, cfg.num_layers
        self.A = [packed(w, b) for w, b in zip(lstm.gate_weights, lstm.gate_biases)]
        self.out = packed(lstm.output_weight, lstm.output_bias)  # (1, H + 1)
        self.tape = []

    def step(self, features: Bounded, state: list[Bounded]) -> tuple[Bounded, list[Bounded]]:
        """(update, new state) from the LSTM's input features (I, N) and state [h_1, c_1, h_2, c_2, ...].
        The output is (w h + b) * scale or, as in the runners, (w * scale) h + b * scale: the bound counts the
        scale's roundings against the sum of |terms|, so it covers both."""
        x, new, caches = features, [], []
        for layer, A in enumerate(self.A):
            h, c, cache = layer_forward(A, x, state[2 * layer], state[2 * layer + 1])
            new += [h, c]
            caches.append(cache)
            x = h
        z = cat([x, Bounded.exact(torch.ones(1, x.v.shape[1]))])
        out = matmul(self.out, z)
        terms = self.out.mag() @ z.mag()
        update = Bounded(self.scale_ * out.v[0], (self.scale_ * (out.e + gamma(3) * terms))[0])
        self.tape.append((caches, z))
        return update, new

    def backward(self, d_updates, d_states):
        """Meta-gradient bounds for the recorded steps: ``d_updates[t]`` and ``d_states[t]`` (list, or None) are
        the loss's direct gradients wrt step t's update and new state. Returns {parameter name: Bounded}."""
        H, n_steps = self.hidden, len(self.tape)
        grads = {}
        carry = None  # gradients wrt the state the next step read
        for t in reversed(range(n_steps)):
            caches, z = self.tape[t]
            d_out = scale(d_updates[t], self.scale_)[None]  # (1, N)
            self._accumulate(grads, "output", matmul(d_out, Bounded(z.v.t(), z.e.t())))
            d_top = matmul(Bounded(self.out.v[:, :H].t(), self.out.e[:, :H].t()), d_out)  # (H, N), K = 1
            direct = d_states[t] if d_states is not None and d_states[t] is not None else [None] * (2 * self.layers)
            from_above = d_top
            new_carry = [None] * (2 * self.layers)
            carried = carry or [None] * (2 * self.layers)
            for layer in reversed(range(self.layers)):
                dh = [d for d in (from_above, direct[2 * layer], carried[2 * layer]) if d is not None]
                dc = [d for d in (direct[2 * layer + 1], carried[2 * layer + 1]) if d is not None]
                dc = dc or [Bounded.exact(torch.zeros_like(from_above.v))]
                dz, dc_prev, dA = layer_backward(caches[layer], add(*dh), add(*dc))  # contributions summed in any order
                self._accumulate(grads, f"layer{layer}", dA)
                inputs = dz.v.shape[0] - H
                new_carry[2 * layer], new_carry[2 * layer + 1] = dz[inputs:], dc_prev
                from_above = dz[:inputs]
            carry = new_carry
        grads = {key: add(*parts) for key, parts in grads.items()}  # summed over the steps, in any order
        out = {}
        for layer in range(self.layers):
            dA = grads[f"layer{layer}"]
            out[f"gate_weights.{layer}"], out[f"gate_biases.{layer}"] = dA[:, :-1], dA[:, -1]
        out["output_weight"], out["output_bias"] = grads["output"][:, :-1], grads["output"][:, -1]
        return out

    @staticmethod
    def _accumulate(grads, key, value):
        """Autograd adds a parameter's gradient over the steps: the contributions are summed at the end."""
        grads.setdefault(key, []).append(value)
