"""The thesis code's four defects, each expressed through a general hook of the library (all off by default).

(a) ``as_tuned_by_sgd``: every baseline's rate chosen by plain SGD runs (NAG's by SGD with Nesterov momentum);
    Adam and RMSprop then run at SGD's rate. Applied to correct tunings (``evaluation.tuning``).
(b) ``EMNIST_DEFECT_CONFIG``: the LSTM without gradient preprocessing and output scale (an ``LSTMConfig``).
(c) ``thesis_loop_segments``: the thesis loop's meta-update schedule, a ``meta_train(schedule=...)``.
(d) ``SHARED_STATE``: every parameter tensor reads and writes the LSTM state of coordinates 0..size-1 (a state
    offset never advanced), a registered ``LSTMConfig(state_layout=...)`` with its own no-tape runner.
Importing this module registers (d)'s layout, so LSTMs saved with it load wherever this module is imported.
"""
from __future__ import annotations

import functools

import torch

from l2l_core.evaluation.tuning import TuningResult
from l2l_core.optimizers import fused
from l2l_core.optimizers.baselines import BASELINES, baseline_label
from l2l_core.optimizers.lstm import LSTMConfig, LSTMOptimizer, kernel_weights
from l2l_core.optimizers.state_layouts import StateLayout, register_state_layout
from l2l_core.training.meta_train import unroll_segments

# (a) its tuning loop passed a stale variable: each baseline's rate came from the runs of this optimizer
TUNED_AS = {"sgd": "sgd", "rmsprop": "sgd", "adam": "sgd", "nag": "nag"}


def as_tuned_by_sgd(tuned: dict[str, TuningResult], names=tuple(BASELINES)) -> dict[str, TuningResult]:
    """Defect (a) from correct tunings: each of ``names`` gets the rate (and grid) of the optimizer whose runs
    chose it in the thesis code (``TUNED_AS``), which must be among ``tuned``."""
    out = {}
    for name in names:
        runner = tuned[TUNED_AS[name]]
        out[name] = TuningResult(name, runner.lr, runner.table.assign(optimizer=baseline_label(name),
                                                                      tuned_as=baseline_label(runner.name)), runner.name)
    return out


# (b) the EMNIST Letters LSTM was meta-trained on raw gradients with unit output scale (it stayed at chance)
EMNIST_DEFECT_CONFIG = LSTMConfig(preprocess=False, output_scale=1.0)


def thesis_loop_segments(steps: int, unroll: int) -> list[tuple[range, int]]:
    """Defect (c) as a meta-training schedule (see ``unroll_segments`` for the form).

    The thesis loop took the loss at each step *before* that step's update, made the update, and when
    ``t % unroll == 0`` back-propagated, stepped the meta-optimizer and detached the update just made. So only
    updates 1..unroll-1, unroll+1..2*unroll-1, ... up to the last boundary below ``steps`` get a meta-gradient
    (1-19, 21-39, 41-59, 61-79 for 100 steps, unroll 20); the boundary updates (0, 20, 40, 60, 80) are computed
    with the weights *before* that meta-step and never trained, and the updates after the last boundary (81-99)
    are run untrained.
    """
    unroll_segments(steps, unroll)  # the same argument checks
    boundaries = list(range(0, steps, unroll))
    segments = [(range(0, 1), 0)]  # update 0: the meta-step at iteration 0 has no gradient to take
    for b, nxt in zip(boundaries, boundaries[1:]):
        segments.append((range(b + 1, nxt + 1), nxt - b - 1))  # ends with the untrained boundary update nxt
    if boundaries[-1] + 1 < steps:
        segments.append((range(boundaries[-1] + 1, steps), 0))
    return segments


@functools.lru_cache(maxsize=32)
def shared_state_runs(sizes: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Defect (d) as column copies (source start, destination start, length) within each task's columns:
    ``read`` gives tensor t's coordinates the old state's columns 0..size-1; ``write`` fills new state
    column j from the last tensor with more than j coordinates (in layout order)."""
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    read = tuple((0, offsets[t], size) for t, size in enumerate(sizes))
    write, covered = [], 0
    for t in reversed(range(len(sizes))):
        if sizes[t] > covered:
            write.append((offsets[t] + covered, covered, sizes[t] - covered))
            covered = sizes[t]
    return read, tuple(write)


class SharedStateRunner:
    """Defect (d) without autograd, in place: evaluation's fast path for the ``SHARED_STATE`` layout.

    Same updates as ``LSTMOptimizer.step_tasks`` without its state copies (a task batch's state is ~25 MB, so
    copying it several times a step dominated). Each parameter tensor of each task is one kernel call per layer
    that reads the old state of columns 0..size-1 and writes its outputs into the tensor's own columns; the updates
    come from there in one matmul. The first tensor (the largest) reads and writes its own columns, in place; the
    old columns that the later tensors read (0..max of their sizes - 1, 200 of an MNIST MLP's 15,910) are copied
    aside first. So the runner keeps one state, not an old and a new one: half the memory of a chunk of tasks, and
    the same kernel calls on the same values (tested bit for bit). Then the new state is assembled in place: the
    later tensors' last-written pieces are copied down and the columns none wrote are zeroed. Needs the fused
    kernels and a first tensor at least as large as the others (``supported``); ``run_learned`` uses
    ``step_tasks`` otherwise.
    """

    def __init__(self, lstm: LSTMOptimizer, n_tasks: int, tensor_sizes, device=None, dtype=torch.float32):
        self.sizes = tuple(int(s) for s in tensor_sizes)
        if not self.supported(lstm, self.sizes, torch.empty(0, device=device, dtype=dtype)):
            raise ValueError(f"tensor_sizes={self.sizes}: the shared-state runner needs the fused kernels and a "
                             "first tensor at least as large as the others")
        cfg = lstm.config
        self.lstm, self.n, self.dim, self.hidden = lstm, n_tasks, sum(self.sizes), cfg.hidden_size
        self.offsets = [sum(self.sizes[:t]) for t in range(len(self.sizes))]
        self.head = max(self.sizes[1:], default=0)  # old columns the later tensors read: 0..head-1 of each task
        zeros = lambda width: [torch.zeros(self.hidden, width, device=device, dtype=dtype)
                               for _ in range(2 * cfg.num_layers)]
        self.state, self.old_head = zeros(n_tasks * self.dim), zeros(n_tasks * self.head)
        _, write_runs = shared_state_runs(self.sizes)
        self.write_runs = [(s, d, k) for s, d, k in write_runs if s != d]
        self.zero_from = self.sizes[0]  # columns no tensor wrote: max(sizes) .. dim - 1
        self.packed, self.out_weight, self.out_bias = kernel_weights(lstm)

    @staticmethod
    def supported(lstm: LSTMOptimizer, tensor_sizes, example: torch.Tensor) -> bool:
        sizes = list(tensor_sizes) if tensor_sizes is not None else []
        return len(sizes) > 0 and sizes[0] == max(sizes) and fused.usable(example, lstm.output_weight)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> torch.Tensor:
        """The updates (n_tasks * dim,) for the task-major gradients (n_tasks * dim,); advances the state."""
        x_all, state, layers = self.lstm.features(grad), self.state, len(self.packed)
        for s, kept in zip(state, self.old_head):  # the old columns 0..head-1 of every task, before they change
            kept.view(self.hidden, self.n, self.head).copy_(s.view(self.hidden, self.n, self.dim)[..., : self.head])
        for i in range(self.n):
            base = i * self.dim
            for t, (offset, size) in enumerate(zip(self.offsets, self.sizes)):
                own = slice(base + offset, base + offset + size)
                # the first tensor reads its own (old) columns in place; the later ones read the copies
                old = state if t == 0 else self.old_head
                read = own if t == 0 else slice(i * self.head, i * self.head + size)
                x = x_all[:, own]
                for layer in range(layers):
                    h, c = state[2 * layer][:, own], state[2 * layer + 1][:, own]
                    fused.layer_step(self.packed[layer], x, old[2 * layer][:, read], old[2 * layer + 1][:, read], h, c)
                    x = h
        update = torch.addmm(self.out_bias.unsqueeze(1), self.out_weight, state[-2]).squeeze(0)
        for s in state:  # the sources (later tensors' columns) lie past every destination (< sizes[0])
            s3 = s.view(self.hidden, self.n, self.dim)
            for src, dst, k in self.write_runs:
                s3[..., dst:dst + k] = s3[..., src:src + k]
            s3[..., self.zero_from:] = 0
        return update


SHARED_STATE = f"{__name__}:thesis_shared_state"  # (d); the module part lets any process find it (state_layouts)
register_state_layout(SHARED_STATE, StateLayout(shared_state_runs, SharedStateRunner))
