"""LSTM optimizers shipped with the package, loaded by name: ``LearnedOptimizer(params, pretrained="mnist")``.

Each name has one checkpoint per meta-training seed (``<name>-seed<k>.pt``, a few dozen KB) and a provenance file
(``<name>.json``): the settings and code version that trained them, the validation score each was selected on, the
book's held-out numbers for them, and a reference run on a fixed tiny model that ``tests/test_pretrained.py``
re-computes. ``tools/ship_pretrained.py`` writes both from a ``make reproduce`` results tree.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from l2l_core.optimizers.checkpoint import load_optimizer
from l2l_core.checks import check_choice
from l2l_core.optimizers.lstm import LSTMOptimizer

FOLDER = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped optimizers."""
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def provenance(name: str) -> dict:
    """Where the shipped optimizer ``name`` comes from (see the module docstring)."""
    check_choice("pretrained", name, available())
    return json.loads((FOLDER / f"{name}.json").read_text())


def load(name: str, meta_seed: int | None = None) -> LSTMOptimizer:
    """The shipped LSTM ``name`` meta-trained from ``meta_seed`` (default: the provenance's ``default_seed``)."""
    info = provenance(name)
    seed = info["default_seed"] if meta_seed is None else meta_seed
    if seed not in info["meta_seeds"]:
        raise ValueError(f"meta_seed={seed!r} is not shipped for pretrained={name!r}; choose one of {info['meta_seeds']}")
    return load_optimizer(FOLDER / f"{name}-seed{seed}.pt")[0]


def reference_run(lstm: LSTMOptimizer, steps: int = 20) -> list[float]:
    """Losses of a fixed tiny model (5-4-3 sigmoid MLP, 32 fixed random points, float64) trained with ``lstm``
    as a drop-in optimizer: a fingerprint of the weights and of the drop-in path, the same on every CPU (float64
    runs the PyTorch path, not the float32 kernels)."""
    from torch import nn

    from l2l_core.optimizers.drop_in import LearnedOptimizer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (32,), generator=g)
    model = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    opt = LearnedOptimizer(model.parameters(), lstm=copy.deepcopy(lstm).double())
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses
