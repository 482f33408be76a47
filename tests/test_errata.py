"""The thesis code's defects, reproduced through the library's hooks: each does exactly what the errata chapter says."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from l2l_core.tasks.data import to_inputs
from l2l_core.errata.defects import (SHARED_STATE, SharedStateRunner, as_tuned_by_sgd, shared_state_runs,
                                     thesis_loop_segments)
from l2l_core.optimizers import baselines
from l2l_core.optimizers import fused
from l2l_core.evaluation.tuning import tune_all, tune_learning_rate
from l2l_core.evaluation.claims import Claim
from l2l_core.experiments.errata import _on_off_rows
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer, kernel_weights
from l2l_core.optimizers.state_layouts import PER_COORDINATE, ColumnRuns
from l2l_core.training.meta_train import train_trajectory, unroll_segments
from l2l_core.evaluation.runners import run_learned
from l2l_core.tasks.families import MLPFamily, QuadraticFamily
from l2l_core.optimizers.drop_in import LearnedOptimizer

from error_bounds import Bounded, LSTMBound, assert_close64
from test_meta_train import RecordingLSTM


# ---------------------------------------------------------------- (c) meta-update schedule
THESIS_TRAINED = set(range(1, 20)) | set(range(21, 40)) | set(range(41, 60)) | set(range(61, 80))


def test_schedule_bug_trains_the_updates_the_thesis_loop_trained():
    segments = thesis_loop_segments(100, 20)
    assert {t for seg, k in segments for t in seg[:k]} == THESIS_TRAINED
    assert [t for seg, _ in segments for t in seg] == list(range(100))
    assert unroll_segments(100, 20) == [(range(s, s + 20), 20) for s in range(0, 100, 20)]


def test_schedule_bug_leaves_boundary_and_final_updates_untrained():
    fam = QuadraticFamily()
    lstm = RecordingLSTM(fam.default_lstm, seed=0)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)
    train_trajectory(lstm, opt, fam.sample(2, 0, "meta_train"), steps=100, unroll=20, schedule=thesis_loop_segments)
    assert lstm.calls == 100
    assert lstm.meta_grad_steps == THESIS_TRAINED


def _thesis_loop(lstm, meta_optimizer, tasks, steps, unroll):
    """A literal re-implementation of the thesis code's fit() loop: at each iteration the loss is taken at the
    current parameters and added to the running total *before* the update, the update is made, and when
    ``iteration % unroll == 0`` the total is back-propagated, the optimizer stepped and everything detached
    (including the update just made)."""
    theta = tasks.initial_params().requires_grad_(True)
    state = lstm.initial_state(theta.numel(), dtype=theta.dtype)
    total = None
    for iteration in range(steps):
        loss = tasks.loss(theta, iteration)
        total = loss.mean() if total is None else total + loss.mean()
        (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)
        update, new_state = lstm.step_tasks(grad.detach(), state, tasks.tensor_sizes)
        new_theta = theta + update
        if iteration % unroll == 0:
            meta_optimizer.zero_grad(set_to_none=True)
            total.backward()
            meta_optimizer.step()
            total = None
            theta = new_theta.detach().requires_grad_(True)
            state = tuple(x.detach() for x in new_state)
        else:
            theta, state = new_theta, new_state


def test_schedule_bug_meta_gradients_equal_the_literal_thesis_loop():
    """Same LSTM, same tasks, plain SGD as the meta-optimizer (a step on no gradient changes nothing, as in the
    thesis): after one trajectory both loops leave the same weights. float64, so agreement is to ~1e-12; a
    schedule one step off moves the weights by far more (checked below)."""
    fam = QuadraticFamily()
    tasks = fam.sample(3, 0, "meta_train")
    tasks = dataclasses.replace(tasks, W=tasks.W.double(), y=tasks.y.double())
    weights = {}
    for name in ("thesis", "ours", "off-by-one"):
        lstm = LSTMOptimizer(fam.default_lstm, seed=0).double()
        opt = torch.optim.SGD(lstm.parameters(), lr=1e-6)
        if name == "thesis":
            _thesis_loop(lstm, opt, tasks, 60, 20)
        elif name == "ours":
            train_trajectory(lstm, opt, tasks, steps=60, unroll=20, schedule=thesis_loop_segments)
        else:
            train_trajectory(lstm, opt, tasks, steps=60, unroll=20)
        weights[name] = torch.cat([p.detach().flatten() for p in lstm.parameters()])
    torch.testing.assert_close(weights["ours"], weights["thesis"], rtol=1e-10, atol=1e-12)
    assert (weights["off-by-one"] - weights["thesis"]).abs().max() > 1e-6


# ---------------------------------------------------------------- (d) shared state offset
def _reference_shared_offset(lstm, grad, state, sizes):
    """The thesis code's loop, one task at a time: read old state[:size], write new state[:size] in order."""
    n, dim = grad.shape
    hidden = lstm.config.hidden_size
    updates, new_states = [], []
    for i in range(n):
        old = [s[:, i * dim:(i + 1) * dim] for s in state]
        new = [torch.zeros(hidden, dim, dtype=grad.dtype) for _ in state]
        parts, offset = [], 0
        for size in sizes:
            u, written = lstm(grad[i, offset:offset + size], tuple(s[:, :size] for s in old))
            parts.append(u)
            for k, w in enumerate(written):
                new[k][:, :size] = w
            offset += size  # the parameter offset advances; the state offset (always 0) does not
        updates.append(torch.cat(parts))
        new_states.append(new)
    return torch.stack(updates), tuple(torch.cat([ns[k] for ns in new_states], dim=1) for k in range(len(state)))


# float64 where the two sides are the same mathematics run on other column counts (one LSTM call per tensor in
# the thesis loop, one for all in step_tasks): in float32 that changes summation orders and kernels
# (CPU-dependent last bits); float64 reassociation stays ~1e-15 relative, far below the 1e-10 checked here.
@torch.no_grad()
def test_shared_state_offset_bug_matches_the_thesis_loop():
    torch.manual_seed(0)
    lstm = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE), seed=3).double()
    sizes, n = (5, 2, 3, 1), 2
    dim = sum(sizes)
    state = tuple(torch.randn(20, n * dim, dtype=torch.float64) for _ in range(4))
    grad = torch.randn(n, dim, dtype=torch.float64)
    update, new_state = lstm.step_tasks(grad, state, sizes)
    ref_update, ref_state = _reference_shared_offset(lstm, grad, state, sizes)
    assert_close64(update, ref_update)
    for a, b in zip(new_state, ref_state):
        assert_close64(a, b)
    # columns 5.. of each task were written by no tensor: zero; column 0 holds the last tensor's state
    assert torch.all(new_state[0].view(20, n, dim)[:, :, 5:] == 0)
    correct = LSTMOptimizer(LSTMConfig(), seed=3).double()
    good_update, _ = correct.step_tasks(grad, state, sizes)
    assert not torch.allclose(update, good_update)  # the defect changes the updates


def test_shared_state_offset_bug_meta_gradients_match_the_thesis_loop():
    """Meta-training differentiates through the defect: the gradients wrt the LSTM's weights, the gradient
    input and the old state equal those of the thesis loop (a wrong column map changes them)."""
    torch.manual_seed(2)
    lstm = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE), seed=4).double()
    sizes, n = (6, 3, 4, 2), 3
    dim = sum(sizes)
    f64 = dict(dtype=torch.float64)
    state = tuple((0.5 * torch.randn(20, n * dim, **f64)).requires_grad_() for _ in range(4))
    grad = torch.randn(n, dim, **f64, requires_grad=True)
    weights = [torch.randn(n, dim, **f64)] + [torch.randn(20, n * dim, **f64) for _ in range(4)]

    def gradients(step):
        update, new_state = step(lstm, grad, state, sizes)
        total = sum((w * t).sum() for w, t in zip(weights, (update, *new_state)))
        inputs = [grad, *state, *lstm.parameters()]
        return torch.autograd.grad(total, inputs)

    ours = gradients(lambda m, g, s, z: m.step_tasks(g, s, z))
    reference = gradients(_reference_shared_offset)
    for a, b in zip(ours, reference):
        assert_close64(a, b)
    assert ours[1].abs().sum() > 0 and ours[-1].abs().sum() > 0  # the state and the weights get gradient


@torch.no_grad()
def test_shared_state_offset_bug_is_harmless_with_one_tensor_and_off_by_default():
    torch.manual_seed(1)
    buggy = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE), seed=0)
    clean = LSTMOptimizer(LSTMConfig(), seed=0)
    assert LSTMConfig().state_layout == PER_COORDINATE
    grad = torch.randn(3, 7)
    state = tuple(torch.randn(20, 21) for _ in range(4))
    a, sa = buggy.step_tasks(grad, state, (7,))
    b, sb = clean.step_tasks(grad, state)
    torch.testing.assert_close(a, b)
    for x, y in zip(sa, sb):
        torch.testing.assert_close(x, y)


def test_run_learned_applies_the_shared_state_bug_on_mlps(tiny_mnist_root):
    # float64: the clean run (InferenceRunner) and the buggy one (step_tasks) apply the LSTM through other code
    # paths, which in float32 round differently (kernels or not, CPU); in float64 the first update agrees to ~1e-15
    fam = MLPFamily(dataset="mnist", hidden=(4,), data_root=tiny_mnist_root)
    tasks = fam.sample(2, 0)
    tasks = dataclasses.replace(tasks, x=to_inputs(tasks.x).double())
    clean = LSTMOptimizer(fam.default_lstm, seed=0).double()
    buggy = LSTMOptimizer(dataclasses.replace(fam.default_lstm, state_layout=SHARED_STATE), seed=0).double()
    buggy.load_state_dict(clean.state_dict())
    a, theta_a = run_learned(clean, tasks, 5)
    b, theta_b = run_learned(buggy, tasks, 5)
    assert torch.equal(a[0], b[0])  # the same theta_0, the same code
    assert_close64(a[1], b[1])  # states start at zero: the first update is the same
    assert (theta_a - theta_b).abs().max() > 1e-4  # later updates read other tensors' states
    # meta-training goes through the same path, and its meta-gradient reaches the weights
    opt = torch.optim.Adam(buggy.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in buggy.parameters()]
    train_trajectory(buggy, opt, tasks, steps=4, unroll=2)
    assert all(not torch.equal(p, q) for p, q in zip(before, buggy.parameters()))


def test_drop_in_optimizer_refuses_a_shared_state_lstm():
    lstm = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE))
    with pytest.raises(ValueError, match="state_layout"):
        LearnedOptimizer(torch.nn.Linear(2, 2).parameters(), lstm=lstm)


# ---------------------------------------------------------------- (a) baselines tuned as SGD
def test_tuned_as_sgd_bug_hands_sgd_rates_to_adam_and_rmsprop(monkeypatch):
    fam = QuadraticFamily()
    built = []
    real = baselines.build_baseline
    monkeypatch.setattr("l2l_core.evaluation.runners.build_baseline",
                        lambda name, *a, **k: built.append(name) or real(name, *a, **k))
    buggy = as_tuned_by_sgd(tune_all(fam, names=("sgd", "nag"), n_tasks=4, steps=20))
    assert sorted(set(built)) == ["nag", "sgd"]  # Adam and RMSprop are never run while tuning
    sgd_rate = tune_learning_rate("sgd", fam, n_tasks=4, steps=20).lr
    assert buggy["adam"].lr == buggy["rmsprop"].lr == buggy["sgd"].lr == sgd_rate
    assert buggy["nag"].lr == tune_learning_rate("nag", fam, n_tasks=4, steps=20).lr
    assert [buggy[n].tuned_as for n in ("sgd", "rmsprop", "adam", "nag")] == ["sgd", "sgd", "sgd", "nag"]
    assert (buggy["adam"].table.tuned_as == "SGD").all()
    fixed = tune_all(fam, n_tasks=4, steps=20)
    assert fixed["adam"].tuned_as is None and fixed["adam"].lr != sgd_rate  # quadratics: Adam 0.1, SGD 0.01


# ---------------------------------------------------------------- the on/off table
def _frame(diff_on: float, diff_off: float):
    rng = np.random.default_rng(0)
    rows = []
    for variant, diff in (("on", diff_on), ("off", diff_off)):
        for task in range(20):
            base = 5 + rng.normal(0, 0.1)
            for name, value in (("LSTM", base + diff), ("NAG", base), ("Adam", base + 1)):
                rows += [dict(variant=variant, optimizer=name, seed=0, task=task, step=s, loss=value / 10,
                              diverged=False, setting="S") for s in range(11)]
    frame = pd.DataFrame(rows)
    return frame[frame.variant == "on"], frame[frame.variant == "off"]


def test_on_off_rows_say_whether_a_conclusion_survives_the_fix():
    claim = Claim("X", "LSTM wins", "thesis", metric="sum@10", setting="S")
    on, off = _frame(-1.0, +1.0)  # the defect made the LSTM look better; fixed, NAG wins
    (row,) = _on_off_rows("a", [claim], on, off, steps=10)
    assert (row["with defect"], row["fixed"], row["survives the fix"]) == ("holds", "does not hold", "no")
    assert row["delta"] > 0 and row["p_effect"] < 0.05  # the paired contrast sees the defect move the claim
    on, off = _frame(-1.0, -1.0)
    (row,) = _on_off_rows("a", [claim], on, off, steps=10)
    assert row["survives the fix"] == "yes" and row["delta"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.skipif(fused.kernels() is None, reason=f"the runner needs the fused kernels: {fused.unavailable_reason()}")
@torch.no_grad()
def test_shared_state_runner_matches_step_tasks():
    """Evaluation's in-place path for defect (d) gives step_tasks' updates, step after step. The runner exists only
    in float32 (it needs the kernels) and folds the output scale into the weights, so both are checked against
    the exact mathematics within the derived float32 bound (tests/error_bounds.py), following step_tasks' column
    map; four steps keep the bound's worst-case growth small."""
    torch.manual_seed(5)
    lstm = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE), seed=6)
    sizes, n = (70, 3, 12, 5), 3  # the first tensor is the largest, as a weight matrix before its bias
    dim = sum(sizes)
    runner = SharedStateRunner(lstm, n, sizes)
    state = lstm.initial_state(n * dim)
    bound, (read, write) = LSTMBound(lstm), shared_state_runs(sizes)
    columns = lambda runs: lambda s: ColumnRuns.apply(s.view(20, n, dim), runs).view(20, n * dim)
    exact = [Bounded.exact(s) for s in state]
    for _ in range(4):
        grad = torch.randn(n, dim)
        expected, state = lstm.step_tasks(grad, state, sizes)
        update, exact = bound.step(Bounded.exact(lstm.features(grad.reshape(-1))),
                                   [s.map(columns(read)) for s in exact])
        exact = [s.map(columns(write)) for s in exact]
        update.check(runner.step(grad.reshape(-1)), expected.reshape(-1), name="update")
    for k, (ref, ours, theirs) in enumerate(zip(exact, runner.state, state)):
        ref.check(ours, theirs, name=f"state {k}")
    assert not SharedStateRunner.supported(lstm, (3, 70), torch.empty(0))  # a larger later tensor: step_tasks


@pytest.mark.skipif(fused.kernels() is None, reason=f"the runner needs the fused kernels: {fused.unavailable_reason()}")
@torch.no_grad()
def test_shared_state_runner_keeps_one_state_and_the_two_buffer_numbers():
    """The runner updates its one state in place (the old columns that later tensors read are copied aside): the
    same kernel calls on the same values as reading an old state and writing a new one, so the same bits."""
    torch.manual_seed(7)
    lstm = LSTMOptimizer(LSTMConfig(state_layout=SHARED_STATE), seed=8)
    sizes, n, hidden = (70, 3, 12, 5), 3, 20
    dim, offsets = sum(sizes), [0, 70, 73, 85]
    runner = SharedStateRunner(lstm, n, sizes)
    # memory: one full state, and 12 (the largest later tensor) old columns per task aside
    held = sum(t.numel() for t in [*runner.state, *runner.old_head])
    assert held == 4 * hidden * n * (dim + 12)
    packed, out_w, out_b = kernel_weights(lstm)
    old = [torch.zeros(hidden, n * dim) for _ in range(4)]
    _, write = shared_state_runs(sizes)
    for _ in range(5):
        grad = torch.randn(n * dim)
        x_all, new = lstm.features(grad), [torch.empty(hidden, n * dim) for _ in range(4)]
        for i in range(n):
            for offset, size in zip(offsets, sizes):
                read, own = slice(i * dim, i * dim + size), slice(i * dim + offset, i * dim + offset + size)
                x = x_all[:, own]
                for layer in range(2):
                    h, c = new[2 * layer][:, own], new[2 * layer + 1][:, own]
                    fused.layer_step(packed[layer], x, old[2 * layer][:, read], old[2 * layer + 1][:, read], h, c)
                    x = h
        expected = torch.addmm(out_b.unsqueeze(1), out_w, new[-2]).squeeze(0)
        for s in new:
            s3 = s.view(hidden, n, dim)
            for src, dst, k in write:
                if src != dst:
                    s3[..., dst:dst + k] = s3[..., src:src + k]
            s3[..., sizes[0]:] = 0
        old = new
        assert torch.equal(runner.step(grad), expected)
    for ours, theirs in zip(runner.state, old):
        assert torch.equal(ours, theirs)


def test_a_process_that_never_imported_the_errata_finds_the_shared_layout():
    """A Dask worker only unpickles an LSTM whose config names the layout; the name alone must be enough."""
    import subprocess
    import sys

    code = ("import sys; from l2l_core.optimizers.state_layouts import state_layout; "
            f"assert 'l2l_core.errata.defects' not in sys.modules; assert state_layout({SHARED_STATE!r}) is not None")
    subprocess.run([sys.executable, "-c", code], check=True)
