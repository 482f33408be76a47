"""The fused LSTM-layer kernels give the PyTorch path's updates, states and meta-gradients (to float rounding)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from l2l_core.optimizers import fused
from l2l_core.optimizers.lstm import InferenceRunner, LSTMConfig, LSTMOptimizer
from l2l_core.training.meta_train import train_trajectory
from l2l_core.tasks.families import QuadraticFamily

from error_bounds import (FN_ERR, U, Bounded, LSTMBound, add, layer_backward, layer_forward, matmul, neg,
                          packed, scale)

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


# The kernels and the PyTorch path sum in other orders and approximate sigmoid and tanh differently, with results
# that depend on the CPU (AVX-512 or AVX2, FMA or not). So every comparison below checks both against the exact
# (float64) mathematics for the same float32 inputs, within the float32 error bound derived in error_bounds.py
# from the computation and the tensors' magnitudes. Steps are compared from a common state: over many steps the
# worst-case bound grows geometrically (the LSTM's |Jacobian| exceeds 1) and would check nothing.
@needs_kernels
def test_fused_forward_without_tape_matches_the_pytorch_path():
    lstm = LSTMOptimizer(LSTMConfig(), seed=2)
    bound = LSTMBound(lstm)
    gen = torch.Generator().manual_seed(0)
    state = tuple(torch.randn(20, 2000, generator=gen) * 0.5 for _ in range(4))
    with torch.no_grad():
        for grad in _grads():
            a, state_a = lstm(grad, state)
            with plain_path():
                b, state_b = lstm(grad, state)
            update, new = bound.step(Bounded.exact(lstm.features(grad)), [Bounded.exact(s) for s in state])
            update.check(a, b, name="update")
            for k, (ref, x, y) in enumerate(zip(new, state_a, state_b)):
                ref.check(x, y, name=f"state {k}")
            state = state_b


@needs_kernels
def test_fused_runner_matches_the_pytorch_runner():
    lstm = LSTMOptimizer(LSTMConfig(), seed=3)
    bound = LSTMBound(lstm)
    fast = InferenceRunner(lstm, 2000)
    with plain_path():
        slow = InferenceRunner(lstm, 2000)
    for grad in _grads(seed=1):
        fast.buffer.copy_(slow.buffer)  # both runners step from the same state
        for mine, theirs in zip(fast.cells, slow.cells):
            mine.copy_(theirs)
        start = slow.state()
        a = fast.step(grad)
        with plain_path():
            b = slow.step(grad)
        update, new = bound.step(Bounded.exact(lstm.features(grad)), [Bounded.exact(s) for s in start])
        update.check(a, b, name="update")
        for k, (ref, x, y) in enumerate(zip(new, fast.state(), slow.state())):
            ref.check(x, y, name=f"state {k}")


@needs_kernels
def test_fused_backward_gives_the_autograd_meta_gradient():
    lstm = LSTMOptimizer(LSTMConfig(), seed=4)
    gen = torch.Generator().manual_seed(1)
    start = tuple(torch.randn(20, 500, generator=gen) * 0.5 for _ in range(4))
    grads = _grads(500, seed=2)[:3]  # the worst-case bound grows with each step: three keep it < 0.5% of the gradients

    def meta_gradient():
        lstm.zero_grad()
        state, total = start, 0.0
        for grad in grads:
            update, state = lstm(grad, state)
            total = total + (update ** 2).sum() + 1e-3 * sum((s ** 2).sum() for s in state)
        total.backward()
        return {name: p.grad.clone() for name, p in lstm.named_parameters()}

    fast = meta_gradient()
    with plain_path():
        slow = meta_gradient()
    bound = LSTMBound(lstm)
    state, d_updates, d_states = [Bounded.exact(s) for s in start], [], []
    for grad in grads:
        update, state = bound.step(Bounded.exact(lstm.features(grad)), state)
        d_updates.append(scale(update, 2.0))  # d/du sum(u^2)
        d_states.append([scale(s, 2e-3) for s in state])  # d/ds 1e-3 sum(s^2)
    for name, ref in bound.backward(d_updates, d_states).items():
        ref.check(fast[name], slow[name], name=name)


@needs_kernels
def test_meta_training_with_and_without_kernels_takes_the_same_meta_gradient():
    """train_trajectory's meta-gradient (one unroll of three steps on quadratics: the update feeds theta, theta
    the next gradient) with and without the kernels, each within the float32 bound of the exact one."""
    fam = QuadraticFamily()
    tasks = fam.sample(4, 0, "meta_train")
    steps, n = 3, 4
    meta_grads = {}
    for enabled in (True, False):
        previous = fused.set_enabled(enabled)
        try:
            lstm = LSTMOptimizer(fam.default_lstm, seed=0)
            # lr=0: the weights stay put and each p.grad keeps the unroll's meta-gradient
            train_trajectory(lstm, torch.optim.SGD(lstm.parameters(), lr=0.0), tasks, steps=steps, unroll=steps)
        finally:
            fused.set_enabled(previous)
        meta_grads[enabled] = {name: p.grad for name, p in lstm.named_parameters()}
    # the same unroll with bounds: theta_{t+1} = theta_t + u_t, r = W theta - y, the LSTM's next input 2 W^T r
    bound = LSTMBound(lstm)
    W, Wt, y = Bounded.exact(tasks.W), Bounded.exact(tasks.W.transpose(1, 2)), Bounded.exact(tasks.y.unsqueeze(2))
    theta0 = tasks.initial_params().requires_grad_(True)
    (grad0,) = torch.autograd.grad(tasks.loss(theta0, 0).sum(), theta0)  # train_trajectory's own ops: same bits
    features, theta = Bounded.exact(grad0.reshape(1, -1)), Bounded.exact(theta0.detach().unsqueeze(2))
    state, residuals = [Bounded.exact(s) for s in lstm.initial_state(theta0.numel())], []
    for _ in range(steps):
        update, state = bound.step(features, state)
        theta = add(theta, update.map(lambda u: u.view(theta.v.shape)))
        residuals.append(add(matmul(W, theta), neg(y)))
        features = matmul(Wt, scale(residuals[-1], 2.0)).map(lambda g: g.reshape(1, -1))
    d_updates, d_theta = [None] * steps, None
    for t in reversed(range(steps)):  # meta-loss: sum over the unroll of mean_i ||W theta_{t+1} - y||^2
        from_loss = matmul(Wt, scale(residuals[t], 2.0 / n))
        d_theta = from_loss if d_theta is None else add(d_theta, from_loss)
        d_updates[t] = d_theta.map(lambda g: g.reshape(-1))
    for name, ref in bound.backward(d_updates, None).items():
        ref.check(meta_grads[True][name], meta_grads[False][name], name=name)


@needs_kernels
def test_activations_are_within_the_error_the_bounds_assume():
    """error_bounds assumes float32 sigmoid and tanh within FN_ERR of the exact values (absolute): checked on this
    CPU's build of the kernels, through one layer whose cell is sigmoid(100) * tanh(x) or sigmoid(x) * tanh(100)
    (two evaluations and a product: within 2 FN_ERR + u), and for PyTorch's."""
    x = torch.linspace(-30, 30, 200_001, dtype=torch.float64).float()
    zeros = torch.zeros(1, x.numel())
    for row, bias, f in ((3, [100.0, 0.0, 100.0, 0.0], torch.tanh), (0, [0.0, 0.0, 100.0, 100.0], torch.sigmoid)):
        weight = torch.zeros(4, 2)
        weight[row, 0] = 1.0
        _, c = fused.FusedLayer.apply(x[None], zeros, zeros, weight, torch.tensor(bias))
        assert (c[0].double() - f(x.double())).abs().max().item() <= 2 * FN_ERR + U, f
        assert (f(x).double() - f(x.double())).abs().max().item() <= FN_ERR, f


def test_switched_off_kernels_say_why_and_the_pytorch_path_runs():
    code = ("from l2l_core.optimizers import fused; import torch; from l2l_core.optimizers.lstm import LSTMOptimizer; "
            "m = LSTMOptimizer(); u, _ = m(torch.ones(5), m.initial_state(5)); "
            "print(fused.kernels() is None, fused.unavailable_reason())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "L2L_FUSED": "0"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "True switched off by L2L_FUSED=0"


def test_each_source_and_flag_set_builds_in_a_folder_of_its_own(monkeypatch, tmp_path):
    """Two versions of the kernels (or two flag sets) in use at once must not share, and keep rebuilding, one
    build folder: a process could load the other version's library."""
    tag = fused.build_tag()
    assert fused.build_tag() == tag  # stable: a second process finds the same build
    edited = tmp_path / "fused_kernels.cpp"
    edited.write_text(fused._SOURCE_FILE.read_text() + "\n// edited\n")
    monkeypatch.setattr(fused, "_SOURCE_FILE", edited)
    assert fused.build_tag() != tag
    monkeypatch.undo()
    monkeypatch.setenv("L2L_KERNEL_CFLAGS", os.environ.get("L2L_KERNEL_CFLAGS", "") + " -ffp-contract=off")
    assert fused.build_tag() != tag
    monkeypatch.undo()
    # the same torch reached through a link is built with other include paths: a folder of its own, or the two
    # would rebuild in turn (a run in a clone with a linked venv and the tests in the original did, this session)
    link = tmp_path / "linked-torch"
    link.symlink_to(Path(torch.__file__).parent, target_is_directory=True)
    monkeypatch.setattr(torch, "__file__", str(link / "__init__.py"))
    assert fused.build_tag() != tag


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
    """Values and all five gradients of the kernels and of PyTorch float32 lie within the float32 error bound
    (error_bounds.py) of float64 autograd, with gate pre-activations up to about +-40 (sigmoid's and tanh's
    saturated tails) and n not a multiple of the kernels' 64-coordinate block. Inputs are float32 numbers, so
    both float32 computations start from exactly the float64 reference's inputs."""
    gen = torch.Generator().manual_seed(inputs + n)
    args64 = [torch.randn(inputs, n, generator=gen, dtype=torch.float64) * 3,
              torch.randn(hidden, n, generator=gen, dtype=torch.float64),
              torch.randn(hidden, n, generator=gen, dtype=torch.float64) * 2,
              torch.randn(4 * hidden, inputs + hidden, generator=gen, dtype=torch.float64) * 1.5,
              torch.randn(4 * hidden, generator=gen, dtype=torch.float64)]
    args64 = [a.float().double() for a in args64]
    dh, dc = (torch.randn(hidden, n, generator=gen).double() for _ in range(2))

    def values_and_grads(layer, dtype):
        args = [a.to(dtype).requires_grad_(True) for a in args64]
        out = layer(*args)
        grads = torch.autograd.grad(sum((o * g.to(dtype)).sum() for o, g in zip(out, (dh, dc))), args)
        return [t.detach().double() for t in (*out, *grads)]

    exact = values_and_grads(_layer_reference, torch.float64)
    with plain_path():
        pytorch = values_and_grads(_layer_reference, torch.float32)
    kernel = values_and_grads(fused.FusedLayer.apply, torch.float32)
    x, h, c, weight, bias = (Bounded.exact(a) for a in args64)
    h_new, c_new, cache = layer_forward(packed(args64[3], args64[4]), x, h, c)
    dz, dc_prev, dA = layer_backward(cache, Bounded.exact(dh), Bounded.exact(dc))
    bounds = [h_new, c_new, dz[:inputs], dz[inputs:], dc_prev, dA[:, :-1], dA[:, -1]]
    for name, ref, k, p, e in zip(["h", "c", "dx", "dh", "dc", "dW", "db"], bounds, kernel, pytorch, exact):
        torch.testing.assert_close(ref.v, e, rtol=1e-10, atol=1e-10 * e.abs().max().item())  # the bound's own values
        ref.check(k, p, name=name)


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
