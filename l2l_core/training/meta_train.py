"""Meta-training: one LSTM optimizer meta-trained on a task family's meta-train tasks, selected on meta-validation.

The pieces: ``trajectory`` (one trajectory's truncated backpropagation, the validation score), ``restarts`` (when a
stuck LSTM is replaced, how attempts are seeded), ``checkpointing`` (selection, snapshots, the state a run resumes
from). ``meta_train`` checks its arguments and runs the epochs (``_Trainer``: one attempt's fresh LSTM, one epoch).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from l2l_core.checks import check_int, check_positive_float, check_seed
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer
from l2l_core.training.checkpointing import TRAINING_STATE_FORMAT, RunState, load_training_state
from l2l_core.training.restarts import (RESTART_MIN_GAIN, RESTART_RULE, init_seed, is_stuck, last_attempt,
                                        same_result_with_restarts, trajectory_seed)
from l2l_core.training.trajectory import (Schedule, TrajectoryResult, train_trajectory, unroll_segments,
                                          validation_score)
# the trainer scores every LSTM through this name (tests replace it); the public one is trajectory.validation_scores
from l2l_core.training.trajectory import validation_scores

__all__ = ["MetaTrainResult", "meta_train", "search_meta_lr", "train_trajectory", "unroll_segments", "Schedule",
           "TrajectoryResult", "validation_score", "is_stuck", "last_attempt", "same_result_with_restarts",
           "trajectory_seed", "RESTART_MIN_GAIN", "RESTART_RULE", "TRAINING_STATE_FORMAT"]


@dataclass
class MetaTrainResult:
    """The best LSTM by validation score, the LSTM after the last epoch, and the per-epoch history."""

    best: LSTMOptimizer
    last: LSTMOptimizer
    history: pd.DataFrame
    best_epoch: int
    resumed_after_epoch: int = 0  # 0: trained from scratch
    # budget (trajectories) -> the best LSTM among the validations made within that budget: exactly what a
    # run with that smaller budget would have selected (its trajectories are the same ones, in the same order)
    best_within: dict = None
    restarts: int = 0  # fresh LSTMs started because an earlier one was stuck (``meta_train(restarts=...)``)

    def best_within_budget(self, trajectories: int) -> LSTMOptimizer:
        """The LSTM that a run of ``trajectories`` trajectories (a budget given to ``snapshot_budgets``) selects."""
        if trajectories not in (self.best_within or {}):
            raise ValueError(f"trajectories={trajectories} is not a recorded budget; recorded: "
                             f"{sorted(self.best_within or {})}")
        return self.best_within[trajectories]


class _Trainer:
    """What stays fixed through one ``meta_train`` call: the family, the LSTM's configuration and seed, the
    validation tasks and the trajectory settings. Makes each attempt's fresh LSTM and runs one epoch."""

    def __init__(self, family, config, meta_lr, seed, val_tasks, steps, unroll, grad_clip, schedule,
                 trajectories_per_epoch, tasks_per_trajectory):
        self.family, self.config, self.meta_lr, self.seed, self.val_tasks = family, config, meta_lr, seed, val_tasks
        self.steps, self.unroll, self.grad_clip, self.schedule = steps, unroll, grad_clip, schedule
        self.trajectories_per_epoch, self.tasks_per_trajectory = trajectories_per_epoch, tasks_per_trajectory
        self.device = getattr(family, "device", "cpu")

    def fresh(self, attempt: int):
        """Attempt ``attempt``'s untrained LSTM and its Adam."""
        net = LSTMOptimizer(self.config, seed=init_seed(self.seed, attempt)).to(self.device)
        return net, torch.optim.Adam(net.parameters(), lr=self.meta_lr)

    def start_attempt(self, attempt: int, rows: list):
        """A fresh LSTM (attempt ``attempt``) whose untrained score is epoch 0 of its curve (appended to ``rows``).

        Returns the LSTM, its Adam and its ``RunState``: selection starts at the untrained score, and the restart
        rule's reference is the better of that score and the do-nothing score, so an attempt that starts worse than
        not moving at all cannot pass for learning by merely getting back to the plateau."""
        net, optimizer = self.fresh(attempt)
        score, do_nothing = validation_scores(net, self.val_tasks, self.steps)
        run = RunState(attempt, min(score, do_nothing), score, None, rows=rows)
        rows.append(dict(epoch=0, trajectories=run.seen(), meta_loss=math.nan, val_loss_sum=score,
                         skipped_updates=0, seconds=0.0, attempt=attempt))
        run.best_state = copy.deepcopy(net.state_dict())
        return net, optimizer, run

    def epoch(self, lstm, meta_optimizer, run: RunState, epoch: int, bar) -> float:
        """Meta-train on epoch ``epoch``'s trajectories, validate, select, and append its row; returns the score."""
        start, losses, skipped = time.perf_counter(), [], 0
        for j in range(self.trajectories_per_epoch):
            tasks = self.family.sample(self.tasks_per_trajectory, trajectory_seed(self.seed, run.attempt, epoch, j),
                                       split="meta_train")
            result = train_trajectory(lstm, meta_optimizer, tasks, self.steps, self.unroll, self.grad_clip,
                                      self.schedule)
            losses.append(sum(result.unroll_losses))
            skipped += result.skipped_updates
            bar.update(1)
        score = validation_scores(lstm, self.val_tasks, self.steps)[0]
        run.select(score, lstm, epoch)
        run.rows.append(dict(epoch=epoch, trajectories=run.seen() + self.trajectories_per_epoch,
                             meta_loss=sum(losses) / len(losses), val_loss_sum=score, skipped_updates=skipped,
                             seconds=time.perf_counter() - start, attempt=run.attempt))
        return score

    def restored(self, state: dict) -> LSTMOptimizer:
        """An LSTM with the weights ``state``."""
        net = LSTMOptimizer(self.config, seed=self.seed).to(self.device)
        net.load_state_dict(state)
        return net


def meta_train(family, config: LSTMConfig | None = None, meta_lr: float | None = None, epochs: int = 10,
               trajectories_per_epoch: int = 20, tasks_per_trajectory: int = 1, steps: int = 100,
               unroll: int = 20, n_val_tasks: int = 20, seed: int = 0, grad_clip: float | None = None,
               progress: bool = True, checkpoint_path: str | Path | None = None,
               schedule: Schedule = unroll_segments, snapshot_budgets=(), restarts: int = 0) -> MetaTrainResult:
    """Meta-train an LSTM optimizer on ``family``'s meta-train tasks, selecting by meta-validation.

    ``config`` and ``meta_lr`` default to the family's (no preprocessing, scale 1.0, lr 0.003 on
    quadratics; preprocessing, scale 0.1, lr 0.01 on MLPs, as in the thesis code). Epoch 0 of the
    history is the untrained LSTM; its ``trajectories`` column counts the trajectories seen (the x axis
    of a meta-training curve). Same arguments and seed -> the same numbers.

    ``snapshot_budgets`` (trajectory counts, multiples of ``trajectories_per_epoch``) also keep the LSTM
    that a shorter run would have selected (``MetaTrainResult.best_within_budget``), so one long run
    serves experiments with smaller budgets.

    With ``checkpoint_path``, the whole training state (LSTM, Adam, best so far, history) is written
    atomically after every epoch; calling again with the same arguments resumes after the last
    finished epoch and ends with the same result as an uninterrupted run (trajectory tasks are
    functions of (seed, epoch, index), so nothing else needs saving).

    ``restarts``: an LSTM still stuck after its first epoch (validation not ``RESTART_MIN_GAIN`` below the
    better of its untrained score and the do-nothing score: on the thesis-initialised MLP some initialisations
    learn to leave the optimizee on its plateau) is replaced by a fresh one (initialised from
    ``derive_seed("restart", seed, k)``, new Adam, its own trajectories: ``trajectory_seed``), at most ``restarts`` times. The history keeps every attempt (column ``attempt``; its
    ``trajectories`` counts all trajectories seen); selection and ``snapshot_budgets`` are the last attempt's.
    """
    config = config or family.default_lstm
    meta_lr = family.default_meta_lr if meta_lr is None else check_positive_float("meta_lr", meta_lr)
    check_int("epochs", epochs, minimum=0)
    check_int("trajectories_per_epoch", trajectories_per_epoch)
    check_int("tasks_per_trajectory", tasks_per_trajectory)
    check_int("n_val_tasks", n_val_tasks)
    check_seed("seed", seed)
    check_int("restarts", restarts, minimum=0)
    schedule(steps, unroll)
    if grad_clip is not None:
        check_positive_float("grad_clip", grad_clip)
    for budget in snapshot_budgets:
        check_int("snapshot_budgets (each)", budget)
        if budget % trajectories_per_epoch or budget > epochs * trajectories_per_epoch:
            raise ValueError(f"snapshot_budgets contains {budget}; each must be a multiple of "
                             f"trajectories_per_epoch={trajectories_per_epoch} and at most epochs x "
                             f"trajectories_per_epoch={epochs * trajectories_per_epoch}")

    val_tasks = family.sample(n_val_tasks, seed, split="meta_val")
    trainer = _Trainer(family, config, meta_lr, seed, val_tasks, steps, unroll, grad_clip, schedule,
                       trajectories_per_epoch, tasks_per_trajectory)
    signature = dict(family=family.describe(), config=config.to_dict(), meta_lr=meta_lr, epochs=epochs,
                     trajectories_per_epoch=trajectories_per_epoch, tasks_per_trajectory=tasks_per_trajectory,
                     steps=steps, unroll=unroll, n_val_tasks=n_val_tasks, seed=seed, grad_clip=grad_clip,
                     **({"schedule": schedule.__name__} if schedule is not unroll_segments else {}),
                     **({"snapshot_budgets": sorted(snapshot_budgets)} if snapshot_budgets else {}),
                     **({"restarts": restarts, "restart_rule": RESTART_RULE} if restarts else {}))
    saved = load_training_state(checkpoint_path, signature) if checkpoint_path else None
    if saved:  # resume after the last finished epoch
        run = RunState.from_saved(saved)
        lstm, meta_optimizer = trainer.fresh(run.attempt)
        lstm.load_state_dict(saved["lstm"])
        meta_optimizer.load_state_dict(saved["meta_optimizer"])
        first_epoch = saved["epoch"] + 1
    else:
        first_epoch = 1
        lstm, meta_optimizer, run = trainer.start_attempt(0, [])
    bar = tqdm(total=(epochs + run.attempt) * trajectories_per_epoch,
               initial=(first_epoch - 1 + run.attempt) * trajectories_per_epoch,
               desc=f"meta-train {family.describe()}", disable=not progress)
    epoch = first_epoch
    while epoch <= epochs:
        score = trainer.epoch(lstm, meta_optimizer, run, epoch, bar)
        bar.set_postfix(val=f"{score:.4g}", best=f"{run.best_score:.4g}",
                        **({"attempt": run.attempt} if run.attempt else {}))
        if epoch == 1 and run.attempt < restarts and is_stuck(score, run.reference):
            bar.total += trajectories_per_epoch
            bar.refresh()
            lstm, meta_optimizer, run = trainer.start_attempt(run.attempt + 1, run.rows)
            run.save(checkpoint_path, signature, 0, lstm, meta_optimizer)
            continue  # epoch stays 1: the new LSTM starts its own first epoch, on its own trajectories
        if epoch * trajectories_per_epoch in snapshot_budgets:
            run.snapshot(epoch * trajectories_per_epoch)
        run.save(checkpoint_path, signature, epoch, lstm, meta_optimizer)
        epoch += 1
    bar.close()
    return MetaTrainResult(trainer.restored(run.best_state), lstm, pd.DataFrame(run.rows), run.best_epoch,
                           first_epoch - 1, {b: trainer.restored(w["state"]) for b, w in run.within.items()},
                           run.attempt)


def search_meta_lr(family, lrs=(0.001, 0.003, 0.01, 0.03), **kwargs) -> tuple[float, pd.DataFrame]:
    """Meta-train once per meta-learning rate (same seed, same budget) and pick the best by validation.

    ``kwargs`` go to :func:`meta_train` (keep ``epochs`` small: this is a scouting run). Returns the
    chosen rate and a table (meta_lr, best_val_loss_sum, best_epoch).
    """
    if len(lrs) == 0:
        raise ValueError("lrs=() must contain at least one meta-learning rate")
    rows = []
    for lr in lrs:
        check_positive_float("meta_lr (in lrs)", lr)
        result = meta_train(family, meta_lr=lr, **kwargs)
        rows.append(dict(meta_lr=lr, best_val_loss_sum=float(result.history.val_loss_sum.min()),
                         best_epoch=result.best_epoch))
    table = pd.DataFrame(rows)
    return float(table.meta_lr[table.best_val_loss_sum.idxmin()]), table
