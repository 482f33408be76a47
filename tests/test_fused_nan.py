"""NaN and inf in the gradient through the fused CPU kernels. They are compiled with -ffast-math but
-fno-finite-math-only (optimizers/fused.py), so NaN and inf keep their IEEE meaning there: a non-finite gradient gives
what the plain PyTorch path (the reference) gives, and reaches the numerical guards as it does there, evaluation's
(a task with a non-finite loss is flagged diverged) and meta-training's (a non-finite meta-gradient is not applied).

What the reference does: a NaN gradient makes its coordinate's update and LSTM state NaN, and nothing else (the LSTM
is coordinatewise). An infinite one saturates the first layer's gates (log|g| / p = inf times a weight: every gate
pre-activation is +-inf), so its update and state stay finite, while the meta-gradient of the first layer's weight
on that input (d gate x inf) is not finite.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import pytest
import torch

from l2l_core.checks import NonFiniteWarning
from l2l_core.evaluation.evaluate import evaluate
from l2l_core.optimizers import fused
from l2l_core.optimizers.lstm import InferenceRunner, LSTMConfig, LSTMOptimizer
from l2l_core.tasks.families import QuadraticFamily, QuadraticTasks, TaskBatch

from error_bounds import FN_ERR, Bounded, LSTMBound, add, cat, matmul, mul, scale, sigmoid, tanh

pytestmark = pytest.mark.skipif(fused.kernels() is None,
                                reason=f"fused kernels unavailable: {fused.unavailable_reason()}")

N = 300  # coordinates: several of the kernels' 64-coordinate blocks and a partial one
NAN, POS_INF, NEG_INF = [3, 64, 130, 299], [5, 63, 200], [6, 127, 250]  # at block edges and inside


@contextlib.contextmanager
def kernels(enabled: bool):
    previous = fused.set_enabled(enabled)
    try:
        yield
    finally:
        fused.set_enabled(previous)


def gradient(nan=True, inf=True, seed=0) -> torch.Tensor:
    """Gradients over nine orders of magnitude (as in test_fused.py), with NaN and/or +-inf entries."""
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(N, generator=g) * 10.0 ** torch.randint(-8, 1, (N,), generator=g)
    if nan:
        grad[NAN] = float("nan")
    if inf:
        grad[POS_INF], grad[NEG_INF] = float("inf"), -float("inf")
    return grad


def bounded_step(lstm: LSTMOptimizer, features: torch.Tensor, state: list[Bounded]):
    """``error_bounds.LSTMBound.step`` (exact values and float32 error bounds) for input features that may hold inf
    (an infinite gradient's log|g| / p): in such a column every first-layer gate pre-activation is +-inf (a nonzero
    weight times inf plus finite terms), so the exact gates are sigmoid(+-inf) in {0, 1} and tanh(+-inf) = +-1, and
    float32's within FN_ERR of them (the kernels clamp the argument where tanh rounds to +-1, and test_fused.py checks
    FN_ERR out to |x| = 30, past the clamp; PyTorch's are exact there). From the cell on all is finite and bounded as
    usual. Columns with a NaN feature get placeholder values: they are not checked. Returns (update, new state, an
    LSTMBound whose tape holds this step, for ``backward``)."""
    H = lstm.config.hidden_size
    bound = LSTMBound(lstm)
    saturated = features.isinf().any(0)
    z = cat([Bounded.exact(torch.where(features.isfinite(), features, 0.0)), state[0],
             Bounded.exact(torch.ones(1, features.shape[1]))])
    a = matmul(bound.A[0], z)
    pre = bound.A[0].v[:, :1] * features[:1].double()  # +-inf in the saturated columns
    gates = []
    for k, (bounded, exact) in enumerate(((sigmoid, torch.sigmoid),) * 3 + ((tanh, torch.tanh),)):
        gate = bounded(a[k * H:(k + 1) * H])
        gate.v[:, saturated] = exact(pre[k * H:(k + 1) * H, saturated])
        gate.e[:, saturated] = FN_ERR
        gates.append(gate)
    i, f, o, g = gates
    c = add(mul(f, state[1]), mul(i, g))
    t = tanh(c)
    h = mul(o, t)
    rest = LSTMBound(lstm)  # the layers above the first (and the output layer), as usual
    rest.A = rest.A[1:]
    update, rest_state = rest.step(h, state[2:])
    caches, z_out = rest.tape[-1]
    bound.tape.append(([(bound.A[0], z, state[1], i, f, o, g, t), *caches], z_out))
    return update, [h, c, *rest_state], bound


def assert_same_as_the_reference(grad, fast, plain, bound, name):
    """NaN exactly where the reference has it (its gradient coordinate's column); everything else finite on both
    paths and within the float32 bound of the exact value."""
    nan = grad.isnan().expand_as(plain)
    assert torch.equal(plain.isnan(), nan), f"{name}: the reference's NaN is not its gradient's coordinate"
    assert torch.equal(fast.isnan(), plain.isnan()), f"{name}: NaN at other places through the kernels"
    assert fast[~nan].isfinite().all() and plain[~nan].isfinite().all(), f"{name}: inf"
    keep = ~grad.isnan()
    index = (keep,) if plain.dim() == 1 else (slice(None), keep)
    bound[index].check(fast[index], plain[index], name=name)


@pytest.mark.parametrize("path", ["forward without tape", "forward with tape", "inference runner"])
def test_nan_and_inf_gradients_give_the_reference_outputs(path):
    lstm = LSTMOptimizer(LSTMConfig(), seed=2)
    grad = gradient()
    if path == "inference runner":  # evaluation's loop: from the state one finite step left
        with kernels(False):
            plain_runner = InferenceRunner(lstm, N)
            plain_runner.step(gradient(nan=False, inf=False, seed=1))
        fast_runner = InferenceRunner(lstm, N)
        fast_runner.buffer.copy_(plain_runner.buffer)
        for mine, theirs in zip(fast_runner.cells, plain_runner.cells):
            mine.copy_(theirs)
        start = plain_runner.state()
        with kernels(True):
            fast = fast_runner.step(grad), fast_runner.state()
        with kernels(False):
            plain = plain_runner.step(grad), plain_runner.state()
    else:
        g = torch.Generator().manual_seed(3)
        start = tuple(torch.randn(20, N, generator=g) * 0.5 for _ in range(4))
        with torch.set_grad_enabled(path == "forward with tape"):
            with kernels(True):
                fast = lstm(grad, start)
            with kernels(False):
                plain = lstm(grad, start)
    update, state, _ = bounded_step(lstm, lstm.features(grad), [Bounded.exact(s) for s in start])
    assert_same_as_the_reference(grad, fast[0].detach(), plain[0].detach(), update, "update")
    for k, (x, y, ref) in enumerate(zip(fast[1], plain[1], state)):
        assert_same_as_the_reference(grad, x.detach(), y.detach(), ref, f"state {k}")


@pytest.mark.parametrize("poison", ["nan", "inf"])
def test_a_non_finite_gradient_gives_the_reference_meta_gradient(poison):
    """The meta-gradient through the kernels' backward is non-finite exactly where the reference's is (what
    meta-training's guard reads: ``torch.isfinite(p.grad)`` per LSTM weight), finite values within the float32 bound.
    NaN and inf may differ among the non-finite entries: the reference's saturated sigmoid' is exactly 0 (0 x inf =
    NaN), the kernels' a few ulp (x inf = inf); both are refused alike."""
    lstm = LSTMOptimizer(LSTMConfig(), seed=4)
    grad = gradient(nan=poison == "nan", inf=poison == "inf")
    g = torch.Generator().manual_seed(5)
    start = tuple(torch.randn(20, N, generator=g) * 0.5 for _ in range(4))

    def meta_gradient(enabled):
        lstm.zero_grad()
        with kernels(enabled):
            update, state = lstm(grad, start)
        ((update ** 2).sum() + 1e-3 * sum((s ** 2).sum() for s in state)).backward()
        return {name: p.grad.clone() for name, p in lstm.named_parameters()}

    fast, plain = meta_gradient(True), meta_gradient(False)
    for name in plain:
        assert torch.equal(fast[name].isfinite(), plain[name].isfinite()), name
    assert not all(p.isfinite().all() for p in plain.values())  # the guard has something to refuse
    if poison == "inf":  # NaN poisons every weight's sum: nothing finite is left to compare
        update, state, bound = bounded_step(lstm, lstm.features(grad), [Bounded.exact(s) for s in start])
        for name, ref in bound.backward([scale(update, 2.0)], [[scale(s, 2e-3) for s in state]]).items():
            finite = plain[name].isfinite()
            assert finite.sum() > 0.9 * finite.numel(), name
            ref[finite].check(fast[name][finite], plain[name][finite], name=name)


class _Poison(torch.autograd.Function):
    """Adds nothing to the loss and ``values`` to its gradient wrt theta."""

    @staticmethod
    def forward(ctx, theta, values):
        ctx.save_for_backward(values)
        return theta.new_zeros(theta.shape[0])

    @staticmethod
    def backward(ctx, d_loss):
        (values,) = ctx.saved_tensors
        return d_loss.unsqueeze(1) * values, None


@dataclass
class PoisonedTasks(TaskBatch):
    """Quadratic tasks whose gradient at step t gets ``poison[t]`` (n_tasks, dim) added, the loss unchanged."""

    base: QuadraticTasks
    poison: dict

    @property
    def n_tasks(self) -> int:
        return self.base.n_tasks

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def task_seeds(self) -> list[int]:
        return self.base.task_seeds

    def initial_params(self) -> torch.Tensor:
        return self.base.initial_params()

    def loss(self, theta, step):
        loss = self.base.loss(theta, step)
        return loss + _Poison.apply(theta, self.poison[step]) if step in self.poison else loss

    def subset(self, start, stop):
        return PoisonedTasks(self.base.subset(start, stop), {t: p[start:stop] for t, p in self.poison.items()})


@dataclass(frozen=True)
class PoisonedFamily:
    tasks: PoisonedTasks

    def sample(self, n_tasks, seed, split="test"):
        return self.tasks


def test_non_finite_gradients_reach_evaluations_guard_as_on_the_reference_path():
    """evaluate() flags the same tasks diverged with and without the kernels: a NaN gradient (task 1) diverges its
    task, an infinite one (tasks 2 and 3) gives a finite update on both paths, and the clean task 0 runs on. Losses are
    NaN at the same places; the finite ones agree to float32 rounding grown over a few steps (1e-4 relative: the
    per-step bound is checked above and in test_fused.py)."""
    base = QuadraticFamily().sample(4, 0, "test")
    poison = {t: torch.zeros(4, base.dim) for t in (1, 2)}
    poison[1][1, 3], poison[1][2, 5], poison[2][3, 0] = float("nan"), float("inf"), -float("inf")
    family = PoisonedFamily(PoisonedTasks(base, poison))
    lstm = LSTMOptimizer(LSTMConfig(), seed=1)
    frames = {}
    for enabled in (True, False):
        with kernels(enabled), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frames[enabled] = evaluate(lstm, family, n_tasks=4, steps=6)
        assert [w.category for w in caught] == [NonFiniteWarning], caught
    fast, plain = frames[True], frames[False]
    assert plain.groupby("task")["diverged"].first().tolist() == [False, True, False, False]
    assert fast["diverged"].equals(plain["diverged"])
    assert fast["loss"].isna().equals(plain["loss"].isna())
    assert plain["loss"].isna().sum() == 5  # task 1 from step 2 (after the NaN update) to step 6
    finite = plain["loss"].notna()
    # float32 on both paths: kernels and torch differ by a few ulps per op (FMA contraction, AVX2 or AVX-512 alike),
    # compounded over <= 7 optimizee steps; 1e-4 relative is ~1,700 ulps of 2^-24, far above that drift
    torch.testing.assert_close(torch.tensor(fast["loss"][finite].to_numpy()),
                               torch.tensor(plain["loss"][finite].to_numpy()), rtol=1e-4, atol=0.0)
