"""The engine computes the same mathematics as the plain reference implementation kept in bench/."""
import sys
from pathlib import Path

import torch

from l2l_core.lstm_optimizer import LSTMConfig, LSTMOptimizer
from l2l_core.meta_train import train_trajectory
from l2l_core.tasks import MLPFamily

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from reference import PlainLSTMOptimizer, plain_trajectory  # noqa: E402


def copy_weights(engine: LSTMOptimizer, plain: PlainLSTMOptimizer) -> None:
    H = engine.config.hidden_size
    with torch.no_grad():
        for cell, W, b in zip(plain.cells, engine.gate_weights, engine.gate_biases):
            n_in = W.shape[1] - H
            i, f, o, g = W.split(H)
            order = torch.cat([i, f, g, o])  # torch's LSTMCell gate order
            cell.weight_ih.copy_(order[:, :n_in])
            cell.weight_hh.copy_(order[:, n_in:])
            bi, bf, bo, bg = b.split(H)
            cell.bias_ih.copy_(torch.cat([bi, bf, bg, bo]))
            cell.bias_hh.zero_()
        plain.out.weight.copy_(engine.output_weight)
        plain.out.bias.copy_(engine.output_bias)


def test_engine_and_plain_reference_give_the_same_meta_training(tiny_mnist_root):
    fam = MLPFamily(data_root=str(tiny_mnist_root))
    tasks = fam.sample(1, 0, "meta_train")
    engine = LSTMOptimizer(LSTMConfig(), seed=0)
    plain = PlainLSTMOptimizer()
    copy_weights(engine, plain)
    e_opt = torch.optim.Adam(engine.parameters(), lr=0.01)
    p_opt = torch.optim.Adam(plain.parameters(), lr=0.01)
    # float32 with a different summation order (fused gates) drifts by ~1e-4 relative over the chaotic
    # 20-step unrolls; a real difference in the mathematics shows up as percent-level gaps
    for _ in range(2):  # two trajectories: the second starts from meta-updated weights
        e_losses = train_trajectory(engine, e_opt, tasks, steps=40, unroll=20).unroll_losses
        p_losses = plain_trajectory(plain, p_opt, tasks, steps=40, unroll=20)
        torch.testing.assert_close(torch.tensor(e_losses), torch.tensor(p_losses), rtol=2e-3, atol=1e-4)

