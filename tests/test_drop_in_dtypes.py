"""The drop-in optimizer as torch.optim users expect it: models of any floating dtype train (the LSTM runs in float32,
its states stay float32), and sparse gradients are refused with a clear error."""
import copy

import pytest
import torch
from torch import nn

from l2l_core.optimizers.drop_in import LearnedOptimizer

U32, U64 = 2.0 ** -24, 2.0 ** -53  # unit roundoffs (round to nearest)


def regression():
    """A fixed tiny regression: 64 points in 5 dimensions, targets from a linear map."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    return x, x @ torch.randn(5, 1, generator=g)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_float64_and_bfloat16_models_train(dtype):
    x, y = regression()
    model = mlp().to(dtype)
    opt = LearnedOptimizer(model.parameters(), pretrained="mnist")
    losses = []
    for _ in range(8):
        loss = nn.functional.mse_loss(model(x.to(dtype)), y.to(dtype))
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.9 * losses[0], losses
    for p in model.parameters():
        assert p.dtype == dtype
        assert {v.dtype for v in opt.state[p].values() if torch.is_tensor(v)} == {torch.float32}


def test_float64_update_is_the_float32_update():
    """The LSTM sees the same float32 gradients and states in both models, so it computes the same float32 update u
    (the states stay bitwise equal). What differs is the add: the float32 model's p + u rounds to float32, |error| <=
    U32 |p_new|; the float64 model's rounds to float64, <= U64 |p_new|. Updates are read back as p_new - p_old in
    float64 (exact for the float32 model's pair; the float64 pair's subtraction rounds once more, <= U64 |update|), so
    they differ by at most U32 |p32_new| + U64 (|p64_new| + |update64|) elementwise, at every step."""
    x, y = regression()
    m32 = mlp()
    m64 = copy.deepcopy(m32).double()  # the same values, exactly
    opt32 = LearnedOptimizer(m32.parameters(), pretrained="mnist")
    opt64 = LearnedOptimizer(m64.parameters(), pretrained="mnist")
    for _ in range(5):
        opt32.zero_grad()
        nn.functional.mse_loss(m32(x), y).backward()
        for p32, p64 in zip(m32.parameters(), m64.parameters()):
            p64.grad = p32.grad.double()  # the same gradient: the float64 model's own would differ by its rounding
        old32 = [p.detach().double() for p in m32.parameters()]
        old64 = [p.detach().clone() for p in m64.parameters()]
        opt32.step()
        opt64.step()
        for p32, p64, o32, o64 in zip(m32.parameters(), m64.parameters(), old32, old64):
            assert p64.dtype == torch.float64
            new32, new64 = p32.detach().double(), p64.detach()
            update32, update64 = new32 - o32, new64 - o64
            bound = U32 * new32.abs() + U64 * (new64.abs() + update64.abs())
            assert ((update64 - update32).abs() <= bound).all()
            assert update64.abs().max() > 0
            for key, state in opt64.state[p64].items():
                if torch.is_tensor(state):
                    assert state.dtype == torch.float32 and torch.equal(state, opt32.state[p32][key]), key


def test_bfloat16_states_stay_float32_through_a_saved_state():
    """torch.optim casts loaded states to each parameter's dtype; the LSTM's stay in float32 (no bfloat16 rounding),
    so a restored optimizer continues exactly."""
    x, y = regression()
    model = mlp().to(torch.bfloat16)
    opt = LearnedOptimizer(model.parameters(), pretrained="mnist")

    def step(m, o):
        o.zero_grad()
        loss = nn.functional.mse_loss(m(x.bfloat16()), y.bfloat16())
        loss.backward()
        o.step()
        return loss.item()

    for _ in range(3):
        step(model, opt)
    clone = copy.deepcopy(model)
    restored = LearnedOptimizer(clone.parameters(), pretrained="mnist")
    restored.load_state_dict(opt.state_dict())
    for p, q in zip(model.parameters(), clone.parameters()):
        for key, value in opt.state[p].items():
            if torch.is_tensor(value):
                assert restored.state[q][key].dtype == torch.float32 and torch.equal(restored.state[q][key], value)
    for _ in range(3):
        assert step(model, opt) == step(clone, restored)


def test_sparse_gradients_are_refused_before_anything_moves():
    linear, embedding = nn.Linear(3, 1), nn.Embedding(10, 3, sparse=True)
    opt = LearnedOptimizer([*linear.parameters(), *embedding.parameters()], pretrained="mnist")
    linear(embedding(torch.tensor([1, 4, 4]))).sum().backward()
    assert embedding.weight.grad.is_sparse
    before = [p.detach().clone() for p in (*linear.parameters(), embedding.weight)]
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, (*linear.parameters(), embedding.weight)))
