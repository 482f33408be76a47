"""Fair learning-rate tuning: every baseline tuned *as itself* on held-out meta-validation tasks.

(The thesis code tuned all four as plain SGD; ``errata`` reproduces that from these tunings.)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pandas as pd
import torch

from l2l_core.optimizers.baselines import BASELINES, LR_GRID, Baseline, baseline_label
from l2l_core.checks import check_choice, check_int, check_positive_float, check_seed
from l2l_core.evaluation.runners import run_baselines


@dataclass(frozen=True)
class TuningResult:
    """The chosen rate and the whole grid (lr, loss_sum: mean over tasks of summed losses)."""

    name: str
    lr: float
    table: pd.DataFrame
    tuned_as: str | None = None  # set only by the reproduced thesis defect: the optimizer whose runs chose lr

    @property
    def baseline(self) -> Baseline:
        return Baseline(self.name, self.lr)


def _next_rate(lr: float, up: bool) -> float:
    """The neighbour of ``lr`` on the half-decade grid (..., 0.1, 0.3, 1, 3, 10, ...)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    three = round(lr / 10 ** exponent) == 3
    factor = (10 / 3 if three else 3) if up else (1 / 3 if three else 0.3)
    return float(f"{lr * factor:.3g}")


MAX_WIDENING = 6  # at most this many rates are added beyond an edge of the grid


def tune_learning_rate(name: str, family, n_tasks: int = 20, steps: int = 100, seed: int = 0,
                       grid: tuple[float, ...] = LR_GRID, tuned_as: str | None = None,
                       widen: bool = True) -> TuningResult:
    """Pick the rate with the smallest mean summed loss (steps 0..T-1) on meta-validation tasks.

    A rate at an edge of ``grid`` is no tuned rate: with ``widen`` the grid is extended past that edge, one
    half-decade at a time (at most ``MAX_WIDENING`` rates), until the best rate is interior; the table holds every
    rate tried, in decreasing order (the final grid). Rates whose runs diverge (non-finite loss) are never chosen.
    ``tuned_as`` picks the rate with another optimizer's runs and hands it to ``name`` (the errata chapter's
    defect (a) uses it; every other caller tunes each optimizer as itself).
    """
    check_choice("optimizer", name, BASELINES)
    if tuned_as is not None:
        check_choice("tuned_as", tuned_as, BASELINES)
    check_int("n_tasks", n_tasks)
    check_int("steps", steps)
    check_seed("seed", seed)
    if len(grid) == 0:
        raise ValueError("grid=() must contain at least one learning rate")
    for lr in grid:
        check_positive_float("lr (in grid)", lr)
    tasks = family.sample(n_tasks, seed, split="meta_val")
    runner = tuned_as or name
    scores: dict[float, float] = {}

    def score(rates):
        losses, _ = run_baselines(runner, list(rates), tasks, steps)
        sums = losses[:, :steps, :].sum(1)  # (n_lrs, n_tasks)
        finite = torch.isfinite(sums).all(1)
        scores.update({lr: (float(sums[k].mean()) if finite[k] else math.inf) for k, lr in enumerate(rates)})

    score(sorted(set(grid), reverse=True))
    for _ in range(MAX_WIDENING if widen else 0):
        rates = sorted(scores, reverse=True)
        best = min(rates, key=lambda lr: scores[lr])
        if not math.isfinite(scores[best]) or best not in (rates[0], rates[-1]) or len(rates) == 1:
            break
        score([_next_rate(best, up=best == rates[0])])
    rates = sorted(scores, reverse=True)
    table = pd.DataFrame({"optimizer": baseline_label(name), "lr": rates, "loss_sum": [scores[r] for r in rates]})
    if tuned_as is not None:
        table["tuned_as"] = baseline_label(tuned_as)
    if not any(math.isfinite(v) for v in scores.values()):
        raise RuntimeError(f"every learning rate in grid={tuple(rates)} diverged for optimizer={runner!r}")
    best = min(rates, key=lambda lr: scores[lr])
    if widen and best in (rates[0], rates[-1]) and len(rates) > 1:
        warnings.warn(f"{baseline_label(name)}: the best rate {best:g} is still at the edge of the grid after "
                      f"widening it to {rates[-1]:g}..{rates[0]:g}", stacklevel=2)
    return TuningResult(name, best, table, tuned_as)


def tune_all(family, names=tuple(BASELINES), **kwargs) -> dict[str, TuningResult]:
    """Tune every baseline in ``names`` on the same validation tasks, each as itself; the memory the stacked runs
    freed is handed back to the OS (a notebook's kernel tunes, then waits on its workers)."""
    from l2l_core.runtime.memory import release_freed_memory

    tuned = {name: tune_learning_rate(name, family, **kwargs) for name in names}
    release_freed_memory()
    return tuned


def tuning_from_table(table: pd.DataFrame) -> dict[str, TuningResult]:
    """TuningResults back from a tuning table as the experiments write it (columns optimizer, lr, loss_sum,
    chosen: one family's grids)."""
    out = {}
    for name in BASELINES:
        rows = table[table.optimizer == baseline_label(name)]
        if rows.empty:
            continue
        chosen = rows[rows.chosen.astype(bool)]
        if len(chosen) != 1:
            raise ValueError(f"tuning table for {baseline_label(name)} marks {len(chosen)} rates as chosen, not one")
        out[name] = TuningResult(name, float(chosen.lr.iloc[0]),
                                 rows[["optimizer", "lr", "loss_sum"]].reset_index(drop=True))
    return out
