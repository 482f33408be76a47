"""Long horizons: the MNIST-trained LSTM run ten times past its training horizon, in steps and in seconds.

For MNIST and the transfer data sets, the LSTM (meta-trained on 100-step trajectories) and the four
baselines (tuned as in the chapters, on ``tune_steps`` steps) run for ``steps`` steps (1,000 in the
full profile). Each optimizer's cost per step (one task: gradient + update, as a user would train one
network) is measured in the same run, so losses can be drawn against wall-clock seconds.
``advantage_table`` says, window by window, whether the LSTM's advantage holds.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l2l_core.tasks.data import DatasetNotFoundError
from l2l_core.evaluation.evaluate import LSTM_LABEL, Comparison, compare_together, run_optimizer, with_meta_seed
from l2l_core.experiments.setups import mnist_lstms
from l2l_core.experiments.settings import Settings, mlp_family, setting_label
from l2l_core.io import write_frame, write_json
from l2l_core.runtime.memory import peak_rss_mb
from l2l_core.experiments.reuse import tuned_baselines
from l2l_core.evaluation.stats import crossed_mean_ci

DATASETS = ("mnist", "fashion_mnist", "emnist_letters", "cifar10", "svhn")
WINDOWS = ((0, 100), (100, 200), (200, 500), (500, 1000))


def seconds_per_step(optimizer, family, steps: int = 100, repeats: int = 3, seed: int = 0) -> float:
    """Median wall time of one optimizee step (loss, gradient and update) on one test task."""
    tasks = family.sample(1, seed, split="test")
    run = lambda k: run_optimizer(optimizer, tasks, k)
    run(3)  # warm-up: allocations, data on device
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _window_values(frame: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    """Mean loss over steps lo..hi-1 per (seed, task) (rows) and optimizer (columns; one column 'LSTM#k' per
    meta-training seed k of the LSTM), diverged tasks left out."""
    part = with_meta_seed(frame[(frame.step >= lo) & (frame.step < hi) & ~frame.diverged])
    column = part.optimizer.where(part.optimizer != LSTM_LABEL, LSTM_LABEL + "#" + part.meta_seed.astype(str))
    return part.assign(column=column).groupby(["seed", "task", "column"]).loss.mean().unstack("column").dropna()


def _verdict(lo: float, hi: float) -> str:
    return "LSTM better" if hi < 0 else "baseline better" if lo > 0 else "no significant difference"


def _compare_row(values: pd.DataFrame, **info) -> dict:
    """LSTM (every meta-training seed) minus the best baseline on the same tasks; interval over seeds and tasks."""
    lstm = values[[c for c in values.columns if c.startswith(LSTM_LABEL + "#")]].to_numpy().T  # (seeds, tasks)
    baselines = [c for c in values.columns if not c.startswith(LSTM_LABEL + "#")]
    best = min(baselines, key=lambda b: values[b].mean())
    c = crossed_mean_ci(lstm - values[best].to_numpy()[None, :])
    return {**info, "LSTM": lstm.mean(), "best baseline": best, "baseline": values[best].mean(),
            "difference": c.mean, "difference lo": c.lo, "difference hi": c.hi, "verdict": _verdict(c.lo, c.hi),
            "n": lstm.size}


def advantage_table(frame: pd.DataFrame, costs: pd.DataFrame, windows=WINDOWS) -> pd.DataFrame:
    """Per setting: LSTM vs the best baseline of each step window (mean loss over the window), and at
    equal wall-clock budgets (the LSTM's time for 100 and for all steps; a baseline gets as many steps
    as fit, capped at the run's length, and is scored on the mean loss of its last 10 steps).

    Differences are paired over (seed, task), LSTM minus baseline: negative means the LSTM is better.
    """
    rows = []
    for setting, data in frame.groupby("setting", sort=False):
        last = int(data.step.max())
        for lo, hi in windows:
            if lo >= last:
                continue
            hi = min(hi, last + 1)
            rows.append(_compare_row(_window_values(data, lo, hi), setting=setting, comparison=f"steps {lo}-{hi - 1}"))
        cost = costs[costs.setting == setting].set_index("optimizer")["seconds_per_step"]
        for k in sorted({min(100, last), last}):
            budget = k * cost[LSTM_LABEL]
            per_optimizer, capped = [], []
            for name in cost.index:
                reach = min(last, int(budget / cost[name]))
                if budget / cost[name] > last:
                    capped.append(name)
                v = _window_values(data[data.optimizer == name], max(0, reach - 9), reach + 1)
                per_optimizer.append(v)
            values = pd.concat(per_optimizer, axis=1).dropna()
            note = f" (capped at step {last}: {', '.join(capped)})" if capped else ""
            rows.append(_compare_row(values, setting=setting,
                                     comparison=f"same wall-clock as the LSTM's {k} steps ({budget:.2f} s){note}"))
    return pd.DataFrame(rows)


def breaking_points(table: pd.DataFrame) -> dict[str, str]:
    """For each setting, one computed sentence: in which step windows the LSTM is ahead, and where a baseline wins."""
    notes = {}
    for setting, rows in table[table.comparison.str.startswith("steps")].groupby("setting", sort=False):
        windows = rows.comparison.str.removeprefix("steps ").tolist()
        verdicts = rows.verdict.tolist()
        ahead = [w for w, v in zip(windows, verdicts) if v == "LSTM better"]
        behind = [i for i, v in enumerate(verdicts) if v == "baseline better"]
        text = f"ahead of every baseline in steps {', '.join(ahead)}" if ahead else "never significantly ahead"
        if not behind:
            text += f"; no baseline is significantly better up to step {windows[-1].split('-')[-1]}"
        elif all(v == "baseline better" for v in verdicts[behind[0]:]):
            text += (f"; {rows['best baseline'].iloc[behind[0]]} is significantly better from steps "
                     f"{windows[behind[0]]} on")
        else:
            text += f"; a baseline is significantly better in steps {', '.join(windows[i] for i in behind)}"
        notes[setting] = f"**{setting}**: the LSTM is {text}."
    return notes


@dataclass
class HorizonResult:
    """Long-horizon losses, per-step costs, the advantage table and its computed sentences."""

    settings: Settings
    frame: pd.DataFrame
    costs: pd.DataFrame
    table: pd.DataFrame
    notes: dict
    skipped: dict = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class LongRuns:
    """Every optimizer's losses over the long horizon on each data set, its seconds per step, the data sets not run."""

    frame: pd.DataFrame
    costs: pd.DataFrame
    skipped: dict
    seconds: float


def long_runs(s: Settings, lstms: dict, datasets=DATASETS, progress: bool = True) -> LongRuns:
    """Run ``lstms`` (meta_seed -> LSTM) and the tuned baselines for ``s.steps`` steps on each data set, and time
    one step of each."""
    start = time.perf_counter()
    plans, costs, skipped = {}, [], {}
    for dataset in datasets:
        family = mlp_family(s, dataset=dataset)
        label = setting_label(family)
        try:
            family.data
        except DatasetNotFoundError as err:
            skipped[label] = f"not run: {err}"
            continue
        tuned = tuned_baselines(s, family)  # the chapters' rates where they tuned this family
        optimizers = {LSTM_LABEL: lstms, **{r.baseline.label: r.baseline for r in tuned.values()}}
        plans[label] = Comparison.plan(optimizers, family, seeds=s.seeds, progress=progress, n_tasks=s.n_tasks,
                                       steps=s.steps)
    frames = compare_together(list(plans.values()))  # every data set's jobs as one batch
    for label, plan in plans.items():  # timed after the jobs, so that no job runs beside the timing
        costs += [{"setting": label, "optimizer": name, "lr": getattr(opt, "lr", math.nan),
                   "seconds_per_step": seconds_per_step(next(iter(opt.values())) if isinstance(opt, dict) else opt,
                                                        plan.job.family, steps=min(100, s.steps))}
                  for name, opt in plan.job.optimizers.items()]
    frames = [f.assign(setting=label) for f, label in zip(frames, plans)]
    costs = pd.DataFrame(costs)
    sgd = costs[costs.optimizer == "SGD"].set_index("setting").seconds_per_step
    costs["relative to SGD"] = costs.seconds_per_step / costs.setting.map(sgd)
    return LongRuns(pd.concat(frames, ignore_index=True), costs, skipped, time.perf_counter() - start)


def horizon_result(s: Settings, runs: LongRuns) -> HorizonResult:
    """Where the LSTM's advantage holds and where it breaks, by step and by wall-clock; written to the results."""
    out = Path(s.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(s.to_dict(), out / "settings.json")
    table = advantage_table(runs.frame, runs.costs)
    notes = breaking_points(table)
    write_frame(runs.frame, out / "losses.parquet")
    write_frame(runs.costs, out / "costs.csv")
    write_frame(table, out / "advantage.csv")
    result = HorizonResult(s, runs.frame, runs.costs, table, notes, runs.skipped, runs.seconds, peak_rss_mb())
    write_json({"seconds": result.seconds, "peak_rss_mb": result.peak_rss_mb, "skipped": runs.skipped,
                "notes": notes}, out / "run.json")
    return result


def run_long_horizons(s: Settings, datasets=DATASETS, progress: bool = True) -> HorizonResult:
    """The chapter in one call (the notebook shows the steps): chapter 02's LSTMs, their long runs, the verdicts."""
    return horizon_result(s, long_runs(s, mnist_lstms(s, progress=progress).lstms, datasets, progress))


def table_text(table: pd.DataFrame) -> pd.DataFrame:
    """The advantage table for display: values rounded, the difference as 'mean [lo, hi]'."""
    out = table[["setting", "comparison", "LSTM", "best baseline", "baseline"]].copy()
    out["LSTM"] = out["LSTM"].map("{:.4g}".format)
    out["baseline"] = out["baseline"].map("{:.4g}".format)
    out["LSTM - baseline [95% CI]"] = [f"{d:.3g} [{lo:.3g}, {hi:.3g}]" for d, lo, hi in
                                       zip(table["difference"], table["difference lo"], table["difference hi"])]
    out["verdict"] = table["verdict"]
    return out


def notes_markdown(result: HorizonResult):
    """The computed sentences, one bullet per data set, plus the data sets that were not run."""
    from IPython.display import Markdown

    lines = [f"- {n}" for n in result.notes.values()] + [f"- **{k}**: {v}" for k, v in result.skipped.items()]
    return Markdown("\n".join(lines))


def glue_horizons(result: HorizonResult) -> None:
    """Glue the advantage table and the computed sentences for the book."""
    from myst_nb import glue

    glue("horizons.table", table_text(result.table).style.hide(axis="index"), display=False)
    glue("horizons.steps", str(result.settings.steps), display=False)
    glue("horizons.runs", str(len(result.settings.meta_seeds) * len(result.settings.seeds) * result.settings.n_tasks),
         display=False)
