"""Determinism across processes, resume after SIGKILL, numerical guards."""
import json
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from l2l_core.optimizers.baselines import Baseline
from l2l_core.checks import NonFiniteWarning
from l2l_core.evaluation.evaluate import evaluate, summarize
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.training.meta_train import meta_train, train_trajectory
from l2l_core.tasks.families import QuadraticFamily, QuadraticTasks

RUN = textwrap.dedent("""
    import sys, json
    import pandas as pd
    from l2l_core.tasks.families import QuadraticFamily, MLPFamily
    from l2l_core.training.meta_train import meta_train
    from l2l_core.optimizers.checkpoint import save_optimizer
    from l2l_core.evaluation.tuning import tune_learning_rate
    from l2l_core.evaluation.evaluate import compare
    out, ckpt, epochs, data_root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fam = QuadraticFamily()
    r = meta_train(fam, epochs=epochs, trajectories_per_epoch=8, tasks_per_trajectory=4, steps=40, unroll=20,
                   n_val_tasks=4, seed=3, progress=False, checkpoint_path=ckpt if ckpt != "-" else None)
    save_optimizer(out + ".pt", r.best, seed=3)
    mlp = MLPFamily(data_root=data_root)
    adam = tune_learning_rate("adam", mlp, n_tasks=2, steps=5).baseline
    frame = pd.concat([compare({"LSTM": r.best, "Adam": adam}, fam, n_tasks=3, steps=10),
                       compare({"LSTM": r.best, "Adam": adam}, mlp, n_tasks=2, steps=5)], ignore_index=True)
    frame.to_parquet(out + ".parquet")
    r.history.drop(columns="seconds").to_csv(out + ".history.csv", index=False)
    print(json.dumps({"resumed_after_epoch": r.resumed_after_epoch}))
""")


def run(tmp_path, name, ckpt="-", epochs=3, data_root="."):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / name), str(ckpt), str(epochs), str(data_root)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_same_seed_gives_bit_identical_tables_and_checkpoints_across_processes(tmp_path, tiny_mnist_root):
    a, b = run(tmp_path, "a", data_root=tiny_mnist_root), run(tmp_path, "b", data_root=tiny_mnist_root)
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    fa, fb = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (tmp_path / "a.history.csv").read_bytes() == (tmp_path / "b.history.csv").read_bytes()


@pytest.mark.slow
def test_sigkill_then_restart_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_mnist_root):
    ckpt = tmp_path / "state.pt"
    victim = run(tmp_path, "killed", ckpt, epochs=12, data_root=tiny_mnist_root)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    epoch_at_kill = torch.load(ckpt, weights_only=False)["epoch"]
    assert 1 <= epoch_at_kill < 12
    resumed = run(tmp_path, "resumed", ckpt, epochs=12, data_root=tiny_mnist_root)
    info = json.loads(resumed.communicate(timeout=300)[0].strip().splitlines()[-1])
    assert info["resumed_after_epoch"] >= epoch_at_kill
    whole = run(tmp_path, "whole", "-", epochs=12, data_root=tiny_mnist_root)
    assert whole.wait(timeout=300) == 0
    a = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "resumed.history.csv").read_bytes() == (tmp_path / "whole.history.csv").read_bytes()


def test_training_state_from_other_arguments_is_refused(tmp_path):
    fam = QuadraticFamily()
    kw = dict(epochs=1, trajectories_per_epoch=1, tasks_per_trajectory=1, steps=10, unroll=10, n_val_tasks=1,
              progress=False, checkpoint_path=tmp_path / "s.pt")
    meta_train(fam, seed=0, **kw)
    with pytest.raises(ValueError, match="written for other arguments.*seed"):
        meta_train(fam, seed=1, **kw)
    (tmp_path / "s.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable training state"):
        meta_train(fam, seed=0, **kw)


@dataclass
class ExplodingTasks(QuadraticTasks):
    """Quadratics whose task 1 returns inf from step ``bad_step`` on."""

    bad_step: int = 5

    def loss(self, theta, step):
        loss = super().loss(theta, step)
        if step >= self.bad_step:
            loss = loss * torch.tensor([1.0, float("inf")] + [1.0] * (len(loss) - 2))
        return loss


def test_exploding_task_is_reported_with_step_and_task_and_never_applied():
    base = QuadraticFamily().sample(3, 0, "meta_train")
    tasks = ExplodingTasks(base.W, base.y, base.task_seeds, bad_step=5)
    lstm = LSTMOptimizer(QuadraticFamily().default_lstm, seed=0)
    before = [p.detach().clone() for p in lstm.parameters()]
    opt = torch.optim.Adam(lstm.parameters(), lr=0.01)
    with pytest.warns(NonFiniteWarning, match=rf"step 5 for task seed\(s\) \[{base.task_seeds[1]}\]"):
        result = train_trajectory(lstm, opt, tasks, steps=40, unroll=10)
    assert result.skipped_updates == 4  # the first unroll holds step 5: nothing applied, trajectory dropped
    assert all(torch.equal(p, b) for p, b in zip(lstm.parameters(), before))
    assert all(torch.isfinite(p).all() for p in lstm.parameters())


def test_diverging_evaluation_is_flagged_not_averaged():
    fam = QuadraticFamily()
    with pytest.warns(NonFiniteWarning, match="SGD diverged"):
        frame = evaluate(Baseline("sgd", 1.0), fam, n_tasks=4, steps=60)
    assert frame.diverged.all()
    assert not np.isinf(frame.loss).any()
    table = summarize(pd.concat([frame, evaluate(Baseline("sgd", 0.01), fam, n_tasks=4, steps=60, label="SGD small")]))
    assert table.loc[0, "diverged"] == 4 and table.loc[1, "diverged"] == 0
    assert np.isfinite(table.loc[1, "sum@100"]) if "sum@100" in table else True
