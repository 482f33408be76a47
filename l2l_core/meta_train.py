"""Meta-training: truncated backpropagation through optimizee trajectories, Adam on the LSTM weights.

One trajectory = ``steps`` optimizee updates split into unrolls of ``unroll`` steps. Within an
unroll the meta-loss is the sum of the optimizee losses f_t(theta_t) after each update (mean over
the tasks of the trajectory); after it, Adam updates the LSTM, and theta and the LSTM state are
detached (the graph is cut, the values carried on). Every one of the ``steps`` updates is thus
meta-trained. Gradients fed to the LSTM are detached (no second derivatives, as in the paper)
while theta_{t+1} = theta_t + g_t stays differentiable.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from .checks import check_int, check_positive_float, check_seed
from .lstm_optimizer import LSTMConfig, LSTMOptimizer
from .runners import run_learned
from .seeding import derive_seed
from .tasks import TaskBatch


def unroll_segments(steps: int, unroll: int) -> list[range]:
    """The update indices of each unroll; together they cover range(steps) exactly once."""
    check_int("steps", steps)
    check_int("unroll", unroll)
    if unroll > steps:
        raise ValueError(f"unroll={unroll} must not exceed steps={steps}")
    return [range(s, min(s + unroll, steps)) for s in range(0, steps, unroll)]


@dataclass
class TrajectoryResult:
    """Meta-losses of each unroll (mean over tasks, summed over its steps) and how many were skipped."""

    unroll_losses: list[float]
    skipped_updates: int


def train_trajectory(lstm: LSTMOptimizer, meta_optimizer: torch.optim.Optimizer, tasks: TaskBatch,
                     steps: int = 100, unroll: int = 20, grad_clip: float | None = None) -> TrajectoryResult:
    """Meta-train ``lstm`` on one trajectory of ``tasks`` (see the module docstring).

    A non-finite meta-loss or meta-gradient skips that meta-update (counted in the result) rather
    than writing NaN into the LSTM; ``grad_clip`` optionally clips the meta-gradient norm.
    """
    segments = unroll_segments(steps, unroll)
    theta = tasks.initial_params().requires_grad_(True)
    loss = tasks.loss(theta, 0)
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    theta = theta.detach()
    state = lstm.initial_state(theta.numel(), device=theta.device, dtype=theta.dtype)
    unroll_losses, skipped = [], 0
    for segment in segments:
        meta_loss = theta.new_zeros(())
        for t in segment:
            update, state = lstm(grad.reshape(-1), state)
            theta = theta + update.view_as(theta)
            loss = tasks.loss(theta, t + 1)
            meta_loss = meta_loss + loss.mean()
            if t + 1 < steps:
                (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)
        meta_optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(lstm.parameters(), grad_clip)
        finite = math.isfinite(meta_loss.item()) and all(
            torch.isfinite(p.grad).all() for p in lstm.parameters() if p.grad is not None)
        if finite:
            meta_optimizer.step()
        else:
            skipped += 1
        unroll_losses.append(meta_loss.item())
        theta = theta.detach()
        state = tuple(s.detach() for s in state)
    return TrajectoryResult(unroll_losses, skipped)


def validation_score(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int) -> float:
    """Mean over tasks of the summed loss over steps 0..T-1 (the thesis' metric); inf if it diverges."""
    losses, _ = run_learned(lstm, tasks, steps)
    total = losses[:steps].sum(0).mean().item()
    return total if math.isfinite(total) else math.inf


@dataclass
class MetaTrainResult:
    """The best LSTM by validation score, the LSTM after the last epoch, and the per-epoch history."""

    best: LSTMOptimizer
    last: LSTMOptimizer
    history: pd.DataFrame
    best_epoch: int


def meta_train(family, config: LSTMConfig | None = None, meta_lr: float | None = None, epochs: int = 10,
               trajectories_per_epoch: int = 20, tasks_per_trajectory: int = 1, steps: int = 100,
               unroll: int = 20, n_val_tasks: int = 20, seed: int = 0, grad_clip: float | None = None,
               progress: bool = True) -> MetaTrainResult:
    """Meta-train an LSTM optimizer on ``family``'s meta-train tasks, selecting by meta-validation.

    ``config`` and ``meta_lr`` default to the family's (no preprocessing, scale 1.0, lr 0.003 on
    quadratics; preprocessing, scale 0.1, lr 0.01 on MLPs, as in the thesis code). Epoch 0 of the
    history is the untrained LSTM. Same arguments and seed -> the same numbers.
    """
    config = config or family.default_lstm
    meta_lr = family.default_meta_lr if meta_lr is None else check_positive_float("meta_lr", meta_lr)
    check_int("epochs", epochs, minimum=0)
    check_int("trajectories_per_epoch", trajectories_per_epoch)
    check_int("tasks_per_trajectory", tasks_per_trajectory)
    check_int("n_val_tasks", n_val_tasks)
    check_seed("seed", seed)
    unroll_segments(steps, unroll)
    if grad_clip is not None:
        check_positive_float("grad_clip", grad_clip)

    device = getattr(family, "device", "cpu")
    lstm = LSTMOptimizer(config, seed=seed).to(device)
    meta_optimizer = torch.optim.Adam(lstm.parameters(), lr=meta_lr)
    val_tasks = family.sample(n_val_tasks, seed, split="meta_val")
    best_score = validation_score(lstm, val_tasks, steps)
    best_state, best_epoch = copy.deepcopy(lstm.state_dict()), 0
    rows = [dict(epoch=0, meta_loss=math.nan, val_loss_sum=best_score, skipped_updates=0, seconds=0.0)]
    bar = tqdm(total=epochs * trajectories_per_epoch, desc=f"meta-train {family.describe()}", disable=not progress)
    for epoch in range(1, epochs + 1):
        start, losses, skipped = time.perf_counter(), [], 0
        for j in range(trajectories_per_epoch):
            tasks = family.sample(tasks_per_trajectory, derive_seed("trajectory", seed, epoch, j), split="meta_train")
            result = train_trajectory(lstm, meta_optimizer, tasks, steps, unroll, grad_clip)
            losses.append(sum(result.unroll_losses))
            skipped += result.skipped_updates
            bar.update(1)
        score = validation_score(lstm, val_tasks, steps)
        if score < best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(lstm.state_dict()), epoch
        rows.append(dict(epoch=epoch, meta_loss=sum(losses) / len(losses), val_loss_sum=score,
                         skipped_updates=skipped, seconds=time.perf_counter() - start))
        bar.set_postfix(val=f"{score:.4g}", best=f"{best_score:.4g}")
    bar.close()
    best = LSTMOptimizer(config, seed=seed).to(device)
    best.load_state_dict(best_state)
    return MetaTrainResult(best, lstm, pd.DataFrame(rows), best_epoch)
