import math

import numpy as np
import pytest
from scipy import stats

from l2l_core.evaluation.stats import crossed_mean_ci, holm

REL = 1e-12  # float64 arithmetic


def test_one_seed_is_the_ordinary_t_interval_over_tasks():
    x = np.random.default_rng(1).normal(3.0, 2.0, 17)
    ci = crossed_mean_ci(x[None, :])
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (ci.mean, ci.lo, ci.hi, ci.df) == pytest.approx((x.mean(), lo, hi, 16), rel=REL)
    assert ci.p_below(3.5) == pytest.approx(stats.ttest_1samp(x, 3.5, alternative="less").pvalue, rel=REL)
    assert ci.p_above(3.5) == pytest.approx(stats.ttest_1samp(x, 3.5, alternative="greater").pvalue, rel=REL)
    one_task = crossed_mean_ci(x[:, None])  # I == 1: the same interval, over seeds
    assert (one_task.lo, one_task.hi) == pytest.approx((lo, hi), rel=REL)


def test_interval_and_one_sided_tests_agree():
    x = np.random.default_rng(2).normal(0.0, 1.0, (4, 9)) + np.arange(4)[:, None]
    ci = crossed_mean_ci(x)
    assert ci.p_below(ci.hi) == pytest.approx(0.025, rel=REL)
    assert ci.p_above(ci.lo) == pytest.approx(0.025, rel=REL)


def test_crossed_standard_error_follows_the_two_way_anova_formula():
    x = np.random.default_rng(3).normal(size=(3, 5))
    grand = x.mean()
    ms_s = 5 * ((x.mean(1) - grand) ** 2).sum() / 2
    ms_t = 3 * ((x.mean(0) - grand) ** 2).sum() / 4
    ci = crossed_mean_ci(x)
    assert ci.se == pytest.approx(math.sqrt((ms_s + ms_t) / 15), rel=REL)
    assert ci.df == pytest.approx((ms_s + ms_t) ** 2 / (ms_s ** 2 / 2 + ms_t ** 2 / 4), rel=REL)


def _coverage(sigma_a, n=400, S=5, I=20, mu=1.0, seed=0):
    rng = np.random.default_rng(seed)
    crossed = naive = 0
    for _ in range(n):
        x = mu + sigma_a * rng.normal(size=(S, 1)) + 0.5 * rng.normal(size=(1, I)) + 0.5 * rng.normal(size=(S, I))
        ci = crossed_mean_ci(x)
        crossed += ci.lo <= mu <= ci.hi
        flat = x.reshape(-1)
        lo, hi = stats.t.interval(0.95, flat.size - 1, loc=flat.mean(), scale=stats.sem(flat))
        naive += lo <= mu <= hi
    return crossed / n, naive / n


def test_crossed_interval_covers_and_the_naive_one_does_not_when_seeds_differ():
    floor = 0.95 - 3 * math.sqrt(0.95 * 0.05 / 400)  # three binomial sd below nominal
    for sigma_a in (0.0, 1.0):
        crossed, naive = _coverage(sigma_a)
        assert crossed >= floor, (sigma_a, crossed)
    assert naive < 0.9  # with sigma_a = 1 pooling all S*I values as independent under-covers badly


def test_degenerate_and_constant_cases_are_explicit():
    one = crossed_mean_ci([[2.0]])
    assert (one.lo, one.hi, one.se, one.df) == (2.0, 2.0, 0.0, 0.0)
    assert one.p_below(5.0) == one.p_above(-5.0) == 1.0
    flat = crossed_mean_ci(np.full((3, 4), 2.0))
    assert (flat.lo, flat.hi, flat.se) == (2.0, 2.0, 0.0)
    assert (flat.p_below(2.5), flat.p_below(2.0), flat.p_above(1.0), flat.p_above(2.0)) == (0.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        crossed_mean_ci([[1.0, np.nan]])
    with pytest.raises(ValueError, match="2-D"):
        crossed_mean_ci([1.0, 2.0])


def test_holm_adjusts_step_down_and_skips_nan():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=REL)
    got = holm([0.01, np.nan, 0.04, 0.03, 0.005, np.nan])
    assert np.isnan(got[[1, 5]]).all()
    np.testing.assert_allclose(got[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02], rtol=REL)
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    assert np.isnan(holm([np.nan])).all()


def test_binomial_ci_is_the_exact_clopper_pearson_interval():
    from l2l_core.evaluation.stats import binomial_ci

    # closed forms at the ends: k = 0 -> upper 1 - (alpha/2)^(1/n); k = n -> lower (alpha/2)^(1/n)
    assert binomial_ci(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12))
    assert binomial_ci(10, 10) == (pytest.approx(0.025 ** (1 / 10), rel=1e-12), 1.0)
    # inside: the interval's ends are where the binomial tail probabilities equal alpha/2
    lo, hi = binomial_ci(4, 20)
    assert stats.binom.sf(3, 20, lo) == pytest.approx(0.025, rel=1e-9)
    assert stats.binom.cdf(4, 20, hi) == pytest.approx(0.025, rel=1e-9)
    with pytest.raises(ValueError, match="k=5, n=4"):
        binomial_ci(5, 4)
