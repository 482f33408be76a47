import dataclasses
import pytest
import torch

import l2l_core.optimizers.baselines as baselines
from l2l_core.tasks.data import to_inputs
from l2l_core.evaluation.tuning import tune_learning_rate
from l2l_core.optimizers.baselines import BASELINES, LR_GRID, Baseline, build_baseline
from l2l_core.evaluation.evaluate import evaluate
from l2l_core.evaluation.runners import run_baseline, run_baseline_set, run_baselines
from l2l_core.tasks.families import MLPFamily, QuadraticFamily

from error_bounds import assert_close64

def _float64(tasks):
    return dataclasses.replace(tasks, W=tasks.W.double(), y=tasks.y.double())


EXPECTED = {
    "sgd": (torch.optim.SGD, dict(momentum=0, nesterov=False)),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "nag": (torch.optim.SGD, dict(momentum=0.9, nesterov=True)),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_baseline_is_the_torch_class_it_is_named(name):
    cls, options = EXPECTED[name]
    opt = build_baseline(name, [torch.zeros(3, requires_grad=True)], lr=0.05)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.05
    for key, value in options.items():
        assert opt.param_groups[0][key] == value


@pytest.mark.parametrize("name", list(EXPECTED))
def test_tuning_builds_only_the_optimizer_being_tuned(name, monkeypatch):
    built = []
    real = baselines.build_baseline

    def spy(n, params, lr):
        opt = real(n, params, lr)
        built.append(type(opt).__name__ + ("+nesterov" if opt.defaults.get("nesterov") else ""))
        return opt

    monkeypatch.setattr("l2l_core.evaluation.runners.build_baseline", spy)
    tune_learning_rate(name, QuadraticFamily(), n_tasks=3, steps=10)
    expected = EXPECTED[name][0].__name__ + ("+nesterov" if name == "nag" else "")
    assert built and set(built) == {expected}


def test_adam_and_sgd_get_different_tuned_rates_and_evaluation_uses_them():
    fam = QuadraticFamily()
    tuned = {n: tune_learning_rate(n, fam, n_tasks=10, steps=100) for n in ("sgd", "adam")}
    assert tuned["sgd"].lr != tuned["adam"].lr  # tuned as themselves (the thesis bug tuned Adam as SGD)
    for n, result in tuned.items():
        assert result.lr in LR_GRID
        assert result.table.loc[result.table.loss_sum.idxmin(), "lr"] == result.lr
        frame = evaluate(result.baseline, fam, n_tasks=2, steps=5)
        assert (frame.lr == result.lr).all()
        assert (frame.optimizer == BASELINES[n][0]).all()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_batched_learning_rate_grid_equals_separate_runs(name):
    # float64, as in the MLP test below: stacking changes the batched products' shapes (and so, possibly, their
    # summation order); float64 leaves ~1e-16 relative, amplified at most ~1e6 by Adam's/RMSprop's normalisation
    tasks = _float64(QuadraticFamily().sample(3, 0, "meta_val"))
    lrs = [0.1, 0.01, 0.001]
    together, _ = run_baselines(name, lrs, tasks, 15)
    for k, lr in enumerate(lrs):
        alone, _ = run_baseline(name, lr, tasks, 15)
        assert alone.dtype == torch.float64
        assert_close64(together[k], alone, rtol=1e-9)


def test_baseline_matches_a_plain_torch_loop_on_one_task():
    # float64: the loop's matrix-vector product and the runner's batched one may sum in other orders (see above)
    tasks = _float64(QuadraticFamily().sample(1, 4, "test"))
    losses, theta = run_baseline("adam", 0.1, tasks, 10)
    x = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    for _ in range(10):
        opt.zero_grad()
        loss = ((tasks.W[0] @ x - tasks.y[0]) ** 2).sum()
        loss.backward()
        opt.step()
    assert_close64(theta[0], x.detach(), rtol=1e-9)


def test_baseline_rejects_unknown_name_and_bad_lr():
    with pytest.raises(ValueError, match="optimizer='adamw'.*'sgd'"):
        Baseline("adamw", 0.1)
    with pytest.raises(ValueError, match="lr=0"):
        Baseline("adam", 0)


def test_a_set_of_different_baselines_equals_separate_runs_on_mlps(tiny_mnist_root):
    """Stacked copies share each step's minibatch gather; every (optimizer, rate) still runs as if alone.

    Equality is the point, so the check runs in float64: the stacked and the separate runs sum in different
    orders, and in float32 Adam's and RMSprop's normalisation turns that rounding (near-zero gradients of the
    thesis' near-zero weights) into differences of 1e-4 that depend on the CPU's SIMD width. In float64 the same
    reassociation leaves ~1e-16 relative, amplified at most ~1e6 by the normalisation, hence the 1e-9 bound."""
    tasks = MLPFamily(dataset="mnist", hidden=(6,), data_root=tiny_mnist_root).sample(3, 0)
    tasks = dataclasses.replace(tasks, x=to_inputs(tasks.x).double())
    pairs = [("sgd", 0.5), ("adam", 0.01), ("nag", 0.1), ("adam", 0.1), ("rmsprop", 0.003)]
    losses, thetas = run_baseline_set(pairs, tasks, 12)
    assert losses.shape == (5, 13, 3) and thetas.shape == (5, 3, tasks.dim)
    for k, (name, lr) in enumerate(pairs):
        alone, theta = run_baseline(name, lr, tasks, 12)
        assert losses.dtype == torch.float64
        assert_close64(losses[k], alone, rtol=1e-9)
        assert_close64(thetas[k], theta, rtol=1e-9)
    assert not torch.allclose(losses[1], losses[3])  # Adam at two rates: two different runs
    with pytest.raises(ValueError, match="baselines"):
        run_baseline_set([], tasks, 3)
