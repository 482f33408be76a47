"""One meta-training trajectory (truncated backpropagation through optimizee updates) and the validation score.

One trajectory = ``steps`` optimizee updates split into unrolls of ``unroll`` steps. Within an
unroll the meta-loss is the sum of the optimizee losses f_t(theta_t) after each update (mean over
the tasks of the trajectory); after it, Adam updates the LSTM, and theta and the LSTM state are
detached (the graph is cut, the values carried on). Every one of the ``steps`` updates is thus
meta-trained. Gradients fed to the LSTM are detached (no second derivatives, as in the paper)
while theta_{t+1} = theta_t + g_t stays differentiable.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from l2l_core.checks import NonFiniteWarning, check_int
from l2l_core.evaluation.runners import run_learned
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.tasks.families import TaskBatch


Schedule = Callable[[int, int], list[tuple[range, int]]]  # (steps, unroll) -> segments, as unroll_segments


def unroll_segments(steps: int, unroll: int) -> list[tuple[range, int]]:
    """(update indices, k) of each unroll: the unroll runs those updates and meta-trains its first k (their losses
    form its meta-loss, then the LSTM takes one meta-step); together they cover range(steps) once, in order.

    Update t turns theta_t into theta_{t+1}. This schedule meta-trains every update (k = the unroll's length).
    It is ``meta_train``'s default ``schedule``; another (same arguments, same form) trains other updates (the
    errata chapter's defect c).
    """
    check_int("steps", steps)
    check_int("unroll", unroll)
    if unroll > steps:
        raise ValueError(f"unroll={unroll} must not exceed steps={steps}")
    return [(range(s, min(s + unroll, steps)), min(unroll, steps - s)) for s in range(0, steps, unroll)]


@dataclass
class TrajectoryResult:
    """Meta-losses of each unroll (mean over tasks, summed over its steps) and how many were skipped."""

    unroll_losses: list[float]
    skipped_updates: int


def train_trajectory(lstm: LSTMOptimizer, meta_optimizer: torch.optim.Optimizer, tasks: TaskBatch,
                     steps: int = 100, unroll: int = 20, grad_clip: float | None = None,
                     schedule: Schedule = unroll_segments) -> TrajectoryResult:
    """Meta-train ``lstm`` on one trajectory of ``tasks`` (see the module docstring).

    Numerical guard: a NaN/inf optimizee loss or meta-gradient is reported (NonFiniteWarning, with the
    step and task seed) and that meta-update is not applied; since theta cannot recover, the rest of the
    trajectory is dropped too (all counted in ``skipped_updates``). ``grad_clip`` optionally clips the
    meta-gradient norm.
    """
    segments = schedule(steps, unroll)
    theta = tasks.initial_params().requires_grad_(True)
    loss = tasks.loss(theta, 0)
    (grad,) = torch.autograd.grad(loss.sum(), theta)
    theta = theta.detach()
    state = lstm.initial_state(theta.numel(), device=theta.device, dtype=theta.dtype)
    unroll_losses, skipped = [], 0
    for k, (segment, n_trained) in enumerate(segments):
        meta_loss = theta.new_zeros(())
        first_bad = None
        trained = n_trained > 0
        for t in segment:
            update, state = lstm.step_tasks(grad, state, tasks.tensor_sizes)
            if t >= segment.start + n_trained:  # an untrained update: computed, never given a meta-gradient
                update = update.detach()
            theta = theta + update
            if not theta.requires_grad:  # an untrained start: the gradient fed to the LSTM still needs theta's graph
                theta.requires_grad_(True)
            loss = tasks.loss(theta, t + 1)
            if t < segment.start + n_trained:
                meta_loss = meta_loss + loss.mean()
            if first_bad is None and not torch.isfinite(loss).all():
                first_bad = (t + 1, [tasks.task_seeds[i] for i in (~torch.isfinite(loss)).nonzero().flatten().tolist()])
            if t + 1 < steps:
                (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)
        meta_optimizer.zero_grad(set_to_none=True)
        bad_grads = []
        if first_bad is None and trained:
            meta_loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(lstm.parameters(), grad_clip)
            bad_grads = [n for n, p in lstm.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        unroll_losses.append(meta_loss.item())
        if first_bad is not None or bad_grads:
            # policy: never apply a non-finite meta-update; the trajectory's theta cannot recover, so stop it
            skipped += len(segments) - k
            where = (f"optimizee loss at step {first_bad[0]} for task seed(s) {first_bad[1]}" if first_bad
                     else f"meta-gradient of {bad_grads} in unroll {k} (steps {segment.start + 1}-{segment.stop})")
            warnings.warn(f"non-finite {where}: meta-update skipped and the rest of this trajectory dropped",
                          NonFiniteWarning, stacklevel=2)
            break
        if trained:
            meta_optimizer.step()
        theta = theta.detach()
        state = tuple(s.detach() for s in state)
    return TrajectoryResult(unroll_losses, skipped)


def validation_score(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int) -> float:
    """Mean over tasks of the summed loss over steps 0..T-1 (the thesis' metric); inf if it diverges."""
    return validation_scores(lstm, tasks, steps)[0]


def validation_scores(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int) -> tuple[float, float]:
    """The validation score and the do-nothing score (T x the mean step-0 loss: an optimizer that never moves)."""
    losses, _ = run_learned(lstm, tasks, steps)
    total = losses[:steps].sum(0).mean().item()
    return (total if math.isfinite(total) else math.inf), steps * losses[0].mean().item()
