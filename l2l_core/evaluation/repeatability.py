"""How often an independent run of the book's size would repeat each verdict, and the seeds that would make it.

A run's verdict on a claim is decided by its distance estimate d_hat against its crossed standard error SE:
holds when d_hat > c SE, does not hold when d_hat < g - c SE (g: the fails threshold's gap, the smallest effect of
interest of a sign claim, else 0), inconclusive otherwise, c the critical value at Holm's strictest level alpha/m
(conservative: a claim later in Holm's order faces a milder one). An independent run (other meta-training seeds,
the same held-out tasks) draws d_hat ~ N(D, SD_S^2), SD_S^2 = sigma_seed^2/S + sigma_error^2/(S I). With SE held at
its expectation sqrt(sigma_seed^2/S + sigma_task^2/I + 2 sigma_error^2/(S I)) this is the power formula

    P(holds) = 1 - Phi((c SE - D) / SD_S),   P(does not hold) = Phi((min(g - c SE, c SE) - D) / SD_S),

the rest inconclusive (``se_sampling=False``). At the book's five seeds it is far off (``tests/test_repeatability.py``:
for a tie at 5 seeds x 20 tasks it gives "does not hold" 0.08 against a simulated 0.17): SE and c are estimated from
S - 1 = 4 seed degrees of freedom and vary between runs as much as d_hat does. So by default the formula is averaged over their sampling distribution:
MS_seeds ~ (sigma_e^2 + I sigma_s^2) chi2_{S-1}/(S-1) and MS_tasks, given the tasks, a scaled noncentral chi2 (taken
as Patnaik's scaled chi2 with its mean and variance), independent of each other and of d_hat under normality; SE^2 =
(MS_seeds + MS_tasks)/(S I) and c at Satterthwaite's df of each draw, exactly as the run computes them; the average is
a product quadrature over both mean squares' quantiles (``QUADRATURE`` points each). ``R`` is the probability of the
verdict the run gave, at D = d_hat; its interval takes D over the seed-cluster interval (the components are treated
as known). The seed rule finds the smallest S at which a claim at least ``NEAR`` from its threshold repeats its
correct decided verdict with probability ``TARGET``; the task term does not shrink with seeds, so where no S reaches
it the rule says how many tasks it needs as well.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from l2l_core.evaluation.claims import ALPHA, NEAR
from l2l_core.evaluation.effects import Components

TARGET = 0.9       # repeatability the seed rule asks of every claim at least NEAR from its threshold
MAX_SEEDS = 1000   # the seed rule searches up to this many seeds
TASK_FACTORS = (1, 2, 4, 8)  # the task counts it tries, as multiples of the book's
QUADRATURE = 48    # quantile points per mean square in the average over the run's SE (error < 0.002: the tests)


def critical_value(family_size: int, df: float, alpha: float = ALPHA) -> float:
    """One-sided critical value at Holm's strictest level alpha / m (t with ``df``)."""
    return float(stats.t.ppf(1 - alpha / max(family_size, 1), max(df, 1.0)))


def outcome_probabilities(distance: float, components: Components, fail_gap: float, family_size: int,
                          n_seeds: int | None = None, n_tasks: int | None = None, *,
                          se_sampling: bool = True) -> dict[str, float]:
    """P(holds), P(does not hold), P(inconclusive) of an independent run of ``n_seeds`` x ``n_tasks`` (default:
    the measured table's size) whose claim lies ``distance`` from its threshold: the power formula averaged over the
    run's own SE and critical value (``se_sampling``, the default), or with SE at its expectation (the module)."""
    S, I = n_seeds or components.n_seeds, n_tasks or components.n_tasks
    sd = components.rerun_sd(S, I)
    if se_sampling and S > 1 and I > 1:
        se, c = _se_draws(components, S, I, family_size)
    else:
        se = np.array([components.crossed_se(S, I)])
        c = np.array([critical_value(family_size, components.crossed_df(S, I))])
    holds_edge, fails_edge = c * se, np.minimum(fail_gap - c * se, c * se)
    if sd > 0:
        p_holds = float(stats.norm.sf((holds_edge - distance) / sd).mean())
        p_fails = float(stats.norm.cdf((fails_edge - distance) / sd).mean())
    else:
        p_holds, p_fails = float((distance > holds_edge).mean()), float((distance < fails_edge).mean())
    return {"holds": p_holds, "does not hold": p_fails, "inconclusive": max(0.0, 1.0 - p_holds - p_fails)}


def _se_draws(components: Components, S: int, I: int, family_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The quadrature's nodes (equally weighted): the crossed SE and critical value a run of S x I would compute, over
    the quantiles of its two mean squares (the module)."""
    u = (np.arange(QUADRATURE) + 0.5) / QUADRATURE
    s_e, s_s, s_t = components.error, components.seed, components.task
    ms_seeds = (s_e + I * s_s) * stats.chi2.ppf(u, S - 1) / (S - 1)
    mean_t, var_t = s_e + S * s_t, 2 * (s_e ** 2 + 2 * s_e * S * s_t) / (I - 1)  # given the tasks
    if var_t > 0 and mean_t > 0:
        h = 2 * mean_t ** 2 / var_t
        ms_tasks = mean_t * stats.chi2.ppf(u, h) / h
    else:
        ms_tasks = np.full(QUADRATURE, mean_t)
    ms_s, ms_t = (a.reshape(-1) for a in np.meshgrid(ms_seeds, ms_tasks, indexing="ij"))
    total = ms_s + ms_t
    denom = ms_s ** 2 / (S - 1) + ms_t ** 2 / (I - 1)
    df = np.where(denom > 0, total ** 2 / np.where(denom > 0, denom, 1.0), float(S * I - 1))
    c = stats.t.ppf(1 - ALPHA / max(family_size, 1), np.maximum(df, 1.0))
    return np.sqrt(np.maximum(total, 0.0) / (S * I)), c


def repeatability(verdict: str, distance: float, components: Components, fail_gap: float, family_size: int,
                  distance_range: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(R, lowest, highest): the probability that an independent run of this size gives ``verdict``, at the
    estimated distance and over ``distance_range`` (default: the distance alone)."""
    r = outcome_probabilities(distance, components, fail_gap, family_size)[verdict]
    if distance_range is None:
        return r, r, r
    grid = np.linspace(distance_range[0], distance_range[1], 41)
    values = [outcome_probabilities(float(d), components, fail_gap, family_size)[verdict] for d in grid]
    return r, min(values + [r]), max(values + [r])


def seeds_needed(distance: float, components: Components, fail_gap: float, family_size: int,
                 target: float = TARGET) -> tuple[float, int]:
    """(S, I): the fewest seeds (and, where the book's tasks cannot do it at any S, the fewest of the tasks
    ``TASK_FACTORS`` tries) at which the decided verdict that ``distance`` implies repeats with ``target``; S is
    NaN when the claim is nearer than ``NEAR`` (no decided verdict is owed) or no tried size reaches it."""
    if abs(distance) < NEAR:
        return math.nan, components.n_tasks
    wanted = "holds" if distance > 0 else "does not hold"
    for factor in TASK_FACTORS:
        tasks = components.n_tasks * factor
        if outcome_probabilities(distance, components, fail_gap, family_size, MAX_SEEDS, tasks)[wanted] < target:
            continue
        lo, hi = 2, MAX_SEEDS  # P(wanted) grows with S: bisect for the first S that reaches the target
        while lo < hi:
            mid = (lo + hi) // 2
            if outcome_probabilities(distance, components, fail_gap, family_size, mid, tasks)[wanted] >= target:
                hi = mid
            else:
                lo = mid + 1
        return float(lo), tasks
    return math.nan, components.n_tasks * TASK_FACTORS[-1]


def components_of(row) -> Components:
    """The binding effect's variance components stored in a claims-table row."""
    return Components(row["sigma_seed"] ** 2, row["sigma_task"] ** 2, row["sigma_error"] ** 2, int(row["n_seeds"]),
                      int(row["n_tasks"]))


def add_repeatability(table: pd.DataFrame, seed_cap: dict | None = None) -> pd.DataFrame:
    """``table`` (``claims.holm_verdicts``'s) with, per tested claim, ``R`` (with ``R_lo``, ``R_hi``) for its Holm
    verdict, ``agreement`` (the chance two independent runs agree, sum of P^2), ``seeds_needed`` and
    ``tasks_needed`` (the seed rule), and ``capped`` (the rule asks for more seeds than the run had: the compute
    cap binds). ``seed_cap`` maps an experiment to its cap (default: the seeds it ran)."""
    out = table.copy()
    cols = {k: [] for k in ("R", "R_lo", "R_hi", "agreement", "seeds_needed", "tasks_needed", "capped")}
    for _, row in out.iterrows():
        verdict = row.get("verdict_holm", row["verdict"])
        if verdict == "not run" or not np.isfinite(row.get("sigma_seed", np.nan)):
            for k, v in zip(cols, (math.nan,) * 6 + (False,)):
                cols[k].append(v)
            continue
        comp, m = components_of(row), int(row.get("family_size", 1))
        r, lo, hi = repeatability(verdict, row["distance"], comp, row["fail_gap"], m, (row["seed_lo"], row["seed_hi"]))
        probs = outcome_probabilities(row["distance"], comp, row["fail_gap"], m)
        s_needed, tasks = seeds_needed(row["distance"], comp, row["fail_gap"], m)
        cap = (seed_cap or {}).get(row["experiment"], int(row["n_seeds"]))
        for k, v in zip(cols, (r, lo, hi, sum(p * p for p in probs.values()), s_needed, tasks,
                               bool(np.isfinite(s_needed) and (s_needed > cap or tasks > comp.n_tasks))
                               or (abs(row["distance"]) >= NEAR and not np.isfinite(s_needed)))):
            cols[k].append(v)
    for k, v in cols.items():
        out[k] = v
    return out
