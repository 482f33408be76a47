"""Reuse what an experiment chapter already computed in the same results tree (its losses, its tuned
learning rates) instead of computing it again, when the chapter ran with the settings that shape it.

The errata and long-horizon chapters re-check the experiment chapters' claims on the same tasks; reusing
their runs keeps the comparisons paired and saves minutes (tuning one MNIST family costs ~28 s, CIFAR-10
~115 s on the development machine). A chapter that is missing or ran with other settings
is an error naming the chapter to run (``chapter_frame``); missing tuning is repeated (``tuned_baselines``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from l2l_core.evaluation.tuning import TuningResult, tune_all, tuning_from_table
from l2l_core.checks import check_choice
from l2l_core.experiments.registry import SETUPS
from l2l_core.experiments.settings import Settings, setting_label
from l2l_core.io import read_frame

# the MLP chapters (name -> the function giving its families and claims): the ones later chapters reuse
CHAPTERS = {name: setup for name, setup in SETUPS.items() if name != "01_quadratic"}
SAME_RUN_KEYS = ("profile", "meta_seeds", "init", "errata_trajectories", "restarts", "seeds", "n_tasks", "steps", "tune_tasks", "tune_steps", "meta_epochs",
                 "trajectories_per_epoch", "tasks_per_trajectory", "train_steps", "unroll", "n_val_tasks",
                 "meta_lr", "seed", "device", "data_root")
TUNING_KEYS = ("profile", "tune_tasks", "tune_steps", "seed", "init", "device", "data_root")


def _saved_settings_match(folder: Path, s: Settings, keys) -> bool:
    """True when ``folder``'s settings.json agrees with ``s`` on ``keys``."""
    try:
        saved = json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError):
        return False
    ours = json.loads(json.dumps({k: getattr(s, k) for k in keys}))
    return {k: saved.get(k) for k in keys} == ours


def chapter_frame(s: Settings, chapter: str, progress: bool = True) -> pd.DataFrame:
    """The losses of experiment ``chapter`` in the same results tree, read-only.

    They are used only if its settings.json matches ``s`` on everything that shapes its numbers; otherwise an
    error names the chapter to run (chapters never write into each other's folders).
    """
    folder = Path(s.results_dir).parent / chapter
    if (folder / "losses.parquet").is_file() and _saved_settings_match(folder, s, SAME_RUN_KEYS):
        return read_frame(folder / "losses.parquet")
    check_choice("chapter", chapter, CHAPTERS)
    why = "missing" if not (folder / "losses.parquet").is_file() else "from a run with other settings"
    raise FileNotFoundError(f"this chapter reads chapter {chapter}'s results in {folder}, which are {why}; run "
                            f"notebooks/{chapter}.ipynb with the same parameters first (make reproduce runs the "
                            "chapters in order)")


def tuned_baselines(s: Settings, family) -> dict[str, TuningResult]:
    """The four baselines tuned on ``family`` as the experiments tune them: read from a chapter of the same
    results tree that tuned this family with the same tuning settings (``TUNING_KEYS``), else tuned here."""
    label = setting_label(family)
    for chapter in CHAPTERS:
        folder = Path(s.results_dir).parent / chapter
        if (folder / "tuning.csv").is_file() and _saved_settings_match(folder, s, TUNING_KEYS):
            table = read_frame(folder / "tuning.csv")
            tuned = tuning_from_table(table[table.setting == label])
            if len(tuned) == 4:
                return tuned
    return tune_all(family, n_tasks=s.tune_tasks, steps=s.tune_steps, seed=s.seed)
