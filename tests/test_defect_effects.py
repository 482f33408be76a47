"""A defect's effect as the paired contrast of its two arms (with the defect - fixed), with Holm across the errata
table, on synthetic arms that share meta-training seeds and held-out tasks."""
import math

import numpy as np
import pandas as pd
import pytest

from l2l_core.evaluation.claims import ALPHA, NEAR, Claim, Part, claim_data
from l2l_core.evaluation.defect_effects import OUTCOMES, defect_effect, holm_effects
from l2l_core.evaluation.stats import crossed_mean_ci
from test_claims import frame_from  # tests/ is on sys.path (rootdir conftest, no package)

BETTER = Claim("x", "c", "t", "s", [Part("better")], metric="loss@2")
CHANGES, WITHIN, INCONCLUSIVE = OUTCOMES


def arms(shift, n_seeds=5, n_tasks=20, noise=0.005, seed=0, claim=BETTER):
    """(with defect, fixed) ClaimData of one claim: the fixed arm's LSTMs 10% ahead of Adam with a seed effect and
    noise; the defect's arm is the same draws (seed effects, tasks) times (1 + ``shift``) plus its own ``noise``."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.8, 1.2, n_tasks)
    fixed = level * 0.9 + 0.02 * rng.standard_normal((n_seeds, 1)) + 0.01 * rng.standard_normal((n_seeds, n_tasks))
    defect = fixed * (1 + shift) + noise * rng.standard_normal((n_seeds, n_tasks))
    return tuple(claim_data(frame_from(lstm, {"Adam": level}), claim) for lstm in (defect, fixed)), level


def test_the_defects_effect_is_the_per_run_difference_of_distances():
    (with_defect, fixed), level = arms(0.03)
    row = defect_effect(with_defect, fixed)
    # "better" against Adam: distance_si = -(L_si - B_i) / mean(B) (offset 0), the fixed arm's scale
    delta = -(with_defect.lstm - fixed.lstm) / level.mean()
    ci = crossed_mean_ci(delta)
    assert row["binding"] == "Adam"
    assert (row["delta"], row["delta_lo"], row["delta_hi"], row["delta_se"], row["delta_df"]) == pytest.approx(
        (ci.mean, ci.lo, ci.hi, ci.se, ci.df), rel=1e-12)
    assert row["p_effect"] == pytest.approx(2 * min(ci.p_below(0.0), ci.p_above(0.0)), rel=1e-12)
    assert row["p_equivalent"] == pytest.approx(max(ci.p_below(NEAR), ci.p_above(-NEAR)), rel=1e-12)


def test_a_shift_is_detected_even_where_both_arms_give_the_same_verdict():
    (with_defect, fixed), _ = arms(0.03)  # 3% worse with the defect: the LSTM still clearly ahead in both arms
    assert with_defect.assess().distance > 0.05 and fixed.assess().distance > 0.05
    table = holm_effects(pd.DataFrame([defect_effect(with_defect, fixed)]))
    assert table["effect"].iloc[0] == CHANGES and table["delta"].iloc[0] < 0  # it moves the LSTM toward the threshold


def test_no_shift_is_within_near_with_enough_data_and_inconclusive_with_little():
    (with_defect, fixed), _ = arms(0.0)
    enough = holm_effects(pd.DataFrame([defect_effect(with_defect, fixed)]))
    assert enough["effect"].iloc[0] == WITHIN == f"within ±{NEAR:.1%}"
    (with_defect, fixed), _ = arms(0.0, n_seeds=2, n_tasks=3, noise=0.1, seed=1)
    little = holm_effects(pd.DataFrame([defect_effect(with_defect, fixed)]))
    assert little["effect"].iloc[0] == INCONCLUSIVE
    assert little["delta_hi"].iloc[0] - little["delta_lo"].iloc[0] > 2 * NEAR  # the interval is wider than the band


def hand_holm(p):
    """Holm's step-down, written out: sort, multiply the k-th smallest by (m - k), carry the running maximum, cap at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda k: p[k])
    out, running = [0.0] * m, 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[k]))
        out[k] = running
    return out


def test_holm_runs_across_the_errata_table():
    rows = []
    for k, shift in enumerate((0.0, 0.005, 0.01, 0.015, 0.03, 0.0)):
        (with_defect, fixed), _ = arms(shift, n_seeds=4, n_tasks=8, noise=0.02, seed=10 + k)
        rows.append(defect_effect(with_defect, fixed))
    rows.append({"p_effect": math.nan, "p_equivalent": math.nan})  # a row that did not run: not counted in m
    table = holm_effects(pd.DataFrame(rows))
    tested = table.iloc[:-1]
    assert list(tested["p_effect_holm"]) == pytest.approx(hand_holm(list(tested["p_effect"])), rel=1e-12)
    assert list(tested["p_equivalent_holm"]) == pytest.approx(hand_holm(list(tested["p_equivalent"])), rel=1e-12)
    expected = [CHANGES if pe < 2 * ALPHA else WITHIN if pq < ALPHA else INCONCLUSIVE
                for pe, pq in zip(tested["p_effect_holm"], tested["p_equivalent_holm"])]
    assert list(tested["effect"]) == expected and table["effect"].iloc[-1] == "not run"
    # Holm binds: the 1.5% shift changes the claim tested alone (p about 0.02), not across the table of six
    alone = [CHANGES if pe < 2 * ALPHA else WITHIN if pq < ALPHA else INCONCLUSIVE
             for pe, pq in zip(tested["p_effect"], tested["p_equivalent"])]
    assert alone[3] == CHANGES and expected[3] == INCONCLUSIVE and expected[4] == CHANGES


def test_arms_of_other_claims_seeds_or_tasks_are_refused():
    (with_defect, fixed), _ = arms(0.0)
    other, _ = arms(0.0, n_tasks=10)
    with pytest.raises(ValueError, match="share tasks"):
        defect_effect(other[0], fixed)
    wide = Claim("x", "other", "t", "s", [Part("wide_margin")], metric="loss@2")
    (wide_arm, _), _ = arms(0.0, claim=wide)
    with pytest.raises(ValueError, match="the arms differ"):
        defect_effect(wide_arm, fixed)
