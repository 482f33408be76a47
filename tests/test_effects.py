"""Effects: REML components against a numerical optimisation of the restricted likelihood, interval coverage with
known components, the exact sign-flip test against enumeration, the relative effect against its direct formula, and
the contrast test against a brute-force one for a competitor that has its own seeds."""
import itertools
import math

import numpy as np
import pytest
from scipy import optimize, stats

from l2l_core.evaluation.effects import (contrast_p, reml_ci, reml_components, relative_effect, seed_cluster_ci,
                                         sign_flip_p)
from l2l_core.evaluation.stats import crossed_mean_ci

REL = 1e-12  # float64 arithmetic on O(1) numbers, a few hundred operations


def restricted_loglik(x: np.ndarray, seed: float, task: float, error: float) -> float:
    """The REML log-likelihood of the crossed model written from its definition (no balanced-design shortcut):
    y ~ N(1 mu, V), V = seed Z_s Z_s' + task Z_t Z_t' + error I, l = -1/2 (log|V| + log|1'V^-1 1| + r'V^-1 r)."""
    S, I = x.shape
    y = x.reshape(-1)
    zs = np.kron(np.eye(S), np.ones((I, 1)))
    zt = np.kron(np.ones((S, 1)), np.eye(I))
    V = seed * zs @ zs.T + task * zt @ zt.T + error * np.eye(S * I)
    chol = np.linalg.cholesky(V)
    vinv_y, vinv_1 = (np.linalg.solve(V, v) for v in (y, np.ones(S * I)))
    mu = vinv_1 @ y / vinv_1.sum()
    r = y - mu
    return -0.5 * (2 * np.log(np.diag(chol)).sum() + math.log(vinv_1.sum()) + r @ np.linalg.solve(V, r))


def numerical_reml(x: np.ndarray, starts: int = 4, seed: int = 0) -> tuple[np.ndarray, float]:
    """The best of ``starts`` bounded L-BFGS-B maximisations of ``restricted_loglik`` (components >= 0), on the
    table's own scale."""
    scale = float(x.var())
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        res = optimize.minimize(lambda p: -restricted_loglik(x, *(p * scale)), rng.uniform(0.1, 2.0, 3),
                                method="L-BFGS-B", bounds=[(0, None), (0, None), (1e-8, None)],
                                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    return best.x * scale, -best.fun


def anova(x):
    """The ANOVA (method of moments) components: (MS_s - MS_e) / I, (MS_t - MS_e) / S, MS_e; may be negative."""
    S, I = x.shape
    g, r, c = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_s = I * ((r - g) ** 2).sum() / (S - 1)
    ms_t = S * ((c - g) ** 2).sum() / (I - 1)
    ms_e = ((x - r[:, None] - c[None, :] + g) ** 2).sum() / ((S - 1) * (I - 1))
    return (ms_s - ms_e) / I, (ms_t - ms_e) / S, ms_e


def table(S, I, seed_sd, task_sd, error_sd, seed=0, flatten=()):
    """A crossed table with those components; ``flatten`` removes the seeds' and/or the tasks' spread of the means,
    so that their ANOVA estimate is negative."""
    rng = np.random.default_rng(seed)
    x = (seed_sd * rng.standard_normal((S, 1)) + task_sd * rng.standard_normal((1, I))
         + error_sd * rng.standard_normal((S, I)) + 3.0)
    if "seeds" in flatten:
        x = x - 0.9 * (x.mean(axis=1, keepdims=True) - x.mean())
    if "tasks" in flatten:
        x = x - 0.9 * (x.mean(axis=0, keepdims=True) - x.mean())
    return x


@pytest.mark.parametrize("flatten", [(), ("seeds",), ("tasks",), ("seeds", "tasks")])
def test_reml_components_maximise_the_restricted_likelihood(flatten):
    x = table(5, 8, 0.6, 0.8, 0.5, seed=len(flatten) + 3 * ("tasks" in flatten), flatten=flatten)
    comp = reml_components(x)
    found = np.array([comp.seed, comp.task, comp.error])
    numeric, best = numerical_reml(x)
    ll = restricted_loglik(x, *found)
    # the closed form is the exact optimum: no start of the optimiser beats it beyond float64 rounding of ll
    assert ll >= best - 1e-9 * (1 + abs(best))
    # the optimum is unique (the likelihood is concave in 1 / lambda) and L-BFGS-B stops within sqrt(ftol) = 3e-8 of
    # it relative to the table's variance; 1e-5 leaves room for its stopping rule on the bounds
    np.testing.assert_allclose(found, numeric, rtol=0, atol=1e-5 * x.var())
    moments = np.array(anova(x))
    for k, name in enumerate(("seeds", "tasks")):
        if name in flatten:
            assert moments[k] < 0 and found[k] == 0.0  # ANOVA goes negative; REML pins it at 0
    if not flatten:  # inside the bounds REML is the method of moments (pinning a term pools its mean square)
        assert (moments > 0).all() and found == pytest.approx(moments, rel=1e-9)
    else:
        assert found[2] < moments[2]  # pooled with a mean square below MS_e (the one ANOVA makes negative)


def test_reml_interval_is_the_fits_variance_of_the_mean_on_its_own_df():
    x = table(5, 8, 0.6, 0.8, 0.5, seed=1)
    comp, ci = reml_components(x), reml_ci(x)
    S, I = x.shape
    assert ci.se ** 2 == pytest.approx(comp.seed / S + comp.task / I + comp.error / (S * I), rel=REL)
    lam_s, lam_t, lam_e = comp.error + I * comp.seed, comp.error + S * comp.task, comp.error
    df = (lam_s + lam_t - lam_e) ** 2 / (lam_s ** 2 / (S - 1) + lam_t ** 2 / (I - 1) + lam_e ** 2 / ((S - 1) * (I - 1)))
    assert ci.df == pytest.approx(df, rel=REL)
    pooled = table(5, 8, 0.6, 0.8, 0.5, seed=1, flatten=("seeds",))  # sigma_seed = 0: SE^2 = MS_tasks / (S I)
    comp, ci = reml_components(pooled), reml_ci(pooled)
    assert comp.seed == 0.0 and ci.df == pytest.approx(I - 1, rel=REL)
    assert ci.se ** 2 == pytest.approx((comp.error + S * comp.task) / (S * I), rel=REL)


# (seeds, tasks, sigma_seed, sigma_task, sigma_error)
COVERAGE_CASES = [(5, 20, 1.0, 1.0, 1.0), (5, 20, 1.0, 0.2, 1.0), (5, 20, 0.2, 1.0, 1.0), (10, 5, 1.0, 1.0, 1.0)]
DRAWS = 1500


def test_intervals_cover_at_their_level_with_known_components():
    """Crossed and REML: the population mean (seeds and tasks drawn anew); seed-cluster: the mean over these tasks
    (the tasks drawn once per table and kept, seeds anew), which it covers exactly (a t interval of i.i.d. normal
    seed means). Tolerance: the binomial SE of a simulated coverage, at a z that lets all comparisons of this test fail
    by sampling alone with probability 1e-3. Satterthwaite's df is an approximation; at 5 seeds it costs under a point
    of coverage (0.944 in 200,000 draws of the first case), within this tolerance, and more at 2-3 seeds."""
    checks = 3 * len(COVERAGE_CASES) + 1
    z = stats.norm.isf(1e-3 / (2 * checks))
    tol = z * math.sqrt(0.95 * 0.05 / DRAWS)
    rng = np.random.default_rng(11)
    for S, I, ss, st, se in COVERAGE_CASES:
        hits = np.zeros(3)
        for _ in range(DRAWS):
            tasks = st * rng.standard_normal(I)
            x = ss * rng.standard_normal((S, 1)) + tasks + se * rng.standard_normal((S, I))
            crossed, reml, seed = crossed_mean_ci(x), reml_ci(x), seed_cluster_ci(x)
            hits += (crossed.lo <= 0 <= crossed.hi, reml.lo <= 0 <= reml.hi, seed.lo <= tasks.mean() <= seed.hi)
        for name, share in zip(("crossed", "reml", "seed-cluster"), hits / DRAWS):
            assert abs(share - 0.95) <= tol, (S, I, ss, st, se, name, share)
    # with no seed or task effect the crossed interval counts sigma_e^2 twice: it over-covers, beyond the tolerance
    hits = 0
    for _ in range(DRAWS):
        ci = crossed_mean_ci(rng.standard_normal((5, 20)))
        hits += ci.lo <= 0 <= ci.hi
    assert hits / DRAWS > 0.95 + tol


def brute_force_sign_flip(means, below):
    """Every one of the 2^S sign patterns, written out: the share whose signed sum is at least as extreme."""
    observed = sum(means)
    count = 0
    for signs in itertools.product((1, -1), repeat=len(means)):
        total = sum(s * m for s, m in zip(signs, means))
        count += total <= observed if below else total >= observed
    return count / 2 ** len(means)


@pytest.mark.parametrize("S", [1, 4, 5, 6, 9])
def test_sign_flip_p_is_the_exact_enumeration(S):
    rng = np.random.default_rng(S)
    means = list(rng.normal(0.3, 1.0, S))  # continuous draws: no sum ties another
    for below in (True, False):
        assert sign_flip_p(means, below) == brute_force_sign_flip(means, below)
    assert sign_flip_p(np.abs(means), below=False) == 2.0 ** -S  # its smallest p
    assert (2.0 ** -S < 0.025) == (S >= 6)  # five seeds cannot reject at 0.025 without normality


def test_sign_flip_p_refuses_an_enumeration_too_large():
    with pytest.raises(ValueError, match="S <= 16"):
        sign_flip_p(np.ones(17), below=True)


@pytest.mark.parametrize("margin", [0.0, 0.025, 0.1])
def test_relative_effect_is_the_direct_ratio_of_means(margin):
    rng = np.random.default_rng(2)
    B = rng.uniform(0.5, 1.5, 12)
    L = B * 0.85 + 0.05 * rng.standard_normal((4, 12))
    e = relative_effect(L, B, 1.0, margin, True, "Adam")
    direct = float((L - (1 - margin) * B[None, :]).mean() / B.mean())  # E[L - (1 - m) B] / E[B]
    assert -e.distance == pytest.approx(direct, rel=REL, abs=REL)  # the distance to "theta < -m" is minus it
    assert e.theta == pytest.approx(float((L - B).mean() / B.mean()), rel=REL) and e.threshold == -margin
    assert e.crossed.mean == pytest.approx(e.theta, rel=REL)  # the linearised table is centred on theta
    assert e.per_seed == pytest.approx([float((L[s] - B).mean() / B.mean()) for s in range(4)], rel=REL)
    # higher is better (accuracy): theta = E[B - L] / E[B]; "worse" (theta > 0) is stated above the threshold
    acc = relative_effect(L, B, -1.0, 0.0, False, "Adam")
    assert acc.theta == pytest.approx(float((B - L).mean() / B.mean()), rel=REL)
    assert acc.distance == pytest.approx(acc.theta, rel=REL)
    # a competitor with its own seeds (S, I): the ratio of the two tables' means
    Bs = B[None, :] * rng.uniform(0.9, 1.1, (4, 1))
    seeded = relative_effect(L, Bs, 1.0, margin, True)
    assert -seeded.distance == pytest.approx(float((L - (1 - margin) * Bs).mean() / Bs.mean()), rel=REL, abs=REL)


def brute_force_contrast_p(L, B, sign, offset, below):
    """The crossed one-sided t test of mean(sign (L - B) + offset B) < 0 (or > 0) written out with loops."""
    S, I = len(L), len(L[0])
    c = [[sign * (L[s][i] - B[s][i]) + offset * B[s][i] for i in range(I)] for s in range(S)]
    grand = sum(map(sum, c)) / (S * I)
    rows = [sum(r) / I for r in c]
    cols = [sum(c[s][i] for s in range(S)) / S for i in range(I)]
    ms_s = I * sum((r - grand) ** 2 for r in rows) / (S - 1)
    ms_t = S * sum((v - grand) ** 2 for v in cols) / (I - 1)
    se = math.sqrt((ms_s + ms_t) / (S * I))
    df = (ms_s + ms_t) ** 2 / (ms_s ** 2 / (S - 1) + ms_t ** 2 / (I - 1))
    return float(stats.t.cdf(grand / se, df) if below else stats.t.sf(grand / se, df))


def test_contrast_p_against_a_brute_force_test_for_a_seeded_competitor():
    # tests/test_claims.py checks per-task baselines through check_claim; here the competitor has its own seeds
    # (an LSTM trained elsewhere, one per meta seed), so B varies over seeds and tasks and is paired by seed
    rng = np.random.default_rng(9)
    L = rng.uniform(0.8, 1.2, (5, 10))
    B = L * 1.08 + 0.03 * rng.standard_normal((5, 10))
    for sign, offset, below in ((1.0, 0.0, True), (1.0, 0.025, False), (1.0, 0.1, True), (-1.0, -0.05, True)):
        expected = brute_force_contrast_p(L.tolist(), B.tolist(), sign, offset, below)
        assert contrast_p(L, B, sign, offset, below) == pytest.approx(expected, rel=1e-9)  # sums in another order
