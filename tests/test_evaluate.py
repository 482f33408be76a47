import dataclasses
import math

import numpy as np
import torch
import pandas as pd
import pytest
from scipy import stats

from l2l_core.tasks.data import to_inputs
from l2l_core.optimizers.baselines import Baseline
from l2l_core.evaluation.evaluate import compare, evaluate, evaluate_together, mean_ci, summarize
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.tasks.families import QuadraticFamily

from error_bounds import assert_close64

U = 2.0 ** -24  # float32 unit roundoff
REL = 1e-12  # float64 statistics of the same numbers (sums of at most ~1e3 terms, in any order: < 1e-13)


@dataclasses.dataclass(frozen=True)
class Float64:
    """``family`` with float64 tasks: for comparisons of two runs of the same mathematics in other batch shapes
    (chunks, stacked baselines), which in float32 may sum in other orders (CPU-dependent last bits, amplified by
    Adam's normalisation); in float64 they agree to ~1e-15, checked to 1e-10 of the magnitudes."""

    family: object

    def sample(self, *args, **kwargs):
        tasks = self.family.sample(*args, **kwargs)
        if hasattr(tasks, "W"):
            return dataclasses.replace(tasks, W=tasks.W.double(), y=tasks.y.double())
        return dataclasses.replace(tasks, x=to_inputs(tasks.x).double())


def test_same_seed_gives_identical_frames_and_other_seed_differs():
    fam = QuadraticFamily()
    lstm = LSTMOptimizer(fam.default_lstm, seed=0)
    opts = {"LSTM": lstm, "Adam": Baseline("adam", 0.1)}
    a = compare(opts, fam, n_tasks=4, steps=10, seeds=(0, 1))
    b = compare(opts, fam, n_tasks=4, steps=10, seeds=(0, 1))
    pd.testing.assert_frame_equal(a, b)
    c = compare(opts, fam, n_tasks=4, steps=10, seeds=(2, 3))
    assert not np.allclose(a.loss.values, c.loss.values)


def test_compare_as_jobs_equals_evaluating_everything_together_seed_after_seed():
    """compare() splits the work into one job per (seed, LSTM) and per seed's baselines; reassembled, the frame
    is row for row what evaluating all optimizers together gives."""
    fam = QuadraticFamily()
    opts = {"LSTM": {3: LSTMOptimizer(fam.default_lstm, seed=3), 5: LSTMOptimizer(fam.default_lstm, seed=5)},
            "Adam": Baseline("adam", 0.1), "SGD": Baseline("sgd", 0.01)}
    together = pd.concat([evaluate_together(opts, fam, n_tasks=4, steps=10, seed=s) for s in (0, 1)],
                         ignore_index=True)
    pd.testing.assert_frame_equal(compare(opts, fam, n_tasks=4, steps=10, seeds=(0, 1)), together, check_exact=True)


def test_frame_is_tidy_and_steps_may_exceed_training_horizon():
    fam = QuadraticFamily()
    frame = evaluate(Baseline("sgd", 0.01), fam, n_tasks=3, steps=150, seed=0)
    assert list(frame.columns) == ["optimizer", "lr", "seed", "task", "step", "loss", "diverged", "meta_seed"]
    assert not frame.diverged.any()
    assert len(frame) == 3 * 151
    assert set(frame.step) == set(range(151))
    assert frame.groupby("task").size().eq(151).all()
    # step 0 is the loss at theta_0 = 0: ||y||^2, in float32: ten squares (one rounding each) summed in any order
    # (nine more), so within gamma(10) = 10u / (1 - 10u) < 11u relative of the exact (float64) value
    tasks = fam.sample(3, 0, "test")
    np.testing.assert_allclose(frame[frame.step == 0].loss.values, (tasks.y.double() ** 2).sum(1).numpy(),
                               rtol=11 * U, atol=0)


@pytest.mark.parametrize("make", [lambda fam: LSTMOptimizer(fam.default_lstm, seed=1), lambda fam: Baseline("nag", 0.01)])
def test_chunked_evaluation_equals_all_at_once(make):
    fam = QuadraticFamily()
    opt = make(fam)
    if isinstance(opt, LSTMOptimizer):
        opt = opt.double()
    whole = evaluate(opt, Float64(fam), n_tasks=5, steps=20, seed=3)
    chunked = evaluate(opt, Float64(fam), n_tasks=5, steps=20, seed=3, chunk_size=2)
    pd.testing.assert_frame_equal(whole.drop(columns="loss"), chunked.drop(columns="loss"))
    assert_close64(chunked.loss, whole.loss)


def test_mean_ci_matches_t_interval_by_hand():
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    # sd = sqrt(5/3) = 1.29099, se = sd / 2 = 0.645497, t_{0.975, 3} = 3.182446; float64 throughout
    assert mean == 2.5
    assert hi - mean == pytest.approx(stats.t.ppf(0.975, 3) * math.sqrt(5 / 3) / 2, rel=REL)
    assert mean - lo == pytest.approx(hi - mean, rel=REL)


def test_summarize_reports_steps_sums_and_intervals():
    fam = QuadraticFamily()
    frame = compare({"SGD": Baseline("sgd", 0.01), "Adam": Baseline("adam", 0.1)}, fam, n_tasks=6, steps=100)
    table = summarize(frame, at_steps=(100, 200))
    assert list(table.optimizer) == ["SGD", "Adam"]
    assert "loss@200" not in table  # beyond the run
    sgd = frame[frame.optimizer == "SGD"]
    assert table.loc[0, "loss@100"] == pytest.approx(sgd[sgd.step == 100].loss.mean(), rel=REL)
    assert table.loc[0, "sum@100"] == pytest.approx(sgd[sgd.step < 100].groupby("task").loss.sum().mean(), rel=REL)
    assert (table["sum@100 lo"] < table["sum@100"]).all() and (table["sum@100"] < table["sum@100 hi"]).all()


def test_blockwise_lstm_application_equals_one_block():
    from l2l_core.evaluation.runners import run_learned

    fam = QuadraticFamily()
    lstm = LSTMOptimizer(fam.default_lstm, seed=2).double()
    tasks = Float64(fam).sample(7, 0, "test")  # other block widths: other matmul shapes
    whole, theta_whole = run_learned(lstm, tasks, 15, block=10_000)
    blocks, theta_blocks = run_learned(lstm, tasks, 15, block=13)  # blocks straddle task boundaries
    assert whole.dtype == torch.float64
    assert_close64(blocks, whole)
    assert_close64(theta_blocks, theta_whole)


def test_evaluating_together_gives_each_optimizer_its_own_frame(tiny_mnist_root):
    from l2l_core.tasks.families import MLPFamily

    fam = Float64(MLPFamily(dataset="mnist", hidden=(5,), data_root=tiny_mnist_root))
    optimizers = {"LSTM": LSTMOptimizer(fam.family.default_lstm, seed=1).double(), "SGD": Baseline("sgd", 0.3),
                  "Adam": Baseline("adam", 0.01)}
    together = evaluate_together(optimizers, fam, n_tasks=3, steps=6, seed=2)
    assert list(together.optimizer.unique()) == list(optimizers)
    for label, optimizer in optimizers.items():
        alone = evaluate(optimizer, fam, n_tasks=3, steps=6, seed=2, label=label)
        mine = together[together.optimizer == label].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine.drop(columns=["loss", "final_accuracy"]),
                                      alone.drop(columns=["loss", "final_accuracy"]))
        assert_close64(mine.loss, alone.loss, rtol=1e-9)  # Adam: see the baselines' float64 test
        np.testing.assert_array_equal(mine.final_accuracy, alone.final_accuracy)  # counts of correct argmaxes
