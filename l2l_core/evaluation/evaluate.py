"""Evaluation: run learned or baseline optimizers on held-out tasks and return tidy DataFrames.

Rows are (optimizer, lr, seed, task, step, loss, diverged[, final_accuracy], meta_seed): ``seed`` draws the
held-out tasks, ``meta_seed`` names the meta-training seed of an LSTM (-1 for baselines). ``summarize`` turns
them into means with 95% confidence intervals over tasks and meta-training seeds.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from l2l_core.optimizers.baselines import Baseline
from l2l_core.checks import NonFiniteWarning, check_choice, check_int, check_seed
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.evaluation.runners import run_baseline, run_baseline_set, run_learned
from l2l_core.tasks.families import SPLITS

LSTM_LABEL = "LSTM"


def optimizer_label(optimizer) -> str:
    """'LSTM' for a learned optimizer, the baseline's display name (SGD, RMSprop, Adam, NAG) otherwise."""
    if isinstance(optimizer, LSTMOptimizer):
        return LSTM_LABEL
    if isinstance(optimizer, Baseline):
        return optimizer.label
    raise TypeError(f"optimizer={optimizer!r} must be an LSTMOptimizer or a Baseline(name, lr)")


def run_optimizer(optimizer, tasks, steps: int):
    """Run a learned optimizer or a Baseline on ``tasks``; returns (losses (steps+1, n), theta_T)."""
    if isinstance(optimizer, LSTMOptimizer):
        return run_learned(optimizer, tasks, steps)
    return run_baseline(optimizer.name, optimizer.lr, tasks, steps)


# Tasks run in chunks: a batch of tasks amortises the optimizee's loss and gradient (one task: 0.65 ms
# per step; in a batch of 20 MNIST tasks about 0.2 ms per task). Measured on the development machine,
# 20 MNIST tasks per chunk beat one per chunk by 13% end to end; the LSTM's buffers take ~330 bytes per
# coordinate (~100 MB for a chunk); without the fused kernels it runs in cache-sized blocks inside a chunk
# (runners.LSTM_BLOCK).
CHUNK_COORDINATES = 20 * 16384


def default_chunk_size(dim: int) -> int:
    """How many tasks of ``dim`` parameters to run at once (at least one)."""
    return max(1, CHUNK_COORDINATES // dim)


def evaluate(optimizer, family, n_tasks: int = 100, steps: int = 200, seed: int = 0, split: str = "test",
             chunk_size: int | None = None, label: str | None = None, progress: bool = False) -> pd.DataFrame:
    """Loss of every task at steps 0..``steps`` (and held-out accuracy at the end for classifiers).

    Numerical guard: a task whose loss becomes NaN/inf is reported (NonFiniteWarning with the task and
    first bad step), flagged ``diverged=True`` with its non-finite losses stored as NaN; ``summarize``,
    the plots and the claim checks leave such tasks out and report how many there were.

    Tasks are run ``chunk_size`` at a time (default for the LSTM: about 330k coordinates, see
    ``CHUNK_COORDINATES``, which bounds memory and keeps its working set in cache; baselines: all at
    once); results do not depend on the chunking. The same seed gives the same tasks and minibatches for every optimizer.
    """
    return evaluate_together({label or optimizer_label(optimizer): optimizer}, family, n_tasks, steps, seed, split,
                             chunk_size, progress)


def evaluate_together(optimizers: dict, family, n_tasks: int = 100, steps: int = 200, seed: int = 0,
                      split: str = "test", chunk_size: int | None = None, progress: bool = False) -> pd.DataFrame:
    """``evaluate`` for each ``{label: optimizer}`` on the same tasks, one frame in the given order. The
    baselines among them run together (``run_baseline_set``: each step's minibatches are gathered once for
    all of them), each learned optimizer on its own.

    A value may also be ``{meta_seed: LSTMOptimizer}``: the LSTMs meta-trained from several seeds, each run on
    the same tasks; their rows carry that ``meta_seed`` (a single LSTM gets meta_seed 0, baselines -1).
    """
    learned = {}  # label -> {meta_seed: lstm}
    for label, optimizer in optimizers.items():
        if isinstance(optimizer, dict):
            if not optimizer or not all(isinstance(v, LSTMOptimizer) for v in optimizer.values()):
                raise TypeError(f"optimizers[{label!r}] must map meta-training seeds to LSTMOptimizers, got {optimizer!r}")
            learned[label] = dict(optimizer)
        else:
            optimizer_label(optimizer)  # refuses anything that is neither
            if isinstance(optimizer, LSTMOptimizer):
                learned[label] = {0: optimizer}
    check_int("n_tasks", n_tasks)
    check_int("steps", steps)
    check_seed("seed", seed)
    check_choice("split", split, SPLITS)
    tasks = family.sample(n_tasks, seed, split=split)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)
    runs = {}  # (label, meta_seed) -> (losses per chunk, accuracies per chunk)

    def record(key, part, loss, theta):
        runs.setdefault(key, ([], []))
        runs[key][0].append(loss.cpu())
        acc = part.accuracy(theta)
        runs[key][1].append(None if acc is None else acc.cpu())

    for label, seeded in learned.items():
        chunk = chunk_size or default_chunk_size(tasks.dim)
        for meta_seed, lstm in seeded.items():
            desc = f"evaluate {label}" + (f" (meta-seed {meta_seed})" if len(seeded) > 1 else "")
            for start in tqdm(range(0, n_tasks, chunk), desc=desc, disable=not progress):
                part = tasks.subset(start, min(start + chunk, n_tasks))
                record((label, meta_seed), part, *run_learned(lstm, part, steps))
    baselines = {label: b for label, b in optimizers.items() if isinstance(b, Baseline)}
    if baselines:  # cheap per coordinate: all tasks at once amortises the per-step overhead
        chunk = chunk_size or n_tasks
        desc = f"evaluate {', '.join(baselines)}"
        for start in tqdm(range(0, n_tasks, chunk), desc=desc, disable=not progress):
            part = tasks.subset(start, min(start + chunk, n_tasks))
            losses, thetas = run_baseline_set([(b.name, b.lr) for b in baselines.values()], part, steps)
            for k, label in enumerate(baselines):
                record((label, -1), part, losses[k], thetas[k])
    frames = []
    for label, optimizer in optimizers.items():
        keys = [(label, m) for m in learned[label]] if label in learned else [(label, -1)]
        for key in keys:
            frames.append(_tidy(label, optimizer, seed, *runs[key], n_tasks, steps).assign(meta_seed=key[1]))
    return pd.concat(frames, ignore_index=True)


def _tidy(name: str, optimizer, seed: int, losses: list, accuracies: list, n_tasks: int, steps: int) -> pd.DataFrame:
    """One optimizer's rows (see ``evaluate``) from its per-chunk losses (steps+1, chunk) and accuracies."""
    loss = torch.cat(losses, dim=1).numpy().astype(np.float64)  # (steps + 1, n_tasks)
    finite = np.isfinite(loss)
    diverged = ~finite.all(0)
    if diverged.any():
        first = {int(i): int(np.argmax(~finite[:, i])) for i in np.flatnonzero(diverged)}
        warnings.warn(f"{name} diverged (non-finite loss) on {len(first)} of {n_tasks} tasks (seed {seed}); "
                      f"task: first bad step = {first}. Those tasks are marked diverged=True, their non-finite "
                      "losses stored as NaN, and summaries/plots leave them out and count them.",
                      NonFiniteWarning, stacklevel=3)
        loss = np.where(finite, loss, np.nan)
    frame = pd.DataFrame({
        "optimizer": name,
        "lr": optimizer.lr if isinstance(optimizer, Baseline) else math.nan,
        "seed": seed,
        "task": np.tile(np.arange(n_tasks), steps + 1),
        "step": np.repeat(np.arange(steps + 1), n_tasks),
        "loss": loss.reshape(-1),
        "diverged": np.tile(diverged, steps + 1),
    })
    if accuracies[0] is not None:
        frame["final_accuracy"] = np.tile(torch.cat(accuracies).numpy().astype(np.float64), steps + 1)
    return frame.sort_values(["task", "step"], kind="stable").reset_index(drop=True)


def compare(optimizers: dict, family, seeds=(0,), progress: bool = False, **kwargs) -> pd.DataFrame:
    """Evaluate each ``{label: optimizer}`` (an optimizer, or ``{meta_seed: LSTM}``) on the same tasks for
    every evaluation seed; one tidy frame, row for row what ``evaluate_together`` gives seed after seed.

    Each (evaluation seed, LSTM) and each evaluation seed's set of baselines is one job (``jobs.run_batches``):
    here, or on a Dask cluster when ``L2L_SCHEDULER`` says so, with the same numbers either way."""
    return compare_together([Comparison.plan(optimizers, family, seeds, progress, **kwargs)])[0]


def compare_together(comparisons: list["Comparison"]) -> list[pd.DataFrame]:
    """The frames of several :class:`Comparison` objects (each what ``compare`` gives), their jobs submitted as one
    batch so that no worker waits for another comparison's last job."""
    from l2l_core.runtime import jobs

    results = jobs.run_batches([(c.job, c.items, f"evaluate {c.job.family.describe()}") for c in comparisons])
    return [c.assemble(frames) for c, frames in zip(comparisons, results)]


@dataclass(frozen=True)
class Comparison:
    """One ``compare`` call's jobs (:class:`EvaluationJob` and its items) and how their frames make its frame."""

    job: "EvaluationJob"
    seeds: tuple
    items: tuple

    @classmethod
    def plan(cls, optimizers: dict, family, seeds=(0,), progress: bool = False, **kwargs) -> "Comparison":
        """The jobs of ``compare(optimizers, family, seeds, progress, **kwargs)``; bad input is refused here."""
        from l2l_core.runtime import jobs

        for optimizer in optimizers.values():  # refuse bad input here, not on a worker
            if not isinstance(optimizer, dict):
                optimizer_label(optimizer)
        items = []
        for seed in seeds:
            check_seed("seed (in seeds)", seed)
            items += [(seed, label, m) for label, o in optimizers.items() if not isinstance(o, Baseline)
                      for m in _meta_seeds(o)]
            if any(isinstance(o, Baseline) for o in optimizers.values()):
                items.append((seed, BASELINES_JOB, -1))
        job = EvaluationJob(optimizers, family, {**kwargs, "progress": progress and jobs.scheduler() == "serial"})
        return cls(job, tuple(seeds), tuple(items))

    def assemble(self, results: list) -> pd.DataFrame:
        """The tidy frame from the jobs' frames (``results``, in order of ``items``): seed by seed, optimizer by
        optimizer as given."""
        frames = dict(zip(self.items, results))
        ordered = []
        for seed in self.seeds:
            for label, o in self.job.optimizers.items():
                if isinstance(o, Baseline):
                    part = frames[(seed, BASELINES_JOB, -1)]
                    ordered.append(part[part["optimizer"] == label])
                else:
                    ordered += [frames[(seed, label, m)] for m in _meta_seeds(o)]
        return pd.concat(ordered, ignore_index=True)


def _meta_seeds(optimizer) -> list:
    """The meta-training seeds of ``{meta_seed: LSTM}``; a single optimizer runs as meta_seed 0."""
    return list(optimizer) if isinstance(optimizer, dict) else [0]


BASELINES_JOB = "baselines"  # the label of the job that runs an evaluation seed's baselines together


@dataclass(frozen=True)
class EvaluationJob:
    """One job of :func:`compare`: item (evaluation seed, LSTM label, meta_seed) -> that LSTM's frame, or
    (evaluation seed, ``BASELINES_JOB``, -1) -> the frame of all baselines run together. Picklable."""

    optimizers: dict
    family: object
    kwargs: dict

    def __call__(self, item) -> pd.DataFrame:
        seed, label, meta_seed = item
        if label == BASELINES_JOB:
            chosen = {name: o for name, o in self.optimizers.items() if isinstance(o, Baseline)}
        else:
            o = self.optimizers[label]
            chosen = {label: {meta_seed: o[meta_seed]} if isinstance(o, dict) else o}
        return evaluate_together(chosen, self.family, seed=seed, **self.kwargs)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t-based confidence interval (low, high) of a sample; degenerate for n < 2 (the one-seed case
    of ``stats.crossed_mean_ci``)."""
    from l2l_core.evaluation.stats import crossed_mean_ci

    c = crossed_mean_ci(np.asarray(values, dtype=np.float64).reshape(1, -1), confidence)
    return c.mean, c.lo, c.hi


def with_meta_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Frames of one LSTM (older files) have no meta_seed (or NaN there): the LSTM's rows get 0, the others -1."""
    default = np.where(frame["optimizer"] == LSTM_LABEL, 0, -1)
    if "meta_seed" not in frame:
        return frame.assign(meta_seed=default)
    if frame["meta_seed"].isna().any():
        return frame.assign(meta_seed=frame["meta_seed"].fillna(pd.Series(default, index=frame.index)).astype(int))
    return frame


def _seed_task_matrix(values: pd.Series) -> np.ndarray:
    """(meta_seed, task) values -> an S x I matrix (tasks = (seed, task) pairs); tasks with a hole are dropped."""
    return values.unstack(["seed", "task"]).dropna(axis=1).to_numpy(dtype=np.float64)


def summarize(frame: pd.DataFrame, at_steps=(100, 200), sum_steps: int = 100) -> pd.DataFrame:
    """Per optimizer: loss at ``at_steps``, loss summed over steps 0..sum_steps-1 (the thesis' metric) and
    final accuracy, each as mean with a 95% CI. For LSTMs from several meta-training seeds the interval covers
    seeds and tasks (``stats.crossed_mean_ci``), for a baseline the tasks. Steps beyond the run are left out;
    diverged runs are left out of these statistics and counted in ``diverged``."""
    from l2l_core.evaluation.stats import crossed_mean_ci

    frame = with_meta_seed(frame)
    keys = ["meta_seed", "seed", "task"]

    def ci(values: pd.Series):
        c = crossed_mean_ci(_seed_task_matrix(values))
        return c.mean, c.lo, c.hi

    rows = []
    for name, group in frame.groupby("optimizer", sort=False):
        row = {"optimizer": name, "lr": group["lr"].iloc[0], "meta_seeds": group["meta_seed"].nunique()
               if name.startswith(LSTM_LABEL) else 0}
        if "diverged" in group:
            row["diverged"] = int(group.loc[group.diverged, keys].drop_duplicates().shape[0])
            group = group[~group.diverged]
            if group.empty:
                rows.append(row)
                continue
        for k in at_steps:
            if k <= group["step"].max():
                row[f"loss@{k}"], row[f"loss@{k} lo"], row[f"loss@{k} hi"] = ci(
                    group[group.step == k].set_index(keys)["loss"])
        if sum_steps <= group["step"].max():
            row[f"sum@{sum_steps}"], row[f"sum@{sum_steps} lo"], row[f"sum@{sum_steps} hi"] = ci(
                group[group.step < sum_steps].groupby(keys)["loss"].sum())
        if "final_accuracy" in group:
            row["accuracy"], row["accuracy lo"], row["accuracy hi"] = ci(group.groupby(keys)["final_accuracy"].first())
        rows.append(row)
    return pd.DataFrame(rows)
