import json
import math

import numpy as np
import scipy.stats
import pandas as pd
import pytest
from scipy import stats

from l2l_core.evaluation.claims import (COLUMNS, MARGINS, SESOI, Claim, Part, check_claim, check_claims, holm_verdicts, not_run,
                             per_task_metric)
from l2l_core.evaluation.evaluate import mean_ci
from l2l_core.evaluation.stats import crossed_mean_ci

REL = 1e-12  # float64 arithmetic


def frame_from(lstm, baselines: dict, steps: int = 2, diverge: dict | None = None) -> pd.DataFrame:
    """Tidy frame: LSTM run (meta_seed s, task i) and baseline runs have a flat loss curve at their value
    (loss@K = value, sum@K = K * value, final_accuracy = value). ``diverge`` maps (optimizer, meta_seed, task)
    to the step from which that run's loss is NaN (the run is then diverged=True)."""
    lstm = np.atleast_2d(np.asarray(lstm, dtype=np.float64))
    diverge = diverge or {}
    runs = [("LSTM", s, lstm[s]) for s in range(lstm.shape[0])]
    runs += [(name, -1, np.asarray(v, dtype=np.float64)) for name, v in baselines.items()]
    rows = []
    for name, meta_seed, values in runs:
        for task, value in enumerate(values):
            start = diverge.get((name, meta_seed, task))
            for step in range(steps + 1):
                loss = np.nan if start is not None and step >= start else value
                rows.append((name, np.nan, 0, meta_seed, task, step, loss, start is not None, value))
    return pd.DataFrame(rows, columns=["optimizer", "lr", "seed", "meta_seed", "task", "step", "loss", "diverged",
                                       "final_accuracy"])


def synth(lstm_offset, baseline_offsets: dict, n_seeds=5, n_tasks=20, noise=0.02, seed=0, **kwargs):
    """Values = task level (about 1) + offset + noise; ``lstm_offset`` may be one number per seed."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.8, 1.2, n_tasks)
    offset = np.broadcast_to(np.asarray(lstm_offset, dtype=np.float64), (n_seeds,))[:, None]
    lstm = level + offset + noise * rng.standard_normal((n_seeds, n_tasks))
    baselines = {b: level + o + noise * rng.standard_normal(n_tasks) for b, o in baseline_offsets.items()}
    return frame_from(lstm, baselines, **kwargs), lstm, baselines


def verdict(frame, *parts, metric="loss@2"):
    return check_claim(frame, Claim("x", "c", "t", "src", parts, metric=metric))["verdict"]


# kind -> outcome -> (LSTM offset against Adam at offset 0, noise); Adam's mean is about 1
CASES = {
    "better": {"holds": (-0.05, 0.02), "does not hold": (0.05, 0.02), "inconclusive": (0.0, 0.5)},
    "worse": {"holds": (0.05, 0.02), "does not hold": (-0.05, 0.02), "inconclusive": (0.0, 0.5)},
    "negligible": {"holds": (0.0, 0.02), "does not hold": (0.2, 0.02), "inconclusive": (0.0, 0.5)},
    "wide_margin": {"holds": (-0.3, 0.02), "does not hold": (0.0, 0.02), "inconclusive": (-0.1, 0.5)},
    "no_advantage": {"holds": (0.0, 0.02), "does not hold": (-0.3, 0.02), "inconclusive": (-0.05, 0.5)},
}


@pytest.mark.parametrize("kind,outcome", [(k, o) for k in CASES for o in CASES[k]])
def test_every_kind_reaches_every_outcome(kind, outcome):
    offset, noise = CASES[kind][outcome]
    frame, _, _ = synth(offset, {"Adam": 0.0}, noise=noise)
    assert verdict(frame, Part(kind)) == outcome


def brute_force_p(values, below: bool) -> float:
    """The crossed one-sided t test of mean < 0 (``below``) or > 0, written out with loops (no library)."""
    S, I = len(values), len(values[0])
    grand = sum(sum(r) for r in values) / (S * I)
    rows = [sum(r) / I for r in values]
    cols = [sum(values[s][i] for s in range(S)) / S for i in range(I)]
    ms_s = I * sum((r - grand) ** 2 for r in rows) / (S - 1)
    ms_t = S * sum((c - grand) ** 2 for c in cols) / (I - 1)
    se = math.sqrt((ms_s + ms_t) / (S * I))
    df = (ms_s + ms_t) ** 2 / (ms_s ** 2 / (S - 1) + ms_t ** 2 / (I - 1))
    t = grand / se
    return float(stats.t.cdf(t, df) if below else stats.t.sf(t, df))


def test_margins_are_tested_as_per_task_contrasts_against_a_brute_force_check():
    frame, lstm, base = synth(-0.03, {"Adam": 0.0, "SGD": 0.02}, noise=0.05)
    m = MARGINS["negligible"]

    def p(b, a, below):  # H1: mean(L - B + a B) < 0 or > 0, per (seed, task), B varying over tasks
        return brute_force_p([[lstm[s][i] - base[b][i] + a * base[b][i] for i in range(lstm.shape[1])]
                              for s in range(lstm.shape[0])], below)

    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("negligible")], metric="loss@2"))
    holds = max(max(p(b, -m, True), p(b, m, False)) for b in base)
    fails = min(1.0, 2 * min(min(1.0, 2 * min(p(b, -m, False), p(b, m, True))) for b in base))
    # float64 sums in another order: a few ulp of relative error in the t statistic, far below REL's 1e-12 x p
    assert (row["p_holds"], row["p_fails"]) == pytest.approx((holds, fails), rel=1e-9)
    m = MARGINS["no_advantage"]
    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("no_advantage")], metric="loss@2"))
    holds = min(1.0, 2 * min(p(b, m, False) for b in base))
    fails = max(p(b, m, True) for b in base)
    assert (row["p_holds"], row["p_fails"]) == pytest.approx((holds, fails), rel=1e-9)
    # the margin's spread counts: treating m * mean(B) as a known constant gives another p-value
    d = lstm - base["Adam"][None, :]
    plugged = crossed_mean_ci(d).p_above(-m * base["Adam"].mean())
    assert abs(plugged - p("Adam", m, False)) > 1e-3


def test_a_sign_claim_has_a_smallest_effect_of_interest():
    # a tiny true edge (1%, below the 2.5% of SESOI): shown better and shown below SESOI -> holds, near threshold
    frame, _, _ = synth(-0.01, {"Adam": 0.0}, n_seeds=40, n_tasks=100, noise=0.01)
    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="loss@2"))
    assert row["verdict"] == "holds" and row["near_threshold"] and 0 < row["distance"] < SESOI
    assert row["p_fails"] < 0.025 and row["fail_gap"] == SESOI


def test_all_and_any_combinations_over_baselines():
    frame, _, _ = synth(0.0, {"Adam": -0.05, "SGD": 0.5})  # Adam slightly better than the LSTM, SGD far worse
    assert verdict(frame, Part("better")) == "does not hold"  # needs every baseline
    assert verdict(frame, Part("better", ("SGD",))) == "holds"
    assert verdict(frame, Part("no_advantage")) == "holds"  # one baseline suffices
    assert verdict(frame, Part("no_advantage", ("SGD",))) == "does not hold"


def test_compound_relu_style_claim():
    relu = (Part("worse", ("NAG",)), Part("better", ("SGD", "RMSprop", "Adam")))
    others = {"SGD": 0.3, "RMSprop": 0.2, "Adam": 0.1}
    holding, _, _ = synth(0.0, {"NAG": -0.2, **others})
    row = check_claim(holding, Claim("04", "c", "t", "slides", relu, metric="sum@2"))
    assert row["verdict"] == "holds" and row["best_baseline"] == "NAG"
    assert row["test"] == "NAG better than the LSTM; and LSTM better than each of SGD, RMSprop, Adam (sum@2)"
    nag_loses, _, _ = synth(0.0, {"NAG": 0.2, **others})
    assert verdict(nag_loses, *relu) == "does not hold"
    adam_wins, _, _ = synth(0.0, {"NAG": -0.2, "SGD": 0.3, "RMSprop": 0.2, "Adam": -0.1})
    assert verdict(adam_wins, *relu) == "does not hold"


def test_a_diverged_run_is_scored_as_the_worst_value_and_its_task_stays():
    frame, lstm, base = synth(-0.05, {"Adam": 0.0, "SGD": 0.1}, diverge={("LSTM", 0, 3): 1})
    values = per_task_metric(frame, "sum@2")
    paired = values.pivot_table(index=["seed", "task"], columns=["optimizer", "meta_seed"], values="value")
    assert len(paired.dropna()) == 19  # dropping NaN would lose task 3 for every comparison
    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="sum@2"))
    worst = 2 * max(np.delete(lstm.reshape(-1), 3).max(), base["Adam"].max(), base["SGD"].max())
    scored = 2 * lstm.copy()
    scored[0, 3] = worst
    assert row["n_tasks"] == 20 and row["n_seeds"] == 5 and row["diverged_runs"] == 1
    assert row["lstm"] == pytest.approx(scored.mean(), rel=REL)
    assert row["difference"] == pytest.approx((scored - 2 * base["Adam"]).mean(), rel=REL)
    assert "LSTM 1 of 100, Adam 0 of 20, SGD 0 of 20" in row["ours"]


def test_a_diverged_baseline_counts_against_it_and_late_divergence_is_not_scored():
    frame, _, base = synth(0.0, {"Adam": 0.0}, diverge={("Adam", -1, 5): 2})
    early = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="loss@2"))
    assert early["diverged_runs"] == 1 and "Adam 1 of 20" in early["ours"]
    assert early["best_baseline_value"] > base["Adam"].mean()
    late = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="sum@2"))  # steps 0-1 are finite
    assert late["diverged_runs"] == 0
    assert late["best_baseline_value"] == pytest.approx(2 * base["Adam"].mean(), rel=REL)


def test_seeds_are_random_effects_and_each_seed_has_its_estimate():
    frame, lstm, base = synth([-0.1, -0.1, -0.1, -0.1, 0.1], {"Adam": 0.0})  # the last seed is bad
    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="loss@2"))
    per_seed = json.loads(row["per_seed"])
    assert row["n_seeds"] == 5 and len(per_seed) == 5
    assert min(per_seed[:4]) > 0.05 and per_seed[4] < -0.05  # distance: positive where the LSTM is better
    assert np.mean(per_seed) == pytest.approx(row["distance"], abs=1e-5)  # the stored estimates have 5 decimals
    ci = crossed_mean_ci(lstm)
    assert (row["lstm"], row["lstm_lo"], row["lstm_hi"]) == pytest.approx((ci.mean, ci.lo, ci.hi), rel=REL)
    _, naive_lo, naive_hi = mean_ci((lstm - base["Adam"]).reshape(-1))
    assert row["difference_hi"] - row["difference_lo"] > 2 * (naive_hi - naive_lo)
    assert naive_hi < 0 and row["verdict"] == "inconclusive"  # pooling would have called it
    # the seed-cluster interval is the t interval of the seed means (S - 1 df); its variance leaves out the tasks'
    # share, which the crossed variance adds (its df can be larger, so the widths alone are not ordered)
    assert row["seed_lo"] < row["distance"] < row["seed_hi"]
    seed_se = (row["seed_hi"] - row["seed_lo"]) / (2 * scipy.stats.t.ppf(0.975, 4))
    assert row["distance_se"] >= seed_se * (1 - 1e-9)


def test_accuracy_is_oriented_higher_is_better():
    rng = np.random.default_rng(4)
    frame = frame_from(0.9 + 0.01 * rng.standard_normal((3, 20)),
                       {"Adam": 0.85 + 0.01 * rng.standard_normal(20), "SGD": 0.8 + 0.01 * rng.standard_normal(20)})
    row = check_claim(frame, Claim("x", "c", "t", "s", [Part("better")], metric="accuracy"))
    assert row["verdict"] == "holds" and row["best_baseline"] == "Adam"
    assert 0 < row["difference_lo"] < row["difference"] < row["difference_hi"]
    assert verdict(frame, Part("worse"), metric="accuracy") == "does not hold"
    diverged = frame_from(np.full((1, 3), 0.9), {"Adam": [0.8, 0.85, 0.7]}, diverge={("LSTM", 0, 0): 1})
    row = check_claim(diverged, Claim("x", "c", "t", "s", [Part("better")], metric="accuracy"))
    assert row["lstm"] == pytest.approx((0.7 + 0.9 + 0.9) / 3, rel=REL)  # scored as the smallest accuracy


def test_holm_turns_a_marginal_holds_into_inconclusive_among_many_claims():
    z = np.tile([1.0, -1.0], 10)  # mean 0, sd sqrt(20/19): t = -2.5 on 19 df for the difference below
    frame = frame_from(5.0 - 2.5 / math.sqrt(19) + z, {"Adam": np.full(20, 5.0)})
    marginal = check_claims(frame, [Claim("x", "c", "t", "s", [Part("better")], metric="loss@2")])
    assert 0.0025 < marginal["p_holds"].iloc[0] < 0.025 and marginal["verdict"].iloc[0] == "holds"
    assert holm_verdicts(marginal)["verdict_holm"].iloc[0] == "holds"
    others = pd.DataFrame([{**dict.fromkeys(COLUMNS), "p_holds": 0.5, "p_fails": 0.5, "verdict": "inconclusive"}] * 9)
    skipped = pd.DataFrame([not_run(Claim("y", "c", "t"), "no data")])
    table = holm_verdicts(pd.concat([marginal, others, skipped], ignore_index=True))
    assert table["verdict_holm"].iloc[0] == "inconclusive"
    assert table["p_holds_holm"].iloc[0] == pytest.approx(10 * marginal["p_holds"].iloc[0], rel=REL)
    assert table["verdict_holm"].iloc[-1] == "not run" and np.isnan(table["p_holds_holm"].iloc[-1])
    assert (table["verdict"] == pd.concat([marginal, others, skipped], ignore_index=True)["verdict"]).all()


def test_a_frame_without_meta_seed_is_one_lstm():
    frame, _, _ = synth(-0.05, {"Adam": 0.0}, n_seeds=1)
    claim = Claim("x", "c", "t", "s", [Part("better")], metric="sum@2")
    with_column = check_claim(frame, claim)
    without = check_claim(frame.drop(columns="meta_seed"), claim)
    assert without == with_column and without["n_seeds"] == 1
    mixed = frame.assign(meta_seed=frame.meta_seed.where(frame.optimizer == "LSTM"))  # NaN on baseline rows
    assert check_claim(mixed, claim) == with_column


def test_rows_are_complete_and_not_run_rows_leave_numbers_empty():
    frame, _, _ = synth(-0.05, {"Adam": 0.0, "SGD": 0.1})
    frame = frame.assign(setting="A")
    claims = [Claim("x", "c", "thesis text", "slide 3", [Part("wide_margin", "SGD")], metric="loss@2", setting="A"),
              Claim("x", "c", "t", "s", [Part("better")], setting="B")]
    table = check_claims(frame, claims, skipped={"B": "data set absent"})
    assert list(table.columns) == COLUMNS
    ran, skipped = table.iloc[0], table.iloc[1]
    assert (ran["source"], ran["margin"], ran["best_baseline"]) == ("slide 3", MARGINS["wide_margin"], "SGD")
    assert ran["test"] == "LSTM better than SGD by more than 10% (loss@2)"
    assert (skipped["verdict"], skipped["ours"], skipped["test"]) == \
        ("not run", "data set absent", "LSTM better than every baseline (sum@100)")
    assert np.isnan(skipped[["p_holds", "lstm", "difference", "n_tasks", "diverged_runs"]].astype(float)).all()


def test_bad_inputs_are_refused():
    frame, _, _ = synth(0.0, {"Adam": 0.0})
    with pytest.raises(ValueError, match="baseline='NAG'"):
        verdict(frame, Part("better", ("NAG",)))
    with pytest.raises(ValueError, match="crossed"):
        verdict(frame[~((frame.meta_seed == 2) & (frame.task == 7))], Part("better"))
    with pytest.raises(ValueError, match="kind='best'"):
        Part("best")
    with pytest.raises(ValueError, match="metric='mean@3'"):
        Claim("x", "c", "t", metric="mean@3")


def test_old_constructor_still_works():
    old = Claim("x", "c", "t", kind="lstm_fails", metric="sum@100", baseline="NAG")
    assert old.parts == (Part("worse", ("NAG",)),) and old.kind is None
    assert Claim("x", "c", "t").parts == (Part("better"),)
    assert old.capped(20).parts == old.parts


def test_metrics_are_computed_per_task():
    frame, _, _ = synth(0.0, {"Adam": 0.0}, n_seeds=2, n_tasks=3, steps=3)
    sums = per_task_metric(frame, "sum@3")
    expected = frame[frame.step < 3].groupby(["optimizer", "meta_seed", "task"], sort=False).loss.sum().values
    np.testing.assert_allclose(sums.value.values, expected, rtol=REL)
    with pytest.raises(ValueError, match="needs step 5"):
        per_task_metric(frame, "loss@5")
    with pytest.raises(ValueError, match="metric='mean@3'"):
        per_task_metric(frame, "mean@3")


def test_claims_cap_their_step_on_short_runs():
    assert Claim("x", "c", "t", metric="sum@100").capped(20).metric == "sum@20"
    assert Claim("x", "c", "t", metric="loss@200").capped(300).metric == "loss@200"
