"""LSTM optimizers shipped with the package, loaded by name: ``LearnedOptimizer(params, pretrained="mnist")``.

Each name has one checkpoint per meta-training seed (``<name>-seed<k>.pt``, a few dozen KB) and a provenance file
(``<name>.json``): the settings and code version that trained them, the validation score each was selected on, the
book's held-out numbers for them, and a reference run on a fixed tiny model that ``tests/test_pretrained.py``
re-computes (``drop_in.reference_run``). ``tools/ship_pretrained.py`` writes both from a ``make reproduce`` results tree
or from the reference run's store (``"mnist"``: its 2,000-trajectory LSTMs, each with its meta-training provenance).
"""
from __future__ import annotations

import json
from pathlib import Path


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
