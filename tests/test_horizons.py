"""Long-horizon analysis: window verdicts, equal wall-clock comparisons, the computed sentences."""
import numpy as np
import pandas as pd
import pytest

from l2l_core.optimizers.baselines import Baseline
from l2l_core.experiments.horizons import advantage_table, breaking_points, seconds_per_step
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.tasks.families import QuadraticFamily


def _frame(steps=1000, tasks=8, cross=350):
    """LSTM loss 1 until ``cross`` then 3; NAG 2 throughout; SGD 5; small per-task noise."""
    rng = np.random.default_rng(0)
    step = np.arange(steps + 1)
    rows = []
    for task in range(tasks):
        noise = rng.normal(0, 0.05, steps + 1)
        for name, loss in (("LSTM", np.where(step < cross, 1.0, 3.0)), ("NAG", np.full(steps + 1, 2.0)),
                           ("SGD", 5.0 - step / steps)):
            rows.append(pd.DataFrame(dict(optimizer=name, seed=0, task=task, step=step, loss=loss + noise,
                                          diverged=False, setting="S")))
    return pd.concat(rows, ignore_index=True)


def _costs(lstm=4.0, nag=1.0, sgd=1.0):
    return pd.DataFrame(dict(setting="S", optimizer=["LSTM", "NAG", "SGD"], seconds_per_step=[lstm, nag, sgd]))


def test_window_verdicts_find_where_the_advantage_breaks():
    table = advantage_table(_frame(), _costs())
    windows = table[table.comparison.str.startswith("steps")]
    assert list(windows.comparison) == ["steps 0-99", "steps 100-199", "steps 200-499", "steps 500-999"]
    assert list(windows.verdict) == ["LSTM better", "LSTM better", "no significant difference", "baseline better"]
    assert (windows["best baseline"] == "NAG").all()
    (note,) = breaking_points(table).values()
    assert "ahead of every baseline in steps 0-99, 100-199" in note
    assert "NAG is significantly better from steps 500-999 on" in note


def test_equal_wall_clock_gives_cheaper_optimizers_more_steps():
    # NAG costs a quarter of the LSTM's step: in the LSTM's 100-step time it reaches step 400 (where the LSTM
    # has fallen behind is irrelevant: the LSTM is scored at step 100, loss 1, against NAG's 2)
    frame = _frame()
    table = advantage_table(frame, _costs())
    row = table[table.comparison.str.contains("LSTM's 100 steps")].iloc[0]
    # scored on its last 10 steps (391-400): exactly these rows' mean (float64), not merely about NAG's level 2
    nag = frame[(frame.optimizer == "NAG") & frame.step.between(391, 400)]
    assert row.verdict == "LSTM better" and row["baseline"] == pytest.approx(nag.loss.mean(), rel=1e-12)
    assert nag.loss.mean() == pytest.approx(2.0, abs=0.02)  # 80 draws of N(2, 0.05^2): 3.6 standard errors
    row = table[table.comparison.str.contains("LSTM's 1000 steps")].iloc[0]
    assert "capped at step 1000: NAG, SGD" in row.comparison  # they would get 4,000 steps; the run has 1,000
    assert row.verdict == "baseline better"


def test_per_step_cost_is_measured_for_learned_and_hand_written_optimizers():
    fam = QuadraticFamily()
    lstm = seconds_per_step(LSTMOptimizer(fam.default_lstm), fam, steps=10, repeats=2)
    sgd = seconds_per_step(Baseline("sgd", 0.01), fam, steps=10, repeats=2)
    assert 0 < lstm < 1 and 0 < sgd < 1
