"""Save and load a learned optimizer with its config, seed and package version (atomic writes)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from l2l_core import __version__
from l2l_core.io import atomic_path
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer
from l2l_core.optimizers.state_layouts import PER_COORDINATE

FORMAT = "l2l-lstm-optimizer/1"


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, then rename: readers never see half a file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def save_optimizer(path, lstm: LSTMOptimizer, seed: int, **metadata) -> Path:
    """Write the LSTM's weights with everything needed to rebuild it and to know where it came from."""
    return atomic_torch_save({
        "format": FORMAT,
        "version": __version__,
        "config": lstm.config.to_dict(),
        "seed": seed,
        "state_dict": {k: v.detach().cpu() for k, v in lstm.state_dict().items()},
        "metadata": metadata,
    }, path)


def config_from_dict(saved: dict) -> LSTMConfig:
    """The LSTMConfig of a saved ``config.to_dict()``. Files written before state layouts existed (until
    2026-11-29, the shipped weights among them) name the layout by a boolean: False is ``PER_COORDINATE``, True the
    thesis code's layout of the errata chapter."""
    saved = dict(saved)
    if "shared_state_offset_bug" in saved:
        shared = saved.pop("shared_state_offset_bug")
        saved["state_layout"] = "l2l_core.errata.defects:thesis_shared_state" if shared else PER_COORDINATE
    return LSTMConfig(**saved)


def load_optimizer(path, device="cpu", expect_config: LSTMConfig | None = None) -> tuple[LSTMOptimizer, dict]:
    """Rebuild a saved LSTM; returns (optimizer, checkpoint dict without weights).

    A missing, truncated or foreign file, or one whose config differs from ``expect_config``,
    raises a ValueError/FileNotFoundError that says which and why.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r} does not exist; train one with meta_train() and save_optimizer()")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or not a torch file
        raise ValueError(f"checkpoint={str(path)!r} is not a readable l2l checkpoint (truncated or corrupt?): {err}") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"checkpoint={str(path)!r} is not an l2l optimizer checkpoint (expected format {FORMAT!r})")
    config = config_from_dict(blob["config"])
    if expect_config is not None and config != expect_config:
        raise ValueError(f"checkpoint={str(path)!r} has config {config}, but {expect_config} was expected")
    lstm = LSTMOptimizer(config, seed=blob["seed"])
    lstm.load_state_dict(blob["state_dict"])
    info = {k: v for k, v in blob.items() if k != "state_dict"}
    return lstm.to(device), info
