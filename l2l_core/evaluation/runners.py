"""Run an optimizer (learned or torch.optim) on a task batch without a meta-gradient tape.

Both runners return the loss of every task at steps 0..T (step t = loss at theta_t on minibatch t,
so steps 0..T-1 are the losses the optimizer saw, as summed in the thesis) and the final parameters.
"""
from __future__ import annotations

import torch

from l2l_core.optimizers import fused
from l2l_core.optimizers.baselines import build_baseline
from l2l_core.checks import check_int
from l2l_core.optimizers.lstm import InferenceRunner, LSTMOptimizer
from l2l_core.optimizers.state_layouts import state_layout
from l2l_core.tasks.families import TaskBatch


def _loss_and_grad(tasks: TaskBatch, theta: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = tasks.loss(theta, step)
        (grad,) = torch.autograd.grad(loss.sum(), theta)
    return loss.detach(), grad


# Without the fused kernels the LSTM's elementwise work is memory-bound once its (80, N) gate tensors
# leave the L2 cache (4 MiB per core on the development machine), so evaluation then applies it to blocks
# of at most this many coordinates; the optimizer is coordinatewise, so blocks give exactly the same
# updates. The fused kernels never materialise the gates (they work in 64-coordinate blocks), so with
# them one block covers everything (measured: 20 MNIST tasks x 50 steps, 1.33 s vs 1.55-1.73 s in 16k blocks).
LSTM_BLOCK = 16384


@torch.no_grad()
def run_learned(lstm: LSTMOptimizer, tasks: TaskBatch, steps: int,
                block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise ``tasks`` for ``steps`` steps with the LSTM; returns (losses (steps+1, n), theta_T).
    ``block``: coordinates per LSTM application (default: all with the fused kernels, else LSTM_BLOCK)."""
    check_int("steps", steps)
    theta = tasks.initial_params()
    n = theta.numel()
    kernels = fused.usable(theta)
    block = (n if kernels else LSTM_BLOCK) if block is None else check_int("block", block)
    bounds = [(a, min(a + block, n)) for a in range(0, n, block)]
    layout = state_layout(lstm.config.state_layout)
    fast = layout.fast_runner if layout is not None else None
    if fast is not None and fast.supported(lstm, tasks.tensor_sizes, theta):  # the layout's own no-tape runner
        bounds = [(0, n)]
        runner = fast(lstm, theta.shape[0], tasks.tensor_sizes, device=theta.device, dtype=theta.dtype)
        apply = lambda k, g: runner.step(g)
    elif layout is not None:  # state moves between coordinates (thesis defect d), so one block
        bounds = [(0, n)]
        states = [lstm.initial_state(n, device=theta.device, dtype=theta.dtype)]

        def apply(k, g):
            update, states[k] = lstm.step_tasks(g.view_as(theta), states[k], tasks.tensor_sizes)
            return update.reshape(-1)
    elif InferenceRunner.supported(lstm):  # preallocated buffers, no concatenation (the paper's 2 x 20 LSTM)
        scratch = None if kernels else theta.new_empty(4 * lstm.config.hidden_size * min(block, n))
        runners = [InferenceRunner(lstm, b - a, device=theta.device, dtype=theta.dtype, scratch=scratch)
                   for a, b in bounds]
        apply = lambda k, g: runners[k].step(g)
    else:
        states = [lstm.initial_state(b - a, device=theta.device, dtype=theta.dtype) for a, b in bounds]

        def apply(k, g):
            update, states[k] = lstm(g, states[k])
            return update
    losses = []
    for t in range(steps):
        loss, grad = _loss_and_grad(tasks, theta, t)
        losses.append(loss)
        grad = grad.reshape(-1)
        update = torch.empty_like(grad)
        for k, (a, b) in enumerate(bounds):
            update[a:b] = apply(k, grad[a:b])
        theta = theta + update.view_as(theta)
    losses.append(tasks.loss(theta, steps))
    return torch.stack(losses), theta


def run_baselines(name: str, lrs: list[float], tasks: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the named torch.optim baseline at every rate in ``lrs`` at once (``run_baseline_set``).

    Returns losses (len(lrs), steps+1, n_tasks) and final parameters (len(lrs), n_tasks, dim).
    """
    return run_baseline_set([(name, lr) for lr in lrs], tasks, steps)


def run_baseline_set(baselines: list[tuple[str, float]], tasks: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run several (name, lr) baselines on the same ``tasks`` at once: the tasks are stacked once per baseline
    (``repeat``: each step's minibatches are gathered once for all copies) and every name gets one torch.optim
    optimizer with one param group per rate. Tasks never interact and these optimizers are elementwise, so
    this equals separate runs (to float rounding: the stacked first-layer product sums in another order).

    Returns losses (len(baselines), steps+1, n_tasks) and final parameters (len(baselines), n_tasks, dim).
    """
    check_int("steps", steps)
    if not baselines:
        raise ValueError("baselines=[] must name at least one (optimizer, lr) pair")
    stacked = tasks.repeat(len(baselines))
    n = tasks.n_tasks
    # every baseline's parameters are a block of rows of one tensor (the optimizers update them in place), so
    # the stacked loss reads them without concatenating a copy each step, and they are returned without one
    theta = tasks.initial_params().repeat(len(baselines), 1)
    params = [theta[k * n:(k + 1) * n].requires_grad_(True) for k in range(len(baselines))]
    groups: dict[str, list[dict]] = {}
    for (name, lr), p in zip(baselines, params):
        groups.setdefault(name, []).append({"params": [p], "lr": lr})
    optimizers = [build_baseline(name, g, lr=g[0]["lr"]) for name, g in groups.items()]
    losses = []
    for t in range(steps + 1):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        flat = theta.detach().requires_grad_(True)
        loss = stacked.loss(flat, t)
        losses.append(loss.detach().view(len(baselines), n))
        if t == steps:
            break
        loss.sum().backward()
        for k, p in enumerate(params):
            p.grad = flat.grad[k * n:(k + 1) * n]
        for optimizer in optimizers:
            optimizer.step()
    return torch.stack(losses, dim=1), theta.detach().view(len(baselines), n, -1)


def run_baseline(name: str, lr: float, tasks: TaskBatch, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One baseline at one learning rate; returns (losses (steps+1, n), theta_T)."""
    losses, theta = run_baselines(name, [lr], tasks, steps)
    return losses[0], theta[0]
