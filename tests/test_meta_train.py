import pytest
import torch

from l2l_core.evaluation.tuning import tune_learning_rate
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.training.meta_train import meta_train, train_trajectory, unroll_segments
from l2l_core.evaluation.runners import run_baseline, run_learned
from l2l_core.tasks.families import QuadraticFamily


class RecordingLSTM(LSTMOptimizer):
    """Records, per call, whether its gradient input requires grad and whether its output got a meta-gradient."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls, self.input_requires_grad, self.meta_grad_steps = 0, [], set()

    def forward(self, grad, state):
        step = self.calls
        self.calls += 1
        self.input_requires_grad.append(grad.requires_grad)
        update, state = super().forward(grad, state)
        update.register_hook(lambda g, step=step: self.meta_grad_steps.add(step) if g.abs().sum() > 0 else None)
        return update, state


@pytest.mark.parametrize("steps,unroll", [(100, 20), (100, 30), (7, 7), (5, 1)])
def test_schedules_cover_every_step_once(steps, unroll):
    from l2l_core.errata.defects import thesis_loop_segments

    for schedule in (unroll_segments, thesis_loop_segments):
        covered = [t for seg, _ in schedule(steps, unroll) for t in seg]
        assert covered == list(range(steps))


def test_every_step_is_meta_trained_and_gradient_inputs_are_detached():
    fam = QuadraticFamily()
    lstm = RecordingLSTM(fam.default_lstm, seed=0)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)
    train_trajectory(lstm, opt, fam.sample(4, 0, "meta_train"), steps=100, unroll=20)
    assert lstm.calls == 100
    assert lstm.meta_grad_steps == set(range(100))
    assert not any(lstm.input_requires_grad)


def test_meta_gradient_reaches_every_lstm_weight():
    fam = QuadraticFamily()
    lstm = LSTMOptimizer(fam.default_lstm, seed=0)
    before = [p.detach().clone() for p in lstm.parameters()]
    opt = torch.optim.SGD(lstm.parameters(), lr=1e-4)
    train_trajectory(lstm, opt, fam.sample(2, 0, "meta_train"), steps=20, unroll=20)
    for p, b in zip(lstm.parameters(), before):
        assert p.grad is not None and p.grad.abs().sum() > 0
        assert not torch.equal(p.detach(), b)


def test_meta_training_is_deterministic():
    fam = QuadraticFamily()
    kw = dict(epochs=1, trajectories_per_epoch=2, tasks_per_trajectory=2, steps=20, unroll=10, n_val_tasks=3,
              progress=False)
    a, b = meta_train(fam, seed=5, **kw), meta_train(fam, seed=5, **kw)
    for pa, pb in zip(a.best.parameters(), b.best.parameters()):
        assert torch.equal(pa, pb)
    assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))


@pytest.mark.slow
def test_short_meta_training_beats_tuned_adam_on_held_out_quadratics():
    """The paper's first result, in miniature: ~15 s of meta-training, then step-100 loss on unseen tasks."""
    fam = QuadraticFamily()
    result = meta_train(fam, meta_lr=0.01, epochs=10, trajectories_per_epoch=20, tasks_per_trajectory=8, seed=0,
                        progress=False)
    test = fam.sample(100, 123, "test")
    lstm_final = run_learned(result.best, test, 100)[0][100].mean().item()
    adam = tune_learning_rate("adam", fam)
    adam_final = run_baseline("adam", adam.lr, test, 100)[0][100].mean().item()
    assert lstm_final < 0.7 * adam_final, (lstm_final, adam_final, adam.lr)


def test_meta_lr_search_tries_every_rate_and_picks_the_best():
    from l2l_core.training.meta_train import search_meta_lr

    best, table = search_meta_lr(QuadraticFamily(), lrs=(1e-4, 0.01), epochs=2, trajectories_per_epoch=4,
                                 tasks_per_trajectory=4, steps=20, unroll=10, n_val_tasks=4, progress=False)
    assert list(table.meta_lr) == [1e-4, 0.01]
    assert best == table.meta_lr[table.best_val_loss_sum.idxmin()]
    assert table.best_val_loss_sum.nunique() == 2
    with pytest.raises(ValueError, match="lrs=()"):
        search_meta_lr(QuadraticFamily(), lrs=())
