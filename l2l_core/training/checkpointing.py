"""What a meta-training run carries from epoch to epoch (``RunState``): the selection so far, the snapshots kept for
smaller budgets, the curve, and the file it is written to after every epoch so that an interrupted run resumes.

Selection keeps the LSTM with the best validation score; a snapshot at budget B keeps the one selected after B
trajectories, exactly what a run of that budget selects (its trajectories are the same ones, in the same order).
The training state file holds this state with the LSTM and its Adam; trajectory tasks are functions of (seed,
attempt, epoch, index), so nothing else needs saving.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from l2l_core.optimizers.checkpoint import atomic_torch_save

TRAINING_STATE_FORMAT = "l2l-meta-train-state/1"


def load_training_state(path, signature: dict) -> dict | None:
    """The saved training state at ``path`` if it exists; refuses one written for other arguments."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"checkpoint_path={str(path)!r} is not a readable training state (truncated?): {err}") from err
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise ValueError(f"checkpoint_path={str(path)!r} is not an l2l meta-training state")
    if state["signature"] != signature:
        diff = {k: (state["signature"].get(k), v) for k, v in signature.items() if state["signature"].get(k) != v}
        raise ValueError(f"checkpoint_path={str(path)!r} was written for other arguments (saved, now): {diff}; "
                         "delete it or pass another checkpoint_path")
    return state


@dataclass
class RunState:
    """One run's state besides the LSTM and its Adam: its attempt, the restart rule's ``reference`` score (the
    better of the attempt's untrained and do-nothing scores), the best LSTM so far (its weights, score, epoch), the
    history rows of every attempt, and the snapshots (budget -> the best LSTM's weights and epoch at that budget)."""

    attempt: int
    reference: float
    best_score: float
    best_state: dict
    best_epoch: int = 0
    rows: list = field(default_factory=list)
    within: dict = field(default_factory=dict)

    @classmethod
    def from_saved(cls, saved: dict) -> "RunState":
        """The state in a training state file (``load_training_state``)."""
        return cls(saved.get("attempt", 0), saved.get("reference", saved.get("untrained")), saved["best_score"],
                   saved["best_state"], saved["best_epoch"], saved["rows"], saved["best_within"])

    def seen(self) -> int:
        """Trajectories seen so far, over every attempt (the x axis of a meta-training curve)."""
        return self.rows[-1]["trajectories"] if self.rows else 0

    def select(self, score: float, lstm, epoch: int) -> None:
        """Keep ``lstm`` (after ``epoch``) as the best so far if its validation ``score`` is lower."""
        if score < self.best_score:
            self.best_score, self.best_state, self.best_epoch = score, copy.deepcopy(lstm.state_dict()), epoch

    def snapshot(self, budget: int) -> None:
        """Keep the best LSTM so far as the one a run of ``budget`` trajectories selects."""
        self.within[budget] = dict(state=copy.deepcopy(self.best_state), epoch=self.best_epoch)

    def save(self, path, signature: dict, epoch: int, lstm, meta_optimizer) -> None:
        """Write the training state after ``epoch`` atomically to ``path`` (nothing when ``path`` is None)."""
        if path:
            atomic_torch_save(dict(format=TRAINING_STATE_FORMAT, signature=signature, epoch=epoch,
                                   attempt=self.attempt, reference=self.reference, lstm=lstm.state_dict(),
                                   meta_optimizer=meta_optimizer.state_dict(), best_state=self.best_state,
                                   best_score=self.best_score, best_epoch=self.best_epoch, rows=self.rows,
                                   best_within=self.within), path)
