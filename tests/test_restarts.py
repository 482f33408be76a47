"""meta_train(restarts=...): an LSTM stuck after its first epoch is replaced by a fresh one, deterministically."""
import math

import pandas as pd
import pytest

import l2l_core.training.meta_train as mt
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.training.meta_train import is_stuck, meta_train, validation_score
from l2l_core.seeding import derive_seed
from l2l_core.tasks.families import QuadraticFamily

KW = dict(epochs=2, trajectories_per_epoch=2, tasks_per_trajectory=2, steps=20, unroll=10, n_val_tasks=3,
          progress=False)
FROZEN = 1e-30  # a meta-learning rate too small to move any weight: every first epoch is stuck


def test_stuck_means_less_than_the_minimum_gain_over_the_untrained_score():
    assert is_stuck(230.0, 230.3) and is_stuck(231.0, 230.0) and not is_stuck(85.0, 230.0)
    assert is_stuck(0.99 * 100.0 + 1e-9, 100.0) and not is_stuck(0.99 * 100.0 - 1e-9, 100.0)
    assert not is_stuck(350.0, math.inf)   # an untrained LSTM that diverges, a trained one that does not
    assert is_stuck(math.inf, math.inf)


def test_the_do_nothing_score_is_steps_times_the_initial_loss():
    fam = QuadraticFamily()
    tasks = fam.sample(3, 0, split="meta_val")
    score, do_nothing = mt.validation_scores(LSTMOptimizer(fam.default_lstm, seed=0), tasks, 20)
    initial = tasks.loss(tasks.initial_params(), 0).double().mean().item()
    assert score == validation_score(LSTMOptimizer(fam.default_lstm, seed=0), tasks, 20)
    assert do_nothing == pytest.approx(20 * initial, rel=1e-6)  # float32 mean of 3 losses against float64


def test_an_attempt_that_starts_worse_than_doing_nothing_must_beat_doing_nothing(monkeypatch):
    """Run A's seed 4: an attempt whose untrained LSTM scored 233.8, above the do-nothing 230.26, came back to
    229.998 (the plateau) after its first epoch. Measured against its own start that is progress; against
    the better of the two it is stuck, and it is restarted."""
    scores = iter([(233.8, 230.26), (229.998, 230.26)] + [(100.0, 230.26)] * 10)
    monkeypatch.setattr(mt, "validation_scores", lambda *args: next(scores))
    result = meta_train(QuadraticFamily(), seed=4, restarts=1, **KW)
    assert result.restarts == 1 and result.history["attempt"].tolist() == [0, 0, 1, 1, 1]


def test_a_stuck_lstm_is_restarted_from_derived_seeds_and_the_history_keeps_every_attempt():
    fam = QuadraticFamily()
    result = meta_train(fam, meta_lr=FROZEN, seed=4, restarts=2, **KW)
    h = result.history
    assert result.restarts == 2
    assert h["attempt"].tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert h["epoch"].tolist() == [0, 1, 0, 1, 0, 1, 2]
    assert h["trajectories"].tolist() == [0, 2, 2, 4, 4, 6, 8]
    val_tasks = fam.sample(KW["n_val_tasks"], 4, split="meta_val")
    for attempt in (0, 1, 2):
        init_seed = 4 if attempt == 0 else derive_seed("restart", 4, attempt)
        untrained = validation_score(LSTMOptimizer(fam.default_lstm, seed=init_seed), val_tasks, KW["steps"])
        assert h[(h.attempt == attempt) & (h.epoch == 0)]["val_loss_sum"].item() == untrained
    # selection is among the last attempt's LSTMs only
    last = h[h.attempt == 2]
    assert result.best_epoch == int(last.loc[last["val_loss_sum"].idxmin(), "epoch"])


def test_restarts_stop_at_the_limit_and_change_nothing_for_an_lstm_that_learns():
    fam = QuadraticFamily()
    assert meta_train(fam, meta_lr=FROZEN, seed=1, restarts=1, **KW).history["attempt"].max() == 1
    plain = meta_train(fam, seed=1, **KW)
    guarded = meta_train(fam, seed=1, restarts=2, **KW)
    assert guarded.restarts == 0 and not is_stuck(plain.history["val_loss_sum"][1], plain.history["val_loss_sum"][0])
    pd.testing.assert_frame_equal(plain.history.drop(columns="seconds"), guarded.history.drop(columns="seconds"))
    for a, b in zip(plain.best.parameters(), guarded.best.parameters()):
        assert a.equal(b)


def test_a_run_interrupted_after_a_restart_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    fam = QuadraticFamily()
    whole = meta_train(fam, meta_lr=FROZEN, seed=2, restarts=2, **KW)
    calls, real = [0], mt.train_trajectory

    def crashing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 4:  # inside attempt 1's first epoch: the saved state is attempt 1, epoch 0
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mt, "train_trajectory", crashing)
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        meta_train(fam, meta_lr=FROZEN, seed=2, restarts=2, checkpoint_path=path, **KW)
    monkeypatch.setattr(mt, "train_trajectory", real)
    resumed = meta_train(fam, meta_lr=FROZEN, seed=2, restarts=2, checkpoint_path=path, **KW)
    assert resumed.restarts == 2
    pd.testing.assert_frame_equal(whole.history.drop(columns="seconds"), resumed.history.drop(columns="seconds"))
    for a, b in zip(whole.best.parameters(), resumed.best.parameters()):
        assert a.equal(b)


def test_restarts_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="restarts"):
        meta_train(QuadraticFamily(), restarts=-1, **KW)


def test_the_meta_training_figure_draws_an_abandoned_attempt_dotted_and_selects_from_the_last():
    from l2l_core.book.plotting import plot_meta_training

    history = pd.DataFrame(dict(meta_seed=[0] * 5, attempt=[0, 0, 1, 1, 1], epoch=[0, 1, 0, 1, 2],
                                trajectories=[0, 20, 20, 40, 60], val_loss_sum=[230.0, 229.9, 230.1, 90.0, 80.0]))
    ax = plot_meta_training(history).axes[0]
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(dotted) == 1 and list(dotted[0].get_xdata()) == [0, 20]
    assert len(solid) == 1 and list(solid[0].get_xdata()) == [20, 40, 60]
    best = [line for line in ax.lines if line.get_marker() == "o"]
    assert [(b.get_xdata()[0], b.get_ydata()[0]) for b in best] == [(60, 80.0)]


def test_a_restart_draws_its_own_trajectories_and_attempt_zero_keeps_a_plain_runs(monkeypatch):
    """Under the first rule a restart reused its trajectories, and MNIST seed 4 stayed stuck through five fresh
    LSTMs: the trajectories kept it there. Each attempt now draws its own; attempt 0 draws those of a run without
    restarts (so a seed that learns at once is unchanged)."""
    fam = QuadraticFamily()
    drawn, real = [], QuadraticFamily.sample

    def recording(self, n, seed, split="meta_train"):
        if split == "meta_train":
            drawn.append(seed)
        return real(self, n, seed, split=split)

    monkeypatch.setattr(QuadraticFamily, "sample", recording)
    meta_train(fam, meta_lr=FROZEN, seed=4, restarts=2, **KW)
    per_attempt = [drawn[0:2], drawn[2:4], drawn[4:8]]  # attempts 0 and 1: one epoch; attempt 2: two
    assert per_attempt[0] == [mt.trajectory_seed(4, 0, 1, j) for j in range(2)]
    assert per_attempt[0] == [derive_seed("trajectory", 4, 1, j) for j in range(2)]
    assert len({s for part in per_attempt for s in part}) == 8  # no attempt sees another's trajectories


def test_a_run_under_another_restart_cap_is_reused_only_where_it_ends_in_the_same_lstm(monkeypatch):
    """Files trained under one cap are reused under another (the profiles raised it) only when
    ``same_result_with_restarts`` says so; checked against real runs where attempts 0 and 1 are stuck and 2 learns."""
    from l2l_core.training.meta_train import same_result_with_restarts

    fam = QuadraticFamily()

    def run(cap):
        checks = []

        def stuck(score, reference):  # the k-th check is attempt k's: attempts 0 and 1 stuck, later ones learn
            checks.append(score)
            return len(checks) <= 2

        monkeypatch.setattr(mt, "is_stuck", stuck)
        return meta_train(fam, seed=3, restarts=cap, **KW)

    runs = {cap: run(cap) for cap in range(5)}
    last = {cap: int(r.history["attempt"].max()) for cap, r in runs.items()}
    assert last == {0: 0, 1: 1, 2: 2, 3: 2, 4: 2}
    said_same = 0
    for saved in runs:
        for cap in runs:
            a, b = runs[saved], runs[cap]
            equal = a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds")) and all(
                x.equal(y) for x, y in zip(a.best.parameters(), b.best.parameters()))
            if same_result_with_restarts(saved, last[saved], cap):
                said_same += 1
                assert equal, (saved, cap)
            else:  # not reused: another LSTM wherever the runs end at different attempts (attempts ignore the cap)
                assert equal == (last[saved] == last[cap]), (saved, cap)
    # reused: every equal cap, and the runs that learned below their cap (3 and 4) under caps 2, 3 and 4
    assert said_same == 5 + 4
    assert not same_result_with_restarts(2, 2, 3)  # ended at its cap: maybe stuck, so not reused (conservative)
