"""A claim's effect as a signed distance to its threshold on the baseline's scale, with three intervals.

Each LSTM meta-trained from seed s runs on the same held-out tasks i as the baselines. For one named baseline B
and the claim's offset a, the per-run contrast is c_si = sign * (L_si - B_i) + a * B_i (sign +1 when lower is
better), so that "E[c] < 0" is the claim's statement exactly (a margin m enters as a = m, a smallest effect of
interest eps as a = eps): the margin is part of the contrast, not a constant plugged in beside it, and the
contrast's standard error counts the baseline's own task-to-task spread. On the relative scale the effect is
theta = E[sign * (L - B)] / E[B] (a fraction of the baseline's mean; the threshold is -a), estimated by the ratio
of means and given an interval by its linearisation z_si = (sign * (L_si - B_i) - theta_hat * B_i) / mean(B).

Three intervals of one crossed table x[s, i] (seeds x tasks, model x = mu + a_s + b_i + e_si):
- ``crossed``: (MS_seeds + MS_tasks) / (S I), Satterthwaite df (``stats.crossed_mean_ci``): seeds and tasks both
  random, conservative by sigma_e^2 / (S I);
- ``seed_cluster``: the t interval over the S seed means (df S - 1): the spread of a re-run on the same tasks;
- ``reml``: the restricted maximum likelihood fit of the same crossed model (exact for this balanced design: the
  mean squares, pooled where a variance component would be negative), SE^2 = sigma_s^2/S + sigma_t^2/I +
  sigma_e^2/(S I), Satterthwaite df: the cross-check.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from l2l_core.evaluation.stats import CrossedCI, crossed_mean_ci


@dataclass(frozen=True)
class Components:
    """Variance components of a crossed table (REML), and the table's size: what the power formula needs."""

    seed: float
    task: float
    error: float
    n_seeds: int
    n_tasks: int

    def crossed_se(self, n_seeds: int | None = None, n_tasks: int | None = None) -> float:
        """The crossed interval's expected standard error at ``n_seeds`` x ``n_tasks`` (default: this table's)."""
        S, I = n_seeds or self.n_seeds, n_tasks or self.n_tasks
        return math.sqrt(max(self.seed / S + self.task / I + 2 * self.error / (S * I), 0.0))

    def crossed_df(self, n_seeds: int | None = None, n_tasks: int | None = None) -> float:
        """Satterthwaite's df of the crossed interval from the expected mean squares at that size."""
        S, I = n_seeds or self.n_seeds, n_tasks or self.n_tasks
        ms_s, ms_t = self.error + I * self.seed, self.error + S * self.task
        terms = (ms_s ** 2 / (S - 1) if S > 1 else 0.0) + (ms_t ** 2 / (I - 1) if I > 1 else 0.0)
        return (ms_s + ms_t) ** 2 / terms if terms > 0 else float(max(S * I - 1, 1))

    def rerun_sd(self, n_seeds: int | None = None, n_tasks: int | None = None) -> float:
        """How far the mean of an independent run (other seeds, the same tasks) lies from this run's expectation."""
        S, I = n_seeds or self.n_seeds, n_tasks or self.n_tasks
        return math.sqrt(max(self.seed / S + self.error / (S * I), 0.0))


def _mean_squares(x: np.ndarray) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    S, I = x.shape
    grand = x.mean()
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    ss_s = I * float(((rows - grand) ** 2).sum())
    ss_t = S * float(((cols - grand) ** 2).sum())
    ss_e = float(((x - rows[:, None] - cols[None, :] + grand) ** 2).sum())
    return (ss_s, ss_t, ss_e), (S - 1, I - 1, (S - 1) * (I - 1))


def reml_components(values) -> Components:
    """REML variance components of the balanced crossed table ``values[s, i]``.

    The restricted likelihood of this design depends on the data through the three sums of squares only:
    -1/2 sum_k (df_k log lambda_k + SS_k / lambda_k), lambda_seeds = s_e + I s_s, lambda_tasks = s_e + S s_t,
    lambda_error = s_e, with lambda_seeds, lambda_tasks >= lambda_error (components >= 0). Its maximum is the mean
    squares where they respect those bounds, else the pooled mean square of the violating terms; every pooling
    pattern is tried and the feasible one with the largest likelihood is kept (``tests/test_effects.py`` checks
    this against a numerical optimiser).
    """
    x = np.asarray(values, dtype=np.float64)
    lam, _ = _reml_fit(x)
    S, I = x.shape
    lam_s, lam_t, lam_e = lam
    return Components(max(lam_s - lam_e, 0.0) / I, max(lam_t - lam_e, 0.0) / S, lam_e, S, I)


def _reml_fit(x: np.ndarray) -> tuple[list[float], list[tuple[list[int], int]]]:
    """The REML fit of ``reml_components``: (lambda_seeds, lambda_tasks, lambda_error), and its pooling groups, each
    (the terms that share one mean square, that mean square's df)."""
    S, I = x.shape
    if S < 2 or I < 2:
        raise ValueError(f"values has shape {x.shape}; variance components need at least 2 seeds and 2 tasks")
    ss, df = _mean_squares(x)
    best, best_ll = None, -math.inf
    for pool_s, pool_t in itertools.product((False, True), repeat=2):
        groups = [[2] + ([0] if pool_s else []) + ([1] if pool_t else [])]
        groups += [[k] for k in (0, 1) if not (pool_s if k == 0 else pool_t)]
        lam = [0.0, 0.0, 0.0]
        for g in groups:
            d = sum(df[k] for k in g)
            value = sum(ss[k] for k in g) / d if d else 0.0
            for k in g:
                lam[k] = value
        if lam[2] <= 0 and any(df):
            lam = [max(v, 1e-300) for v in lam]
        if lam[0] < lam[2] * (1 - 1e-12) or lam[1] < lam[2] * (1 - 1e-12):
            continue
        ll = -0.5 * sum(df[k] * math.log(lam[k]) + ss[k] / lam[k] for k in range(3) if df[k])
        if ll > best_ll:
            best, best_ll = (lam, [(g, sum(df[k] for k in g)) for g in groups]), ll
    return best


def reml_ci(values, confidence: float = 0.95) -> CrossedCI:
    """Mean of ``values[s, i]`` with the REML fit's standard error and Satterthwaite df (see the module).

    SE^2 = (lambda_s + lambda_t - lambda_e) / (S I), a sum of the fit's independent mean squares: one per pooling
    group, whose coefficient is the sum of its terms' (+1, +1, -1). Satterthwaite's df counts each group once with its
    pooled df: where the seed term is pooled with the error (sigma_seed = 0), SE^2 = lambda_t / (S I) on the tasks'
    df alone, not a sum of three terms that are in fact one estimate."""
    x = np.asarray(values, dtype=np.float64)
    (lam_s, lam_t, lam_e), groups = _reml_fit(x)
    S, I = x.shape
    var = (lam_s + lam_t - lam_e) / (S * I)
    weights = (1.0, 1.0, -1.0)
    lam = (lam_s, lam_t, lam_e)
    terms = sum((sum(weights[k] for k in g) * lam[g[0]]) ** 2 / d for g, d in groups if d)
    df = (lam_s + lam_t - lam_e) ** 2 / terms if terms > 0 else float(S * I - 1)
    return _ci(float(x.mean()), math.sqrt(max(var, 0.0)), df, confidence)


def seed_cluster_ci(values, confidence: float = 0.95) -> CrossedCI:
    """The t interval over the seed means of ``values[s, i]``: what a re-run on the same tasks would scatter by."""
    x = np.asarray(values, dtype=np.float64)
    means = x.mean(axis=1)
    if means.size < 2:
        return CrossedCI(float(x.mean()), float(x.mean()), float(x.mean()), 0.0, 0.0)
    return _ci(float(means.mean()), float(means.std(ddof=1) / math.sqrt(means.size)), float(means.size - 1),
               confidence)


def _ci(mean: float, se: float, df: float, confidence: float) -> CrossedCI:
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if se > 0 and df > 0 else 0.0
    return CrossedCI(mean, mean - half, mean + half, se, df)


def sign_flip_p(seed_means, below: bool) -> float:
    """Exact one-sided sign-flip p-value of H1: the seeds' mean < 0 (``below``) or > 0, from the S seed means
    alone (no normality): the share of the 2^S sign patterns whose mean is at least as extreme. Its minimum is
    2^-S, so it can reject at 0.025 only from S = 6 seeds."""
    m = np.asarray(seed_means, dtype=np.float64).reshape(-1)
    if m.size > 16:
        raise ValueError(f"seed_means has {m.size} values; the exact test enumerates 2^S patterns, S <= 16")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=m.size)))
    flipped = signs @ m
    observed = m.sum()
    extreme = flipped <= observed + 1e-12 * max(1.0, abs(observed)) if below else \
        flipped >= observed - 1e-12 * max(1.0, abs(observed))
    return float(extreme.mean())


@dataclass(frozen=True)
class Effect:
    """One contrast of a claim (a part against one named baseline) on the relative scale.

    ``theta`` is sign * (mean L - mean B) / mean B (negative: the LSTM better), ``threshold`` where the claim's
    statement about it changes (-offset), ``below`` whether the claim says theta < threshold; ``distance`` is the
    signed distance to the threshold, positive on the side the claim states. The intervals are of theta.
    """

    baseline: str
    theta: float
    threshold: float
    below: bool
    crossed: CrossedCI      # of theta (linearised)
    seed_cluster: CrossedCI
    reml: CrossedCI
    components: Components  # of the linearised table, in theta's units
    per_seed: tuple[float, ...]  # each seed's theta on the same tasks

    @property
    def distance(self) -> float:
        return self.threshold - self.theta if self.below else self.theta - self.threshold


def relative_effect(lstm: np.ndarray, baseline: np.ndarray, sign: float, offset: float, below: bool,
                    name: str = "") -> Effect:
    """The ``Effect`` of ``lstm[s, i]`` against ``baseline`` (per task ``[i]``, or per run ``[s, i]`` for a seeded
    competitor) for the statement "theta < -offset" (``below``) or "theta > -offset"."""
    L = np.asarray(lstm, dtype=np.float64)
    B = np.broadcast_to(np.asarray(baseline, dtype=np.float64), L.shape)
    scale = float(B.mean())
    if not scale > 0:
        raise ValueError(f"baseline {name!r} has mean {scale!r}; a relative effect needs a positive baseline mean")
    diff = sign * (L - B)
    theta = float(diff.mean()) / scale
    z = (diff - theta * B) / scale + theta  # linearised: mean theta, the ratio's delta-method spread
    S, I = z.shape
    components = reml_components(z) if S > 1 and I > 1 else Components(0.0, float(z.var(ddof=1)) if z.size > 1 else 0.0,
                                                                      0.0, S, I)
    per_seed = tuple(float(diff[s].mean() / B[s].mean()) for s in range(S))
    return Effect(name, theta, -offset, below, crossed_mean_ci(z), seed_cluster_ci(z),
                  reml_ci(z) if S > 1 and I > 1 else crossed_mean_ci(z), components, per_seed)


def contrast_p(lstm: np.ndarray, baseline: np.ndarray, sign: float, offset: float, below: bool) -> float:
    """One-sided p-value of H1: E[sign * (L - B) + offset * B] < 0 (``below``) or > 0, from the crossed interval of the
    per-run contrast itself (the exact test of the statement; ``Effect`` only displays it)."""
    L = np.asarray(lstm, dtype=np.float64)
    B = np.broadcast_to(np.asarray(baseline, dtype=np.float64), L.shape)
    ci = crossed_mean_ci(sign * (L - B) + offset * B)
    return ci.p_below(0.0) if below else ci.p_above(0.0)
