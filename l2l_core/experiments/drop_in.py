"""The drop-in optimizer on an ordinary ``nn.Sequential``: LearnedOptimizer next to Adam, plain torch loop."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from l2l_core.evaluation.tuning import tuning_from_table
from l2l_core.optimizers.baselines import baseline_label
from l2l_core.checks import check_int, check_seed
from l2l_core.tasks.data import load_image_data, meta_split_indices, to_inputs
from l2l_core.optimizers.drop_in import LearnedOptimizer


def mnist_mlp(seed: int, hidden: int = 20) -> nn.Sequential:
    """784-hidden-10 sigmoid MLP with torch's default initialisation, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.Sigmoid(), nn.Linear(hidden, 10))


def mnist_batches(steps: int, seed: int, batch_size: int = 128, data_root=None):
    """``steps`` minibatches (images, labels) of MNIST test images, drawn with replacement by ``seed``: the held-out
    images the book evaluates on (the LSTMs were meta-trained on training images)."""
    check_int("steps", steps)
    check_seed("seed", seed)
    data = load_image_data("mnist", data_root)
    _, rows_all = meta_split_indices(data)["test"]
    batches = rows_all[torch.randint(len(rows_all), (steps, batch_size), generator=torch.Generator().manual_seed(seed))]
    for rows in batches:
        yield to_inputs(data.x_test[rows]), data.y_test[rows]


def train_side_by_side(optimizers: dict, seeds=(0, 1, 2), steps: int = 200, batch_size: int = 128,
                       data_root=None) -> pd.DataFrame:
    """Train a fresh ``mnist_mlp(seed)`` with each ``{label: make_optimizer(params)}`` on ``mnist_batches``.

    The usual loop (``loss.backward(); opt.step(); opt.zero_grad()``); every optimizer sees the same
    initial weights and minibatches for a seed. Returns rows (optimizer, seed, task=0, step, loss).
    """
    frames = []
    for seed in seeds:
        for label, make in optimizers.items():
            model = mnist_mlp(seed)
            opt = make(model.parameters())
            losses = []
            for x, y in mnist_batches(steps, seed, batch_size, data_root):
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


def learned_pretrained(name: str = "mnist", meta_seed: int | None = None):
    """A factory for ``train_side_by_side``: the shipped LSTM ``name`` (``l2l_core.optimizers.pretrained``)."""
    return lambda params: LearnedOptimizer(params, pretrained=name, meta_seed=meta_seed)


def tuned_rate(results_root, optimizer: str = "Adam", setting: str = "MNIST 784-20-10 sigmoid (pytorch init)") -> float:
    """The rate experiment 2 tuned for ``optimizer`` on ``setting`` (default: the MLP of ``mnist_mlp``, torch's init)."""
    from pathlib import Path

    path = Path(results_root) / "02_mnist" / "tuning.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run notebook 02_mnist (make reproduce) first")
    tuning = pd.read_csv(path)
    rates = {baseline_label(n): r.lr for n, r in tuning_from_table(tuning[tuning.setting == setting]).items()}
    if optimizer not in rates:
        raise ValueError(f"optimizer={optimizer!r} on setting={setting!r} was not tuned in {path}; "
                         f"settings there: {sorted(tuning.setting.unique())}")
    return rates[optimizer]
