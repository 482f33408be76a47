import dataclasses

import pytest
import torch
from torch import nn

from l2l_core.tasks.data import to_inputs
from l2l_core.tasks.families import MLPFamily, MLPShape, QuadraticFamily, make_family

from error_bounds import assert_close64


# Comparisons of the same mathematics computed with other shapes or kernels (batched vs per-task products, shared
# vs stacked minibatches) run in float64: in float32 the summation orders, and so the last bits, may differ
# (CPU-dependent); in float64 they agree to ~1e-15 relative, checked to 1e-10 of the magnitudes.
def test_flat_mlp_equals_the_same_torch_module(tiny_mnist_root):
    fam = MLPFamily(dataset="mnist", hidden=(20, 7), activation="relu", data_root=str(tiny_mnist_root))
    tasks = fam.sample(3, 0, "meta_train")
    tasks = dataclasses.replace(tasks, x=to_inputs(tasks.x).double())
    theta = tasks.initial_params().requires_grad_(True)
    losses = tasks.loss(theta, step=5)
    rows = tasks.minibatch_indices(5)
    for i in range(3):
        model = nn.Sequential(nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 10)).double()
        with torch.no_grad():
            for (W, b), layer in zip(fam.shape.unflatten(theta[i : i + 1]), model[::2]):
                layer.weight.copy_(W[0].T)
                layer.bias.copy_(b[0])
        expected = nn.functional.cross_entropy(model(to_inputs(tasks.x[rows[i]])), tasks.y[rows[i]])
        assert_close64(losses[i], expected)
    (grad,) = torch.autograd.grad(losses.sum(), theta)
    assert grad.shape == theta.shape and torch.isfinite(grad).all()


def test_layout_and_dimension():
    assert MLPShape((784, 20, 10)).dim == 15910
    assert MLPShape((3072, 20, 10)).dim == 61670


def test_tasks_depend_only_on_seed_split_and_index(tiny_mnist_root):
    fam = MLPFamily(data_root=str(tiny_mnist_root))
    a, b = fam.sample(4, 7, "test"), fam.sample(2, 7, "test")
    assert torch.equal(a.initial_params()[:2], b.initial_params())
    assert torch.equal(a.minibatch_indices(3)[:2], b.minibatch_indices(3))
    assert not torch.equal(a.minibatch_indices(3), a.minibatch_indices(4))
    other = fam.sample(4, 7, "meta_val")
    assert not torch.equal(a.initial_params(), other.initial_params())


def test_minibatches_and_accuracy_use_disjoint_rows_of_their_split(tiny_mnist_root):
    fam = MLPFamily(data_root=str(tiny_mnist_root))
    tasks = fam.sample(2, 0, "meta_val")
    fit, score = set(tasks.fit_idx.tolist()), set(tasks.score_idx.tolist())
    assert not fit & score
    train_tasks = fam.sample(2, 0, "meta_train")
    assert not (set(train_tasks.fit_idx.tolist()) | set(train_tasks.score_idx.tolist())) & (fit | score)
    assert set(tasks.minibatch_indices(0).flatten().tolist()) <= fit
    acc = tasks.accuracy(tasks.initial_params())
    assert acc.shape == (2,) and ((acc >= 0) & (acc <= 1)).all()


def test_quadratic_loss_by_hand():
    tasks = QuadraticFamily(distribution="uniform").sample(2, 0)
    assert (tasks.W >= 0).all() and (tasks.W < 1).all()
    tasks = dataclasses.replace(tasks, W=tasks.W.double(), y=tasks.y.double())  # batched vs per-task products
    theta = torch.randn(2, 10, dtype=torch.float64)
    expected = torch.stack([((tasks.W[i] @ theta[i] - tasks.y[i]) ** 2).sum() for i in range(2)])
    assert_close64(tasks.loss(theta, 0), expected)


@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="tanh"), "activation='tanh'.*'sigmoid', 'relu'"),
    (dict(hidden=(20, 0)), "hidden"),
    (dict(hidden=()), "hidden=()"),
    (dict(dataset="imagenet"), "dataset='imagenet'"),
    (dict(batch_size=0), "batch_size=0"),
])
def test_bad_family_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MLPFamily(**kwargs)


def test_bad_sampling_arguments_are_named():
    fam = QuadraticFamily()
    with pytest.raises(ValueError, match="n_tasks=0"):
        fam.sample(0, 0)
    with pytest.raises(ValueError, match="seed=-1"):
        fam.sample(1, -1)
    with pytest.raises(ValueError, match="split='train'"):
        fam.sample(1, 0, "train")
    with pytest.raises(ValueError, match="family='mlpx'"):
        make_family("mlpx")
    with pytest.raises(ValueError, match="distribution='normal'"):
        QuadraticFamily(distribution="normal")


def test_repeated_tasks_share_minibatches_and_give_the_stacked_losses_and_gradients(tiny_mnist_root):
    """A learning-rate grid stacks copies of the same tasks; gathering each minibatch once for all copies
    must give what separately stacked tasks give (values and gradients, to float rounding)."""
    fam = MLPFamily(dataset="mnist", hidden=(7,), activation="sigmoid", data_root=str(tiny_mnist_root))
    tasks = fam.sample(3, 0, "meta_train")
    tasks = dataclasses.replace(tasks, x=to_inputs(tasks.x).double())  # the two gather other shapes: float64, see assert_close64
    shared = tasks.repeat(4)
    stacked = dataclasses.replace(shared, copies=1)  # the same task list, one gather per task
    assert shared.copies == 4 and shared.task_seeds == stacked.task_seeds
    theta = (torch.randn(12, tasks.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3)
    theta.requires_grad_(True)
    for step in (0, 5):
        a, b = shared.loss(theta, step), stacked.loss(theta, step)
        assert_close64(a, b)
        ga, gb = (torch.autograd.grad(v.sum(), theta)[0] for v in (a, b))
        assert_close64(ga, gb)
    assert not torch.allclose(shared.loss(theta, 0)[:3], shared.loss(theta, 0)[3:6])  # copies differ by theta
    assert tasks.repeat(4).subset(0, 5).copies == 1
