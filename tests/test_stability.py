"""Verdict stability: claims decided again on halves and resamples of pooled LSTMs, exactly as two runs would be."""
import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from l2l_core.evaluation.claims import Claim, Part, check_claim, check_claims, claim_data, decide, holm_verdicts
from l2l_core.evaluation.stability import (VerdictTable, agreement_table, baseline_gap, claims_table, disjoint_pairs,
                                           pool_runs, pool_tables, resampled_agreement, rounding_agreement,
                                           split_agreement, verdicts)
from test_claims import frame_from  # tests/ is on sys.path (rootdir conftest, no package)

CLEAR = Claim("x", "clear", "t", "s", [Part("better")], metric="loss@2", setting="clear")
EDGE = Claim("x", "edge", "t", "s", [Part("better")], metric="loss@2", setting="edge")


def run_frame(offsets: dict, n_tasks=8, seed=0) -> pd.DataFrame:
    """One run's frame: per setting, LSTMs (one row of ``offsets[setting]`` per seed) around a baseline at 1 + task
    level; the task levels and baselines are the same for every run, as in a rounding pair."""
    level = np.random.default_rng(123).uniform(0.8, 1.2, n_tasks)
    rng = np.random.default_rng(seed)
    frames = []
    for setting, lstm_offsets in offsets.items():
        offsets_ = np.asarray(lstm_offsets, dtype=np.float64)[:, None]
        lstm = level + offsets_ + 0.01 * rng.standard_normal((len(lstm_offsets), n_tasks))
        frames.append(frame_from(lstm, {"Adam": level + 0.0, "SGD": level + 0.2}).assign(setting=setting))
    return pd.concat(frames, ignore_index=True)


def two_runs():
    """A rounding pair of three seeds each: 'clear' LSTMs all well ahead, 'edge' LSTMs on either side of Adam."""
    a = run_frame({"clear": [-0.3, -0.32, -0.28], "edge": [-0.04, 0.01, -0.03]}, seed=1)
    b = run_frame({"clear": [-0.31, -0.29, -0.3], "edge": [-0.05, 0.02, -0.01]}, seed=2)
    return a, b


def test_claim_data_decides_as_check_claim_for_all_seeds_and_each_alone():
    frame, _ = two_runs()
    for claim in (CLEAR, EDGE):
        row, data = check_claim(frame, claim), claim_data(frame, claim)
        assert data.p_values() == (row["p_holds"], row["p_fails"])
        for s in range(3):
            alone = check_claim(frame[frame.meta_seed.isin([s, -1])], claim)
            assert data.p_values([s]) == (alone["p_holds"], alone["p_fails"])
        assert data.meta_seeds == (0, 1, 2) and data.lstm.shape == (3, 8)


def _book_verdicts(runs, rows) -> list[str]:
    """The book's procedure on real frames: the LSTMs ``rows`` ((run, meta seed) pairs) renumbered as one run's
    seeds, the baselines of run 0, then check_claims and Holm."""
    lstms = [runs[run][(runs[run].optimizer == "LSTM") & (runs[run].meta_seed == s)].assign(meta_seed=new)
             for new, (run, s) in enumerate(rows)]
    frame = pd.concat(lstms + [runs[0][runs[0].optimizer != "LSTM"]], ignore_index=True)
    return list(holm_verdicts(check_claims(frame, [CLEAR, EDGE]))["verdict_holm"])


def test_every_pair_of_disjoint_halves_is_decided_as_a_run_of_those_lstms_would_be():
    a, b = two_runs()
    runs = [[claim_data(f, c) for c in (CLEAR, EDGE)] for f in (a, b)]
    pooled = [claims_table(pool_runs(runs))]
    assert pooled[0].data[0].lstm.shape == (6, 8) and baseline_gap(runs) == 0.0
    assert pooled[0].data[0].meta_seeds == (0, 1, 2, 0, 1, 2)  # each seed's two versions: rounding twins
    table = split_agreement(pooled)
    # halves of the 3 distinct seeds: one seed per run, disjoint, each by either version: 3 x 2^2 pairs, all of them
    assert table.attrs["pairs"] == 3 * 2 ** 2 and table.attrs["exhaustive"] and "all agree" not in table.attrs
    source = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # pooled row -> (run, meta seed)
    agree, opposite, seen = np.zeros(2), np.zeros(2), set()
    for seed_a, seed_b in itertools.permutations(range(3), 2):
        if seed_b < seed_a:
            continue
        for run_a, run_b in itertools.product((0, 1), repeat=2):
            ra, rb = [seed_a + 3 * run_a], [seed_b + 3 * run_b]
            va = _book_verdicts((a, b), [source[r] for r in ra])
            vb = _book_verdicts((a, b), [source[r] for r in rb])
            assert verdicts(pooled, ra) == va and verdicts(pooled, rb) == vb
            agree += np.array(va) == np.array(vb)
            opposite += [{x, y} == {"holds", "does not hold"} for x, y in zip(va, vb)]
            seen.add((tuple(ra), tuple(rb)))
    key = pooled[0].data[0].meta_seeds
    assert {(tuple(x[key]), tuple(y[key])) for x, y in disjoint_pairs(pooled)[0]} == seen
    assert list(table["agree (halves of 1)"]) == list(agree / 12)
    assert list(table["opposite (halves of 1)"]) == list(opposite / 12)
    clear = table.iloc[0]
    assert clear["agree (halves of 1)"] == 1.0 and clear["holds (halves of 1)"] == 1.0


def test_every_rounding_pair_gives_each_seeds_two_versions_to_two_runs():
    a, b = two_runs()
    pooled = [claims_table(pool_runs([[claim_data(f, c) for c in (CLEAR, EDGE)] for f in (a, b)]))]
    table = rounding_agreement(pooled)
    assert table.attrs["pairs"] == 2 ** (3 - 1)
    agree = np.zeros(2)
    for swapped in itertools.product((0, 1), repeat=2):
        side = (0, *swapped)
        first = _book_verdicts((a, b), [(w, k) for k, w in enumerate(side)])
        second = _book_verdicts((a, b), [(1 - w, k) for k, w in enumerate(side)])
        agree += np.array(first) == np.array(second)
    assert list(table["agree (rounding pairs of 3)"]) == list(agree / 4)
    ran = (verdicts(pooled, [0, 1, 2]), verdicts(pooled, [3, 4, 5]))  # the pair that ran is one of them
    assert ran == (_book_verdicts((a, b), [(0, 0), (0, 1), (0, 2)]), _book_verdicts((a, b), [(1, 0), (1, 1), (1, 2)]))


def test_resampling_is_reproducible_and_disjoint():
    a, b = two_runs()
    pooled = [claims_table(pool_runs([[claim_data(f, c) for c in (CLEAR, EDGE)] for f in (a, b)]))]
    one = resampled_agreement(pooled, 1, draws=5, seed=5)  # 12 pairs exist: 5 drawn
    pd.testing.assert_frame_equal(one, resampled_agreement(pooled, 1, draws=5, seed=5))
    assert one.attrs["pairs"] == 5 and not one.attrs["exhaustive"]
    shares = one[["holds (1 seeds, disjoint)", "inconclusive (1 seeds, disjoint)", "does not hold (1 seeds, disjoint)"]]
    # three float64 shares of one count: their sum is 1 to a few ulp (2e-16 each) on any CPU
    assert np.allclose(shares.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3 distinct seeds"):  # two runs of 2 cannot be disjoint among 3 seeds
        resampled_agreement(pooled, 2)
    table = agreement_table(pooled, resample_seeds=(1,), draws=30)
    assert list(table["claim"]) == ["clear", "edge"]  # per verdict only: no "all at once" row
    assert table.iloc[0]["agree (1 seeds, disjoint)"] == 1.0
    assert set(table.attrs["pairs"]) == {"agree (rounding pairs of 3)", "agree (halves of 1)", "agree (1 seeds, disjoint)"}


def test_pooling_refuses_runs_of_other_claims_and_resampling_bad_arguments():
    a, b = two_runs()
    run_a = [claim_data(a, c) for c in (CLEAR, EDGE)]
    with pytest.raises(ValueError, match="other claims"):
        pool_runs([run_a, run_a[::-1]])
    with pytest.raises(ValueError, match="at least two"):
        pool_runs([run_a])
    with pytest.raises(ValueError, match="same seeds"):
        pool_runs([run_a, [replace(d, meta_seeds=(0, 1, 7)) for d in run_a]])
    pooled = pool_runs([run_a, [claim_data(b, c) for c in (CLEAR, EDGE)]])
    with pytest.raises(ValueError, match="n_seeds"):
        resampled_agreement([claims_table(pooled)], 0)
    with pytest.raises(ValueError, match="need at least 2"):  # one seed: no two disjoint runs
        split_agreement([claims_table([replace(pooled[0], lstm=pooled[0].lstm[[0, 3]], meta_seeds=(0, 0))])])
    with pytest.raises(ValueError, match="one label per claim"):
        VerdictTable("x", tuple(pooled), ())
    with pytest.raises(ValueError, match="must name exactly"):
        VerdictTable("x", tuple(pooled[:1]), ({"claim": "c"},))
    with pytest.raises(ValueError, match="other tables"):
        pool_tables([[claims_table(run_a)], [claims_table(run_a, part="other")]])


def test_a_baseline_that_differs_between_runs_is_reported():
    a, b = two_runs()
    b = b.copy()
    b.loc[b.optimizer == "Adam", "loss"] *= 1.01
    runs = [[claim_data(f, c) for c in (CLEAR, EDGE)] for f in (a, b)]
    assert baseline_gap(runs) == pytest.approx(0.01, rel=1e-9)


def test_a_table_decided_row_by_row_ignores_holm_and_every_table_is_shown():
    a, b = two_runs()
    runs = [[claim_data(f, c) for c in (CLEAR, EDGE)] for f in (a, b)]
    claims = claims_table(pool_runs(runs))
    alone = VerdictTable("errata", claims.data, tuple({**l, "part": "errata (x)", "variant": "fixed"}
                                                      for l in claims.labels), holm=False)
    rows = [0, 1, 2]
    assert alone.verdicts(rows) == [decide(*d.p_values(rows)) for d in claims.data]
    assert verdicts([claims, alone], rows) == claims.verdicts(rows) + alone.verdicts(rows)
    table = agreement_table(pool_tables([[claims_table(r), VerdictTable("errata", tuple(r), alone.labels, holm=False)]
                                         for r in runs]), resample_seeds=(), draws=1)
    assert len(table) == 4 and list(table.variant) == ["", "", "fixed", "fixed"]  # no "all at once" rows
    assert {"agree (rounding pairs of 3)", "agree (halves of 1)", "opposite (halves of 1)"} <= set(table.columns)


def test_a_competitor_run_once_per_seed_follows_the_seeds_of_each_recombined_run():
    a, b = two_runs()

    def with_other_lstm(frame, shift):  # another LSTM (one per meta seed) as a competitor, as in errata (b)
        lstm = frame[(frame.optimizer == "LSTM") & (frame.setting == "clear")]
        other = lstm.assign(optimizer="LSTM (other)", loss=lstm.loss + shift + 0.01 * lstm.meta_seed)
        return pd.concat([frame[frame.setting == "clear"], other], ignore_index=True)

    runs = [with_other_lstm(a, 0.3), with_other_lstm(b, 0.32)]
    data = [claim_data(f, CLEAR) for f in runs]
    assert set(data[0].seeded) == {"LSTM (other)"} and data[0].seeded["LSTM (other)"].shape == (3, 8)
    assert baseline_gap([[d] for d in data]) == 0.0  # the other LSTM is pooled, not compared
    pooled = pool_runs([[d] for d in data])[0]
    rows = [0, 4, 5]  # run 0's seed 0, run 1's seeds 1 and 2
    rebuilt = pd.concat([runs[0][runs[0].meta_seed == 0].assign(meta_seed=0),
                         runs[1][runs[1].meta_seed == 1].assign(meta_seed=1),
                         runs[1][runs[1].meta_seed == 2].assign(meta_seed=2),
                         runs[0][runs[0].meta_seed == -1]], ignore_index=True)
    book = check_claim(rebuilt, CLEAR)
    assert pooled.p_values(rows, competitor_rows=rows) == pytest.approx((book["p_holds"], book["p_fails"]),
                                                                        rel=1e-12, abs=1e-300)
    assert pooled.p_values(rows) != pooled.p_values(rows, competitor_rows=rows)  # by default it stays run 0's mean
