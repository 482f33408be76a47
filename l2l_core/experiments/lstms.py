"""The chapters' LSTMs: one per meta-training seed, meta-trained as jobs (here or on Dask) or reused from its files."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l2l_core.optimizers.checkpoint import load_optimizer, save_optimizer
from l2l_core.io import write_frame
from l2l_core.runtime import jobs
from l2l_core.training.meta_train import last_attempt, meta_train, same_result_with_restarts, unroll_segments

from l2l_core.experiments.settings import Settings

def _digest(*parts) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _same_lstm(saved: dict, wanted: dict, last_attempt: int) -> bool:
    """Whether an LSTM file's metadata ``saved`` (its run ended at ``last_attempt``) is what ``wanted`` trains."""
    if any(saved.get(k) != v for k, v in wanted.items() if k != "training"):
        return False
    ours, theirs = dict(wanted["training"]), dict(saved.get("training") or {})
    caps = theirs.pop("restarts", 0), ours.pop("restarts", 0)
    rules = theirs.pop("restart_rule", None), ours.pop("restart_rule", None)
    if theirs != ours or (last_attempt > 0 and rules[0] != rules[1]):
        return False
    return same_result_with_restarts(caps[0], last_attempt, caps[1])


@dataclass
class TrainedLSTMs:
    """The LSTMs meta-trained from each seed, their meta-training curves, and the ones a smaller budget selects."""

    lstms: dict            # meta_seed -> LSTMOptimizer (best on meta-validation)
    history: pd.DataFrame  # per-epoch rows of every seed, with a meta_seed column
    at_budget: dict = field(default_factory=dict)  # trajectories -> {meta_seed: LSTMOptimizer}


def plan_seeds(family, s: Settings, folder: str | Path, name: str = "lstm", seeds=None, progress: bool = True,
               config=None, schedule=None, trajectories: int | None = None,
               snapshot_budgets=(), owner: str | None = None) -> "SeedPlan":
    """What :func:`train_seeds` does for one LSTM per meta-training seed (``seeds``, default ``s.meta_seeds``) on
    ``family``: which seeds it reuses and which it trains.

    ``folder/<name>-seed<k>.pt`` is reused when it was trained with these settings, else the seed is meta-trained
    (resuming from its training state after a crash) and saved, with its curve in ``history-<name>-seed<k>.csv``.
    ``trajectories`` overrides the budget (a multiple of ``s.trajectories_per_epoch``); ``snapshot_budgets``
    also keeps ``<name>-seed<k>-at<B>.pt``, the LSTM that a run of B trajectories selects (same trajectories).
    ``config`` and ``schedule`` go to ``meta_train`` (the errata chapter's defects; None: the usual ones).
    ``owner`` names the chapter whose folder this is when another chapter reads it: then nothing is trained
    (chapters never write into each other) and missing or differently trained LSTMs raise an error saying what
    to run.
    """
    folder = Path(folder).resolve()  # absolute: a job may run on a worker with another working folder
    epochs = s.meta_epochs if trajectories is None else trajectories // s.trajectories_per_epoch
    training = {**s.training(), "meta_epochs": epochs,
                **({"config": config.to_dict()} if config is not None else {}),
                **({"schedule": schedule.__name__} if schedule is not None else {})}
    seeds = tuple(s.meta_seeds if seeds is None else seeds)
    job = SeedJob(family, s, folder, name, training, config, schedule or unroll_segments, epochs,
                  tuple(snapshot_budgets), progress and jobs.scheduler() == "serial")
    todo = tuple(seed for seed in seeds if not job.done(seed))
    if owner and todo:
        raise FileNotFoundError(
            f"this chapter reads chapter {owner}'s LSTMs from {folder}, but meta-training seeds {list(todo)} are "
            f"missing there or were trained with other settings (profile {s.profile!r}, {s.training()}); run "
            f"notebooks/{owner}.ipynb with the same parameters first (make reproduce runs the chapters in order)")
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
    return SeedPlan(job, seeds, todo)


def train_seeds(*args, **kwargs) -> TrainedLSTMs:
    """The LSTMs that :func:`plan_seeds` (same arguments) plans: its seeds still to train run as jobs
    (:class:`SeedJob`), here or on a Dask cluster when ``L2L_SCHEDULER`` says so; then all are read from their files."""
    return train_together([plan_seeds(*args, **kwargs)])[0]


def train_together(plans: list["SeedPlan"]) -> list[TrainedLSTMs]:
    """The LSTMs of several :class:`SeedPlan` objects, their seeds still to train submitted as one batch of jobs
    (``jobs.run_batches``), so that no worker waits for another set's last seed; the same LSTMs as one by one."""
    jobs.run_batches([(plan.job, plan.todo, f"meta-train {plan.job.name}") for plan in plans])
    return [plan.load() for plan in plans]


@dataclass(frozen=True)
class SeedPlan:
    """One set of LSTMs (:func:`plan_seeds`): its job, all its seeds, and the seeds still to train."""

    job: "SeedJob"
    seeds: tuple
    todo: tuple

    def load(self) -> TrainedLSTMs:
        """Every seed's LSTM, snapshots and curve, read from their files (once its seeds are trained)."""
        device = self.job.s.device
        lstms, histories, at_budget = {}, [], {b: {} for b in self.job.snapshot_budgets}
        for seed in self.seeds:
            path, snapshots, history_path = self.job.paths(seed)
            lstms[seed] = load_optimizer(path, device=device)[0]
            for b, p in snapshots.items():
                at_budget[b][seed] = load_optimizer(p, device=device)[0]
            histories.append(pd.read_csv(history_path))
        return TrainedLSTMs(lstms, pd.concat(histories, ignore_index=True), at_budget)


@dataclass(frozen=True)
class SeedJob:
    """Meta-train one seed's LSTM and write its files (curve, snapshots, then the LSTM last): one job of
    :func:`train_seeds`, picklable so that it can run on a Dask worker (``jobs.run_batches``)."""

    family: object
    s: Settings
    folder: Path
    name: str
    training: dict
    config: object
    schedule: object  # (steps, unroll) -> segments, meta_train's schedule (a module-level function: picklable)
    epochs: int
    snapshot_budgets: tuple
    progress: bool

    def wanted(self, seed: int) -> dict:
        return dict(training=self.training, family=self.family.describe(), meta_seed=seed)

    def paths(self, seed: int):
        """The LSTM's file, its snapshots' files by budget, and its meta-training curve's file."""
        return (self.folder / f"{self.name}-seed{seed}.pt",
                {b: self.folder / f"{self.name}-seed{seed}-at{b}.pt" for b in self.snapshot_budgets},
                self.folder / f"history-{self.name}-seed{seed}.csv")

    def done(self, seed: int) -> bool:
        """Whether this seed's files exist and hold what these settings train (then it is not redone): trained
        with the same settings, or with another restart cap that provably ends in the same LSTM
        (``same_result_with_restarts``, judged by the last attempt in the seed's curve)."""
        path, snapshots, history_path = self.paths(seed)
        files = [path, *snapshots.values()]
        if not (history_path.is_file() and all(p.is_file() for p in files)):
            return False
        ended = last_attempt(pd.read_csv(history_path))
        wanted = self.wanted(seed)
        return all(_same_lstm(load_optimizer(p)[1]["metadata"], wanted, ended) for p in files)

    def __call__(self, seed: int) -> None:
        path, snapshots, history_path = self.paths(seed)
        wanted = self.wanted(seed)
        s = self.s
        result = meta_train(self.family, config=self.config, meta_lr=s.meta_lr, epochs=self.epochs,
                            trajectories_per_epoch=s.trajectories_per_epoch, tasks_per_trajectory=s.tasks_per_trajectory,
                            steps=s.train_steps, unroll=s.unroll, n_val_tasks=s.n_val_tasks, seed=seed,
                            progress=self.progress, schedule=self.schedule,
                            snapshot_budgets=self.snapshot_budgets, restarts=s.restarts,
                            checkpoint_path=self.folder / f"training_state-{_digest(wanted, list(self.snapshot_budgets))}.pt")
        write_frame(result.history.assign(meta_seed=seed), history_path)
        for b, p in snapshots.items():
            save_optimizer(p, result.best_within_budget(b), seed=seed, **wanted, trajectories=b)
        save_optimizer(path, result.best, seed=seed, **wanted, best_epoch=result.best_epoch)
