"""The fused LSTM-layer kernels give the PyTorch path's updates, states and meta-gradients (to float rounding)."""
import os
import subprocess
import sys

import pytest
import torch

from l2l_core import fused
from l2l_core.lstm_optimizer import InferenceRunner, LSTMConfig, LSTMOptimizer
from l2l_core.meta_train import train_trajectory
from l2l_core.tasks import QuadraticFamily

needs_kernels = pytest.mark.skipif(fused.kernels() is None, reason=f"fused kernels unavailable: "
                                   f"{fused.unavailable_reason()}")


class plain_path:
    """Run a block with the kernels bypassed."""

    def __enter__(self):
        self.previous = fused.set_enabled(False)

    def __exit__(self, *exc):
        fused.set_enabled(self.previous)


def _grads(n=2000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen) * 10.0 ** torch.randint(-8, 1, (n,), generator=gen) for _ in range(8)]


@needs_kernels
def test_fused_forward_without_tape_matches_the_pytorch_path():
    lstm = LSTMOptimizer(LSTMConfig(), seed=2)
    state_a = state_b = tuple(torch.randn(20, 2000) * 0.5 for _ in range(4))
    with torch.no_grad():
        for grad in _grads():
            a, state_a = lstm(grad, state_a)
            with plain_path():
                b, state_b = lstm(grad, state_b)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for x, y in zip(state_a, state_b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@needs_kernels
def test_fused_runner_matches_the_pytorch_runner():
    lstm = LSTMOptimizer(LSTMConfig(), seed=3)
    fast = InferenceRunner(lstm, 2000)
    with plain_path():
        slow = InferenceRunner(lstm, 2000)
    for grad in _grads(seed=1):
        a = fast.step(grad)
        with plain_path():
            b = slow.step(grad)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@needs_kernels
def test_fused_backward_gives_the_autograd_meta_gradient():
    lstm = LSTMOptimizer(LSTMConfig(), seed=4)
    start = tuple(torch.randn(20, 500) * 0.5 for _ in range(4))

    def meta_gradient():
        lstm.zero_grad()
        state, total = start, 0.0
        for grad in _grads(500, seed=2):
            update, state = lstm(grad, state)
            total = total + (update ** 2).sum() + 1e-3 * sum((s ** 2).sum() for s in state)
        total.backward()
        return [p.grad.clone() for p in lstm.parameters()]

    fast = meta_gradient()
    with plain_path():
        slow = meta_gradient()
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


@needs_kernels
def test_meta_training_with_and_without_kernels_ends_at_the_same_weights():
    fam = QuadraticFamily()
    tasks = fam.sample(4, 0, "meta_train")
    weights = []
    for enabled in (True, False):
        previous = fused.set_enabled(enabled)
        lstm = LSTMOptimizer(fam.default_lstm, seed=0)
        opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
        for _ in range(3):
            train_trajectory(lstm, opt, tasks, steps=40, unroll=20)
        fused.set_enabled(previous)
        weights.append(torch.cat([p.detach().flatten() for p in lstm.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_switched_off_kernels_say_why_and_the_pytorch_path_runs():
    code = ("from l2l_core import fused; import torch; from l2l_core.lstm_optimizer import LSTMOptimizer; "
            "m = LSTMOptimizer(); u, _ = m(torch.ones(5), m.initial_state(5)); "
            "print(fused.kernels() is None, fused.unavailable_reason())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "L2L_FUSED": "0"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "True switched off by L2L_FUSED=0"


def _layer_reference(x, h, c, weight, bias):
    """One LSTM layer in float64 PyTorch ops (gates: input, forget, output, candidate)."""
    hidden = c.shape[0]
    gates = weight @ torch.cat((x, h)) + bias[:, None]
    i, f, o = gates[: 3 * hidden].sigmoid().split(hidden)
    c_new = f * c + i * gates[3 * hidden:].tanh()
    return o * c_new.tanh(), c_new


@needs_kernels
@pytest.mark.parametrize("inputs, hidden, n", [(2, 20, 15910), (20, 20, 1000), (1, 7, 37)])
def test_fused_layer_is_as_accurate_as_pytorch_float32(inputs, hidden, n):
    """Values and all five gradients, measured against float64 autograd: the kernels' largest error is at
    most a small multiple of PyTorch float32's own, with gate pre-activations up to about +-40 (sigmoid's
    and tanh's saturated tails) and n not a multiple of the kernels' 64-coordinate block."""
    gen = torch.Generator().manual_seed(inputs + n)
    args64 = [torch.randn(inputs, n, generator=gen, dtype=torch.float64) * 3,
              torch.randn(hidden, n, generator=gen, dtype=torch.float64),
              torch.randn(hidden, n, generator=gen, dtype=torch.float64) * 2,
              torch.randn(4 * hidden, inputs + hidden, generator=gen, dtype=torch.float64) * 1.5,
              torch.randn(4 * hidden, generator=gen, dtype=torch.float64)]
    dh, dc = (torch.randn(hidden, n, generator=gen, dtype=torch.float64) for _ in range(2))

    def values_and_grads(layer, dtype):
        args = [a.to(dtype).requires_grad_(True) for a in args64]
        out = layer(*args)
        grads = torch.autograd.grad(sum((o * g.to(dtype)).sum() for o, g in zip(out, (dh, dc))), args)
        return [t.detach().double() for t in (*out, *grads)]

    exact = values_and_grads(_layer_reference, torch.float64)
    with plain_path():
        pytorch = values_and_grads(_layer_reference, torch.float32)
    kernel = values_and_grads(fused.FusedLayer.apply, torch.float32)
    for name, k, p, e in zip(["h", "c", "dx", "dh", "dc", "dW", "db"], kernel, pytorch, exact):
        scale = e.abs().max().item()
        kernel_error, pytorch_error = (k - e).abs().max().item(), (p - e).abs().max().item()
        assert kernel_error <= 4 * pytorch_error + 1e-6 * scale, (name, kernel_error, pytorch_error, scale)


@needs_kernels
def test_fused_layer_gradients_are_bitwise_reproducible():
    """dW is summed over coordinates in a fixed order: the same inputs give the same bits."""
    gen = torch.Generator().manual_seed(0)
    x, h, c = (torch.randn(20, 20000, generator=gen) for _ in range(3))
    weight = torch.randn(80, 40, generator=gen).requires_grad_(True)
    bias = torch.randn(80, generator=gen).requires_grad_(True)

    def grads():
        h_new, c_new = fused.FusedLayer.apply(x, h, c, weight, bias)
        return torch.autograd.grad(h_new.sum() + (c_new ** 2).sum(), (weight, bias))

    first, second = grads(), grads()
    for a, b in zip(first, second):
        assert torch.equal(a, b)
