"""Interval and tests for a mean over crossed meta-training seeds and tasks, Holm's correction, and an exact
binomial interval (for rates such as how often meta-training is stuck).

Each LSTM meta-trained from seed s runs on the same held-out tasks i, so a per-run value (a metric, or a
paired difference LSTM - baseline) forms a crossed table ``values[s, i]``. Both seeds and tasks are draws
from larger populations: the model is d_si = mu + a_s + b_i + e_si with random a_s (seed), b_i (task) and
e_si. Treating the S*I values as independent ignores that a bad seed shifts all its I values at once, and
gives intervals far too narrow when seeds differ (tests/test_stats.py shows the under-coverage).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class CrossedCI:
    """Mean with a t-based interval (``lo``, ``hi``), its standard error ``se`` and degrees of freedom ``df``.

    ``df == 0`` marks the degenerate one-value case: nothing can be concluded, both p-values are 1.
    """

    mean: float
    lo: float
    hi: float
    se: float
    df: float

    def _p(self, x: float, below: bool) -> float:
        if self.df == 0:
            return 1.0
        if self.se == 0:
            return 0.0 if (self.mean < x if below else self.mean > x) else 1.0
        t = (self.mean - x) / self.se
        return float(stats.t.cdf(t, self.df) if below else stats.t.sf(t, self.df))

    def p_below(self, x: float) -> float:
        """One-sided p-value of H1: mean < x (H0: mean >= x)."""
        return self._p(float(x), below=True)

    def p_above(self, x: float) -> float:
        """One-sided p-value of H1: mean > x (H0: mean <= x)."""
        return self._p(float(x), below=False)


def crossed_mean_ci(values, confidence: float = 0.95) -> CrossedCI:
    """Mean of ``values[s, i]`` (S seeds x I tasks, every seed on every task) with a t interval.

    SE^2 = (MS_seeds + MS_tasks) / (S*I), with MS_seeds = I*sum_s(rowmean_s - grand)^2/(S-1) and
    MS_tasks = S*sum_i(colmean_i - grand)^2/(I-1); df by Satterthwaite,
    (MS_seeds + MS_tasks)^2 / (MS_seeds^2/(S-1) + MS_tasks^2/(I-1)). Its expectation is
    sigma_a^2/S + sigma_b^2/I + 2*sigma_e^2/(S*I): it over-covers by sigma_e^2/(S*I) compared with the
    unbiased (MS_seeds + MS_tasks - MS_residual)/(S*I), which we do not use because it can go negative.

    Special cases: S == 1 is the ordinary t interval over tasks (df I-1); I == 1 the one over seeds
    (df S-1); S == I == 1 is degenerate (lo = hi = mean, se = 0, df = 0, both p-values 1). When the
    standard error is 0 (all values equal) the interval is the mean and a p-value is 0 when the mean lies
    strictly on the tested side, 1 otherwise.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"values must be a non-empty 2-D array (seeds x tasks), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite; score diverged runs before calling crossed_mean_ci")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1")
    n_seeds, n_tasks = x.shape
    mean = float(x.mean())
    if n_seeds == 1 and n_tasks == 1:
        return CrossedCI(mean, mean, mean, 0.0, 0.0)
    if n_seeds == 1 or n_tasks == 1:
        flat = x.reshape(-1)
        df = float(flat.size - 1)
        se = float(flat.std(ddof=1) / math.sqrt(flat.size))
    else:
        ms_seeds = n_tasks * float(((x.mean(axis=1) - mean) ** 2).sum()) / (n_seeds - 1)
        ms_tasks = n_seeds * float(((x.mean(axis=0) - mean) ** 2).sum()) / (n_tasks - 1)
        se = math.sqrt((ms_seeds + ms_tasks) / (n_seeds * n_tasks))
        denom = ms_seeds ** 2 / (n_seeds - 1) + ms_tasks ** 2 / (n_tasks - 1)
        df = (ms_seeds + ms_tasks) ** 2 / denom if denom > 0 else float(n_seeds * n_tasks - 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if se > 0 else 0.0
    return CrossedCI(mean, mean - half, mean + half, se, df)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order.

    NaN entries stay NaN and do not count in the number of tests m.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def binomial_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval for a probability seen k times in n independent trials: never narrower
    than it should be, which matters at the small n of a measurement such as how often meta-training is stuck."""
    if not (isinstance(n, (int, np.integer)) and n >= 1 and isinstance(k, (int, np.integer)) and 0 <= k <= n):
        raise ValueError(f"k={k!r}, n={n!r}: need integers with 0 <= k <= n and n >= 1")
    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi
