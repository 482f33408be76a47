"""The drop-in optimizer on an ordinary ``nn.Sequential``: LearnedOptimizer next to Adam, plain torch loop."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .checks import check_int, check_seed
from .data import load_image_data, meta_split_indices
from .torch_optimizer import LearnedOptimizer


def mnist_mlp(seed: int, hidden: int = 20) -> nn.Sequential:
    """784-hidden-10 sigmoid MLP with torch's default initialisation, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.Sigmoid(), nn.Linear(hidden, 10))


def train_side_by_side(optimizers: dict, seeds=(0, 1, 2), steps: int = 200, batch_size: int = 128,
                       data_root=None) -> pd.DataFrame:
    """Train a fresh ``mnist_mlp(seed)`` with each ``{label: make_optimizer(params)}`` on MNIST-test minibatches.

    The usual loop (``loss.backward(); opt.step(); opt.zero_grad()``); every optimizer sees the same
    initial weights and minibatches for a seed. Returns rows (optimizer, seed, task=0, step, loss).
    """
    check_int("steps", steps)
    data = load_image_data("mnist", data_root)
    _, rows_all = meta_split_indices(data)["test"]
    frames = []
    for seed in seeds:
        check_seed("seed", seed)
        g = torch.Generator().manual_seed(seed)
        batches = rows_all[torch.randint(len(rows_all), (steps, batch_size), generator=g)]
        for label, make in optimizers.items():
            model = mnist_mlp(seed)
            opt = make(model.parameters())
            losses = []
            for t in range(steps):
                x, y = data.x_test[batches[t]], data.y_test[batches[t]]
                loss = nn.functional.cross_entropy(model(x), y)
                losses.append(loss.item())
                opt.zero_grad()
                loss.backward()
                opt.step()
            frames.append(pd.DataFrame({"optimizer": label, "seed": seed, "task": 0, "step": range(steps),
                                        "loss": losses}))
    return pd.concat(frames, ignore_index=True)


def learned(checkpoint):
    """A factory for ``train_side_by_side``: the LSTM saved at ``checkpoint``."""
    return lambda params: LearnedOptimizer(params, checkpoint=checkpoint)
