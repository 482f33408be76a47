import numpy as np
import pandas as pd
import pytest

from l2l_core.claims import Claim, check_claim, per_task_metric


def frame_with(offsets: dict, n_tasks=30, steps=10, noise=0.05, seed=0):
    """Loss curves per optimizer = shared task difficulty + optimizer offset + noise (paired by task)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(1, 2, n_tasks)
    rows = []
    for name, offset in offsets.items():
        for task in range(n_tasks):
            for step in range(steps + 1):
                loss = difficulty[task] * np.exp(-0.1 * step) + offset + noise * rng.standard_normal()
                rows.append((name, np.nan, 0, task, step, loss))
    return pd.DataFrame(rows, columns=["optimizer", "lr", "seed", "task", "step", "loss"])


def test_lstm_wins_holds_when_it_is_better_than_every_baseline():
    frame = frame_with({"LSTM": 0.0, "Adam": 0.2, "SGD": 0.5})
    row = check_claim(frame, Claim("x", "wins", "thesis", metric="sum@10"))
    assert row["verdict"] == "holds"
    assert row["best_baseline"] == "Adam"
    assert row["difference"] == pytest.approx(-0.2 * 10, abs=0.2)
    assert row["difference_lo"] < row["difference"] < row["difference_hi"] < 0


def test_lstm_wins_does_not_hold_when_one_baseline_is_better():
    frame = frame_with({"LSTM": 0.1, "Adam": 0.0, "SGD": 0.5})
    assert check_claim(frame, Claim("x", "wins", "t", metric="loss@10"))["verdict"] == "does not hold"
    assert check_claim(frame, Claim("x", "fails", "t", kind="lstm_fails", metric="loss@10"))["verdict"] == "holds"


def test_indistinguishable_optimizers_are_inconclusive():
    frame = frame_with({"LSTM": 0.0, "Adam": 0.0}, noise=0.5, n_tasks=8)
    assert check_claim(frame, Claim("x", "wins", "t", metric="loss@10"))["verdict"] == "inconclusive"


def test_metrics_are_computed_per_task():
    frame = frame_with({"LSTM": 0.0}, n_tasks=2, steps=3)
    sums = per_task_metric(frame, "sum@3")
    expected = frame[frame.step < 3].groupby("task").loss.sum().values
    np.testing.assert_allclose(sums.value.values, expected)
    with pytest.raises(ValueError, match="needs step 5"):
        per_task_metric(frame, "loss@5")
    with pytest.raises(ValueError, match="metric='mean@3'"):
        per_task_metric(frame, "mean@3")


def test_claims_cap_their_step_on_short_runs():
    assert Claim("x", "c", "t", metric="sum@100").capped(20).metric == "sum@20"
    assert Claim("x", "c", "t", metric="loss@200").capped(300).metric == "loss@200"


def test_claim_against_one_named_baseline():
    frame = frame_with({"LSTM": 0.0, "NAG": -0.3, "SGD": 0.5})
    overtakes = Claim("x", "NAG overtakes", "t", kind="lstm_fails", metric="loss@10", baseline="NAG")
    assert check_claim(frame, overtakes)["verdict"] == "holds"
    beats_sgd = Claim("x", "beats SGD", "t", kind="lstm_wins", metric="loss@10", baseline="SGD")
    assert check_claim(frame, beats_sgd)["verdict"] == "holds"
    with pytest.raises(ValueError, match="baseline='Adam'"):
        check_claim(frame, Claim("x", "c", "t", metric="loss@10", baseline="Adam"))


def test_no_lstm_advantage_holds_unless_the_lstm_is_clearly_better():
    tie = frame_with({"LSTM": 0.0, "Adam": 0.0}, noise=0.5, n_tasks=8)
    better = frame_with({"LSTM": 0.0, "Adam": 0.3})
    claim = Claim("x", "tie", "t", kind="no_lstm_advantage", metric="loss@10")
    assert check_claim(tie, claim)["verdict"] == "holds"
    assert check_claim(better, claim)["verdict"] == "does not hold"
