"""Expected wall time of a profile on c cores: its jobs, from the profile tables, times measured per-unit costs.

The jobs are those ``make reproduce`` submits (``jobs.run_jobs``): each LSTM's meta-training (its trajectories
and its per-epoch validations) and each evaluation (one per (setting, LSTM), one per setting's set of baselines).
Baseline tuning runs in the notebook's own process. Notebooks run one after another, as ``make reproduce`` runs
them; a notebook's jobs are placed longest first on ``cores // threads`` workers (list scheduling), so its time
is that makespan plus its tuning. The unit costs come from ``make bench`` on the machine in question; an MLP
job's cost scales with its number of parameters (coordinates), relative to MNIST 784-20-10.
"""
from __future__ import annotations

import heapq

import pandas as pd

from l2l_core.optimizers.baselines import LR_GRID
from l2l_core.tasks.data import dataset_shape
from l2l_core.tasks.families import MLPFamily, MLPShape, QuadraticFamily
from l2l_core.experiments.errata import defect_arms as errata_arms, errata_budget
from l2l_core.experiments.setups import SIDE_ARM_META_SEEDS, architectures_setup, cifar_svhn_setup, mnist_like_setup, relu_setup
from l2l_core.experiments.settings import mlp_family, settings

MNIST_DIM = MLPShape((784, 20, 10)).dim  # the unit of an MLP job's size
# per-unit costs in seconds, as make bench measures them (keys of ``rates``):
RATE_KEYS = ("mlp_trajectory",       # one MNIST 784-20-10 trajectory of 100 steps, unroll 20 (one task)
             "mlp_lstm_step",        # one task-step of LSTM evaluation on MNIST 784-20-10
             "mlp_baselines_step",   # one task-step of the four baselines run together
             "quadratic_trajectory",  # one quadratic task's trajectory of 100 steps
             "quadratic_lstm_step")   # one task-step of LSTM evaluation on a quadratic


def _size(family) -> float:
    """A job's size relative to MNIST 784-20-10 (its number of coordinates); a quadratic's is 1."""
    if not isinstance(family, MLPFamily):
        return 1.0
    inputs, classes = dataset_shape(family.dataset)
    return MLPShape((inputs, *family.hidden, classes)).dim / MNIST_DIM


def _meta_job(t, trajectories: int, size: float, kind: str, rates: dict) -> float:
    """Seconds of one LSTM's meta-training: its trajectories and its validation after every epoch."""
    epochs = trajectories // t.trajectories_per_epoch
    traj = rates[f"{kind}_trajectory"] * size * trajectories * t.tasks_per_trajectory
    return traj + rates[f"{kind}_lstm_step"] * size * (epochs + 1) * t.n_val_tasks * t.train_steps


def _evaluations(families, n_lstms: int, e, lstm_step: float, baselines_step: float,
                 tune: bool = True) -> tuple[list, float]:
    """Evaluation jobs of ``families`` (each: ``n_lstms`` LSTMs, one baseline set) and the serial tuning time,
    from the seconds per task-step of an LSTM and of the four baselines together (for MNIST 784-20-10)."""
    jobs, tuning = [], 0.0
    for family in families:
        size, steps = _size(family), e.n_tasks * e.steps * len(e.seeds)
        jobs += [lstm_step * size * steps] * n_lstms
        jobs.append(baselines_step * size * steps)
        if tune:  # every baseline's whole grid: as costly as the baseline set once per grid rate
            tuning += baselines_step * size * len(LR_GRID) * e.tune_tasks * e.tune_steps
    return jobs, tuning


def job_inventory(profile: str, rates: dict) -> pd.DataFrame:
    """One row per job (notebook, what, seconds) of ``profile``, plus one 'tuning' row per notebook (serial)."""
    missing = set(RATE_KEYS) - set(rates)
    if missing:
        raise ValueError(f"rates lacks {sorted(missing)}; give every one of {RATE_KEYS} (seconds, from make bench)")
    rows = []

    def add(notebook, what, seconds):
        rows.extend(dict(notebook=notebook, what=what, seconds=float(x)) for x in seconds)

    q = settings("01_quadratic", "quadratic", profile)
    trajectories = q.meta_epochs * q.trajectories_per_epoch
    add("01_quadratic", "meta-train", [_meta_job(q, trajectories, 1.0, "quadratic", rates)] * len(q.meta_seeds))
    # no separate bench number for quadratic baselines: a quarter of the LSTM's step (four cheap optimizers)
    jobs, tuning = _evaluations([QuadraticFamily()], len(q.meta_seeds), q, rates["quadratic_lstm_step"],
                                rates["quadratic_lstm_step"] / 4)
    add("01_quadratic", "evaluate", jobs)
    add("01_quadratic", "tuning", [tuning])

    m = settings("02_mnist", "mlp", profile)
    n, trajectories = len(m.meta_seeds), m.meta_epochs * m.trajectories_per_epoch
    add("02_mnist", "meta-train", [_meta_job(m, trajectories, 1.0, "mlp", rates)] * (n + min(n, SIDE_ARM_META_SEEDS)))
    mnist = mlp_family(m)
    for notebook, families, lstms in (("02_mnist", [mnist], n), ("02_mnist", [mnist], min(n, SIDE_ARM_META_SEEDS)),
                                      ("03_architectures", architectures_setup(m)[0], n),
                                      ("04_relu", relu_setup(m)[0], n),
                                      ("05_mnist_like", mnist_like_setup(m)[0], n),
                                      ("06_cifar_svhn", cifar_svhn_setup(m)[0], n)):
        jobs, tuning = _evaluations(families, lstms, m, rates["mlp_lstm_step"], rates["mlp_baselines_step"])
        add(notebook, "evaluate", jobs)
        add(notebook, "tuning", [tuning])

    e = settings("08_errata", "mlp", profile)
    budget = errata_budget(e)  # every arm of defects b-d (errata.arms): one LSTM per seed each
    seeds, families = len(budget["seeds"]), [family for family, _ in errata_arms(e).values()]
    letters = families[0]
    add("08_errata", "meta-train", [_meta_job(e, budget["trajectories"], _size(f), "mlp", rates)
                                    for f in families for _ in budget["seeds"]])
    jobs, _ = _evaluations([letters] * 2 + [mnist] * 3, seeds, m, rates["mlp_lstm_step"], rates["mlp_baselines_step"], tune=False)
    add("08_errata", "evaluate", jobs)
    _, tuning = _evaluations([mnist], 0, m, rates["mlp_lstm_step"], rates["mlp_baselines_step"])  # defect (a): the baselines tuned as SGD
    add("08_errata", "tuning", [tuning])

    long = settings("09_long_horizons", "mlp_long", profile)
    jobs, tuning = _evaluations([mlp_family(long)], len(long.meta_seeds), long, rates["mlp_lstm_step"], rates["mlp_baselines_step"])
    add("09_long_horizons", "evaluate", jobs)
    add("09_long_horizons", "tuning", [tuning])
    return pd.DataFrame(rows)


def makespan(durations, workers: int) -> float:
    """Finish time of ``durations`` placed longest first, each on the worker that frees up first."""
    free = [0.0] * max(1, workers)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + d)  # free is a heap: free[0] is the earliest
    return max(free)


def expected_wall_time(inventory: pd.DataFrame, cores: int, threads_per_job: int = 1) -> pd.DataFrame:
    """Per notebook: its jobs' makespan on ``cores // threads_per_job`` workers plus its serial tuning (seconds)."""
    if cores < threads_per_job:
        raise ValueError(f"cores={cores} must be at least threads_per_job={threads_per_job}")
    workers = cores // threads_per_job
    rows = []
    for notebook, group in inventory.groupby("notebook", sort=False):
        jobs = group[group.what != "tuning"]
        rows.append(dict(notebook=notebook, jobs=len(jobs), longest_job=jobs.seconds.max() if len(jobs) else 0.0,
                         seconds=makespan(jobs.seconds, workers) + group.loc[group.what == "tuning", "seconds"].sum()))
    return pd.DataFrame(rows)


def across_notebooks(inventory: pd.DataFrame, cores: int, threads_per_job: int = 1) -> float:
    """Seconds if jobs were not held back by notebook order, only by what they read: every meta-training first
    (none reads another chapter's results), then every evaluation and tuning (they read the LSTMs)."""
    workers = cores // threads_per_job
    train = inventory.what == "meta-train"
    return makespan(inventory.seconds[train], workers) + makespan(inventory.seconds[~train], workers)


def scaling_table(profile: str, rates: dict, cores=(2, 16, 64), threads_per_job: int = 1) -> pd.DataFrame:
    """Expected wall time (minutes) of ``profile`` on each number of ``cores``: as ``make reproduce`` runs it
    (notebooks in order), its floor on any number of cores (each notebook's longest job, plus tuning: one LSTM's
    meta-training does not split), with jobs scheduled across notebooks (``across_notebooks``), and the bound no
    schedule can beat on these cores: the longer of the longest job and all the work spread evenly over the workers."""
    inventory = job_inventory(profile, rates)
    rows = []
    for c in cores:
        per_notebook = expected_wall_time(inventory, c, threads_per_job)
        rows.append(dict(profile=profile, cores=c, threads_per_job=threads_per_job, workers=c // threads_per_job,
                         minutes=per_notebook.seconds.sum() / 60,
                         floor_minutes=(per_notebook.longest_job.sum()
                                        + inventory.loc[inventory.what == "tuning", "seconds"].sum()) / 60,
                         across_notebooks_minutes=across_notebooks(inventory, c, threads_per_job) / 60,
                         any_schedule_bound_minutes=max(inventory.seconds.max(),
                                                        inventory.seconds.sum() / (c // threads_per_job)) / 60))
    return pd.DataFrame(rows)
