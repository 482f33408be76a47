"""Hand-designed baselines: the real torch.optim classes the learned optimizer is compared with, by name."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from l2l_core.checks import check_choice, check_positive_float

# name -> (display label, torch.optim class, fixed keyword arguments)
BASELINES: dict[str, tuple[str, type, dict]] = {
    "sgd": ("SGD", torch.optim.SGD, {}),
    "rmsprop": ("RMSprop", torch.optim.RMSprop, {}),
    "adam": ("Adam", torch.optim.Adam, {}),
    "nag": ("NAG", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
}
# a half-decade log grid from 1 down to 1e-5, as in the thesis code
LR_GRID: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5, 1e-5)


def baseline_label(name: str) -> str:
    check_choice("optimizer", name, BASELINES)
    return BASELINES[name][0]


def build_baseline(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The torch.optim optimizer called ``name`` over ``params`` (tensors or param groups)."""
    check_choice("optimizer", name, BASELINES)
    check_positive_float("lr", lr)
    _, cls, kwargs = BASELINES[name]
    return cls(params, lr=lr, **kwargs)


@dataclass(frozen=True)
class Baseline:
    """A baseline optimizer at a fixed learning rate (what evaluation runs)."""

    name: str
    lr: float

    def __post_init__(self):
        check_choice("optimizer", self.name, BASELINES)
        check_positive_float("lr", self.lr)

    @property
    def label(self) -> str:
        return baseline_label(self.name)
