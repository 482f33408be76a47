import pytest
import torch

from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer

from error_bounds import assert_close64

F64 = dict(dtype=torch.float64)


# Two computations of the same mathematics with other shapes or code paths (one coordinate vs a batch, in-place
# vs autograd ops, the runner's buffers vs forward's concatenation) run in float64: in float32 their summation
# orders and kernels, and so their last bits, may differ with the CPU. float64 reassociation of these sums
# (<= 41 terms) changes results by ~1e-15 relative; 1e-10 of the magnitudes leaves 1e4 for growth over the steps.
@pytest.mark.parametrize("preprocess", [True, False])
def test_permuting_coordinates_permutes_updates(preprocess):
    lstm = LSTMOptimizer(LSTMConfig(preprocess=preprocess), seed=3)
    g = torch.randn(50, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(2))
    state = lstm.initial_state(50)
    # two steps, so the permuted hidden state must follow its coordinate too
    u1, s1 = lstm(g, state)
    u2, _ = lstm(g * 0.5, s1)
    v1, r1 = lstm(g[perm], state)
    v2, _ = lstm(g[perm] * 0.5, r1)
    torch.testing.assert_close(v1, u1[perm])
    torch.testing.assert_close(v2, u2[perm])


def test_each_coordinate_keeps_its_own_state():
    lstm = LSTMOptimizer(seed=0).double()
    state = lstm.initial_state(2, **F64)
    _, state = lstm(torch.tensor([1.0, -1e-3], **F64), state)
    h1 = state[0]
    assert not torch.allclose(h1[:, 0], h1[:, 1])
    # the same coordinate alone gives the same answer as inside a batch (other matmul shapes: float64)
    alone = lstm.initial_state(1, **F64)
    _, alone = lstm(torch.tensor([1.0], **F64), alone)
    assert_close64(alone[0][:, 0], h1[:, 0])


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = LSTMOptimizer(seed=1), LSTMOptimizer(seed=1), LSTMOptimizer(seed=2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_output_scale_scales_updates():
    small = LSTMOptimizer(LSTMConfig(output_scale=0.1), seed=0)
    big = LSTMOptimizer(LSTMConfig(output_scale=1.0), seed=0)
    g = torch.randn(10)
    u_small, _ = small(g, small.initial_state(10))
    u_big, _ = big(g, big.initial_state(10))
    # the same float32 sum z in both: u_big = z * 1.0 exactly, 10 * u_small rounds 0.1, z * 0.1 and the * 10:
    # three roundings, relative error < 3u + O(u^2) (u = 2^-24) on any CPU
    torch.testing.assert_close(u_big, 10 * u_small, rtol=4 * 2.0 ** -24, atol=0)


def test_fused_gates_match_torch_lstm_cells():
    """Our fused 2-layer LSTM computes exactly what two torch.nn.LSTMCell layers compute."""
    lstm = LSTMOptimizer(LSTMConfig(preprocess=False, output_scale=1.0), seed=0).double()
    H = lstm.config.hidden_size
    cells = [torch.nn.LSTMCell(1, H).double(), torch.nn.LSTMCell(H, H).double()]
    with torch.no_grad():
        for cell, W, b in zip(cells, lstm.gate_weights, lstm.gate_biases):
            n_in = W.shape[1] - H
            # ours: rows (i, f, o, g); torch: rows (i, f, g, o)
            i, f, o, g = W.split(H)
            bi, bf, bo, bg = b.split(H)
            order = torch.cat([i, f, g, o])
            cell.weight_ih.copy_(order[:, :n_in])
            cell.weight_hh.copy_(order[:, n_in:])
            cell.bias_ih.copy_(torch.cat([bi, bf, bg, bo]))
            cell.bias_hh.zero_()
    grads = torch.randn(7, 3, dtype=torch.float64)
    state = lstm.initial_state(7, dtype=torch.float64)
    ref = [(torch.zeros(7, H, dtype=torch.float64),) * 2 for _ in cells]
    for t in range(3):
        update, state = lstm(grads[:, t], state)
        x = grads[:, t : t + 1]
        for k, cell in enumerate(cells):
            ref[k] = cell(x, ref[k])
            x = ref[k][0]
        expected = (x @ lstm.output_weight.T + lstm.output_bias).squeeze(1)
        assert_close64(update, expected)


@pytest.mark.parametrize("preprocess", [True, False])
def test_in_place_evaluation_path_equals_the_differentiable_path(preprocess):
    lstm = LSTMOptimizer(LSTMConfig(preprocess=preprocess), seed=4).double()
    grads = torch.randn(3, 40, generator=torch.Generator().manual_seed(0), **F64) * 1e-3
    s_grad = s_eval = lstm.initial_state(40, **F64)
    for g in grads:
        u_grad, s_grad = lstm(g, s_grad)
        with torch.no_grad():
            u_eval, s_eval = lstm(g, s_eval)
        assert_close64(u_eval, u_grad.detach())
        for a, b in zip(s_eval, s_grad):
            assert_close64(a, b.detach())


@pytest.mark.parametrize("config", [LSTMConfig(), LSTMConfig(preprocess=False, output_scale=1.0),
                                    LSTMConfig(num_layers=1, hidden_size=7)])
def test_inference_runner_gives_the_updates_and_states_of_forward(config):
    from l2l_core.optimizers.lstm import InferenceRunner

    # float64 (the PyTorch path of both; the runner's kernel path is compared in test_fused.py)
    lstm = LSTMOptimizer(config, seed=1).double()
    n = 500
    runner, state = InferenceRunner(lstm, n, **F64), lstm.initial_state(n, **F64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(25):  # gradients over nine orders of magnitude, both preprocessing branches
            grad = torch.randn(n, generator=gen, **F64) * 10.0 ** torch.randint(-8, 1, (n,), generator=gen)
            fast = runner.step(grad)
            slow, state = lstm(grad, state)
            assert_close64(fast, slow)
    for a, b in zip(runner.state(), state):
        assert_close64(a, b)


def test_inference_runner_refuses_what_it_cannot_run():
    from l2l_core.optimizers.lstm import InferenceRunner

    with pytest.raises(ValueError, match="num_layers=3"):
        InferenceRunner(LSTMOptimizer(LSTMConfig(num_layers=3)), 10)


def test_the_reference_step_is_pytorchs_lstm_cell():
    """The readable reference step is a standard LSTM: torch.nn.LSTMCell with the same weights (its gate rows are
    ordered i, f, g, o; ours i, f, o, g) gives the same (h', c') for every coordinate, in float64 (same sums in
    another order: ~1e-15 relative; 1e-12 leaves a margin)."""
    from l2l_core.optimizers.lstm import reference_layer_step

    gen = torch.Generator().manual_seed(0)
    H, I, N = 5, 2, 7
    weight, bias = torch.randn(4 * H, I + H, generator=gen, **F64), torch.randn(4 * H, generator=gen, **F64)
    x, h, c = (torch.randn(rows, N, generator=gen, **F64) for rows in (I, H, H))
    cell = torch.nn.LSTMCell(I, H).double()
    order = torch.cat([torch.arange(k * H, (k + 1) * H) for k in (0, 1, 3, 2)])  # ours (i, f, o, g) -> (i, f, g, o)
    with torch.no_grad():
        cell.weight_ih.copy_(weight[order, :I])
        cell.weight_hh.copy_(weight[order, I:])
        cell.bias_ih.copy_(bias[order])
        cell.bias_hh.zero_()
    h_ref, c_ref = cell(x.T, (h.T, c.T))
    h_new, c_new = reference_layer_step(x, h, c, weight, bias)
    torch.testing.assert_close(h_new, h_ref.T.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c_new, c_ref.T.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("taped", [True, False])
def test_every_path_of_layer_step_is_the_reference_step(taped):
    """The dispatch in float64 (the PyTorch paths; the kernels' float32 path is checked against derived bounds in
    test_fused.py): with and without a tape, the same (h', c') as the reference. Same sums, possibly in another
    order (addmm vs in-place ops): float64 reassociation of <= 23 terms is ~1e-15 relative on any CPU (SIMD width
    changes only the order), so 1e-12 leaves a margin of 1e3 and still fails on any real difference."""
    from l2l_core.optimizers.lstm import layer_step, reference_layer_step

    gen = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(80, 22, generator=gen, **F64), torch.randn(80, generator=gen, **F64)
    x, h, c = (torch.randn(rows, 9, generator=gen, **F64) for rows in (2, 20, 20))
    expected = reference_layer_step(x, h, c, weight, bias)
    with torch.set_grad_enabled(taped):
        got = layer_step(x, h, c, weight, bias)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
