"""The restart policy of meta-training: when an LSTM counts as stuck after its first epoch, how each fresh attempt is
seeded, and when a run under one restart cap ends in the LSTM a run under another would.

On the thesis-initialised MLP some initialisations learn to leave the optimizee on its plateau; ``meta_train`` then
replaces a stuck LSTM by a fresh one (attempt 1, 2, ...), at most ``restarts`` times. Attempts are seeded by
(seed, attempt), never by the cap, so every run draws the same attempts.
"""
from __future__ import annotations

import pandas as pd

from l2l_core.seeding import derive_seed

RESTART_MIN_GAIN = 0.01  # a first epoch that improves validation by less than 1% has not started to learn


# Version of the restart rule, part of every signature with restarts (files of another rule are not reused). Rule 2:
# a restarted LSTM is freshly initialised (``init_seed``) and draws its own trajectories (``trajectory_seed``).
RESTART_RULE = 2


def same_result_with_restarts(saved: int, last_attempt: int, restarts: int) -> bool:
    """Whether a run allowed ``saved`` restarts that ended at attempt ``last_attempt`` has the result a run
    allowed ``restarts`` would have (same seed and settings otherwise), so its files can be reused.

    Attempts are seeded by (seed, attempt), never by the cap, so two caps differ only in whether a stuck attempt
    may restart. An attempt that ended below its cap learned (a stuck one would have restarted): every cap from
    that attempt on ends there too. One that ended at its cap may be stuck: only the same cap is known to agree.
    """
    return saved == restarts or last_attempt < saved and last_attempt <= restarts


def last_attempt(history: pd.DataFrame) -> int:
    """The attempt a meta-training curve ended with (0 for a curve written before restarts, which has no column)."""
    return int(history["attempt"].max()) if "attempt" in history else 0


def init_seed(seed: int, attempt: int) -> int:
    """The seed that initialises attempt ``attempt``'s LSTM: the meta-training seed itself for attempt 0."""
    return seed if attempt == 0 else derive_seed("restart", seed, attempt)


def trajectory_seed(seed: int, attempt: int, epoch: int, index: int) -> int:
    """The seed of trajectory ``index`` of ``epoch``: a function of the meta-training seed, so a run resumes and
    repeats exactly; a restart (``attempt`` > 0) draws its own, attempt 0 those of a run without restarts."""
    if attempt == 0:
        return derive_seed("trajectory", seed, epoch, index)
    return derive_seed("restart trajectory", seed, attempt, epoch, index)


def is_stuck(score: float, reference: float) -> bool:
    """Whether a validation ``score`` after the first epoch is no real improvement on ``reference`` (the better
    of the untrained LSTM's score and the do-nothing score)."""
    return not score < (1 - RESTART_MIN_GAIN) * reference
