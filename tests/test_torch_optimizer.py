import copy
import dataclasses

import pytest
import torch
from torch import nn

from l2l_core.tasks.data import to_inputs
from l2l_core.optimizers.checkpoint import save_optimizer
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.evaluation.runners import run_learned
from l2l_core.tasks.families import MLPFamily
from l2l_core.optimizers.drop_in import LearnedOptimizer

from error_bounds import assert_close64


def module_from_flat(fam, theta_row):
    """The nn.Sequential that computes the same function as one flat MLP task."""
    model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10)).to(theta_row.dtype)
    with torch.no_grad():
        for (W, b), layer in zip(fam.shape.unflatten(theta_row[None]), model[::2]):
            layer.weight.copy_(W[0].T)
            layer.bias.copy_(b[0])
    return model


def test_matches_the_functional_evaluation_path_step_for_step(tiny_mnist_root, tmp_path):
    # float64: nn.Linear's products and the flat MLP's batched ones (and one LSTM call per step vs the runner)
    # sum in other orders, so float32 results may differ in CPU-dependent last bits; in float64 the same
    # reassociation leaves ~1e-15 relative over these 8 steps, checked to 1e-10 of the magnitudes
    fam = MLPFamily(data_root=str(tiny_mnist_root))
    tasks = fam.sample(1, 0, "test")
    tasks = dataclasses.replace(tasks, x=to_inputs(tasks.x).double())
    lstm = LSTMOptimizer(fam.default_lstm, seed=1)
    path = save_optimizer(tmp_path / "lstm.pt", lstm, seed=1)
    lstm.double()
    model = module_from_flat(fam, tasks.initial_params()[0])
    opt = LearnedOptimizer(model.parameters(), checkpoint=path)
    opt.lstm.double()  # the checkpoint's float32 weights, exactly, in float64
    losses = []
    for t in range(8):
        rows = tasks.minibatch_indices(t)[0]
        loss = nn.functional.cross_entropy(model(to_inputs(tasks.x[rows])), tasks.y[rows])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    functional, theta = run_learned(lstm, tasks, 8)
    assert_close64(torch.tensor(losses, dtype=torch.float64), functional[:8, 0])
    expected = module_from_flat(fam, theta[0])
    for p, q in zip(model.parameters(), expected.parameters()):
        assert p.dtype == torch.float64
        assert_close64(p, q)


def test_state_round_trips_and_continues_identically():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    opt = LearnedOptimizer(model.parameters(), lstm=LSTMOptimizer(seed=2))

    def step(m, o):
        o.zero_grad()
        loss = ((m(x) - y) ** 2).mean()
        loss.backward()
        o.step()
        return loss.item()

    for _ in range(3):
        step(model, opt)
    clone = copy.deepcopy(model)
    restored = LearnedOptimizer(clone.parameters(), lstm=LSTMOptimizer(seed=99))  # other weights...
    restored.load_state_dict(opt.state_dict())  # ...replaced by the saved ones, with the LSTM states
    assert restored.state[next(iter(clone.parameters()))]["step"] == 3
    for _ in range(3):
        assert step(model, opt) == step(clone, restored)


def test_needs_exactly_one_source_of_weights():
    with pytest.raises(ValueError, match="exactly one"):
        LearnedOptimizer([torch.zeros(2, requires_grad=True)])


def small_cnn() -> nn.Sequential:
    """Many parameter tensors of different shapes (conv, batch norm, linear)."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.Sigmoid(), nn.Linear(8, 3))


def test_one_lstm_call_per_step_gives_the_per_tensor_updates():
    # float64 on the PyTorch path: the LSTM is coordinatewise, so joining the tensors changes nothing but the
    # matmul's column count; in float64 any rounding difference that brings is ~1e-16, far below 1e-12
    torch.manual_seed(0)
    model = small_cnn().double()
    x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(3, (8,))
    lstm = LSTMOptimizer(seed=3).double()
    opt = LearnedOptimizer(model.parameters(), lstm=lstm)
    reference = copy.deepcopy(model)
    states = {p: lstm.initial_state(p.numel(), dtype=torch.float64) for p in reference.parameters()}
    for _ in range(4):
        for m in (model, reference):
            m.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        with torch.no_grad():
            for p in reference.parameters():  # the old way: one LSTM call per tensor
                update, states[p] = lstm(p.grad.reshape(-1), states[p])
                p.add_(update.view_as(p))
    assert len(list(model.parameters())) == 10
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert not torch.equal(next(model.parameters()), next(small_cnn().double().parameters()))


def test_saved_state_holds_each_tensor_own_coordinates_only():
    model = small_cnn()
    opt = LearnedOptimizer(model.parameters(), lstm=LSTMOptimizer(seed=0))
    nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(3, (4,))).backward()
    opt.step()
    saved = opt.state_dict()["state"]
    for i, p in enumerate(model.parameters()):
        assert saved[i]["h0"].shape == (20, p.numel())
        assert saved[i]["h0"].untyped_storage().nbytes() == 20 * p.numel() * 4  # not the whole step's state
