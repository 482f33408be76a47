"""Where each parameter tensor's LSTM state lives: a named layout, registered, chosen by ``LSTMConfig.state_layout``.

Normally every coordinate owns its state (``PER_COORDINATE``: nothing to do). Another layout maps a task's parameter
tensors (sizes, in layout order) to column runs (source start, destination start, length) within each task's
columns: ``read`` says which old-state columns each coordinate reads, ``write`` which new-state column keeps which
coordinate's output. It may bring a no-tape runner for evaluation. The errata chapter registers the thesis code's
layout (defect d, ``l2l_core.errata.defects``).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Callable

import torch

PER_COORDINATE = "per_coordinate"


@dataclass(frozen=True)
class StateLayout:
    """``runs(sizes) -> (read, write)``; ``fast_runner``: an optional class with ``supported(lstm, sizes, example)``,
    ``__init__(lstm, n_tasks, sizes, device=, dtype=)`` and ``step(grad) -> update`` (no tape)."""

    runs: Callable[[tuple[int, ...]], tuple[tuple, tuple]]
    fast_runner: type | None = None


_LAYOUTS: dict[str, StateLayout] = {}


def register_state_layout(name: str, layout: StateLayout) -> None:
    """Make ``name`` usable as ``LSTMConfig(state_layout=name)``."""
    if name == PER_COORDINATE:
        raise ValueError(f"name={name!r} is the built-in layout; choose another name")
    _LAYOUTS[name] = layout


def state_layout(name: str) -> StateLayout | None:
    """The registered layout called ``name``; None for ``PER_COORDINATE``. A name of the form ``module:layout``
    imports ``module`` first if the layout is not registered yet, so a process that only unpickled an LSTM (a
    Dask worker) finds it too."""
    if name == PER_COORDINATE:
        return None
    if name not in _LAYOUTS and ":" in name:
        importlib.import_module(name.split(":", 1)[0])  # the module registers its layouts on import
    if name not in _LAYOUTS:
        raise ValueError(f"state_layout={name!r} is not registered; registered: {[PER_COORDINATE, *_LAYOUTS]} "
                         "(name a layout 'module:layout' so that its module is imported when needed)")
    return _LAYOUTS[name]


def _complement(ranges, width: int) -> tuple[tuple[int, int], ...]:
    """The column ranges of [0, width) that none of ``ranges`` ((start, stop) pairs) covers."""
    covered = torch.zeros(width, dtype=torch.bool)
    for start, stop in ranges:
        covered[start:stop] = True
    edges = torch.diff(torch.cat((torch.tensor([0]), (~covered).int(), torch.tensor([0])))).nonzero().flatten().tolist()
    return tuple(zip(edges[::2], edges[1::2]))


@functools.lru_cache(maxsize=64)
def _column_plan(runs: tuple, width: int) -> tuple:
    """How ``ColumnRuns`` writes its output and its gradient with one pass per run and no full zero-fill:
    (output columns to zero, per run whether its gradient copies (first writer) or adds, gradient columns
    to zero). Runs' destinations never overlap; a source range either is new or lies inside earlier ones."""
    zero_out = _complement([(d, d + k) for _, d, k in runs], width)
    covered, grad_ops = torch.zeros(width, dtype=torch.bool), []
    for src, _, k in runs:
        part = covered[src:src + k]
        if part.all():
            grad_ops.append("add")
        elif not part.any():
            grad_ops.append("copy")
        else:
            raise ValueError(f"runs={runs}: a source range overlaps earlier ones only in part")
        covered[src:src + k] = True
    zero_grad = _complement([(s, s + k) for s, _, k in runs], width)
    return zero_out, tuple(grad_ops), zero_grad


class ColumnRuns(torch.autograd.Function):
    """out[..., d:d+k] = x[..., s:s+k] for each run (s, d, k) along the last axis, zeros elsewhere; the
    backward adds the runs back. A layout's state copies (slicing and cat would fill a whole zero tensor per
    slice in backward)."""

    @staticmethod
    def forward(ctx, x, runs):
        width = x.shape[-1]
        zero_out, ctx.grad_ops, ctx.zero_grad = _column_plan(runs, width)
        ctx.runs, ctx.width = runs, width
        out = torch.empty_like(x)
        for src, dst, k in runs:
            out[..., dst:dst + k] = x[..., src:src + k]
        for start, stop in zero_out:
            out[..., start:stop] = 0
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad = torch.empty_like(grad_out)
        for (src, dst, k), op in zip(ctx.runs, ctx.grad_ops):
            if op == "copy":
                grad[..., src:src + k] = grad_out[..., dst:dst + k]
            else:
                grad[..., src:src + k] += grad_out[..., dst:dst + k]
        for start, stop in ctx.zero_grad:
            grad[..., start:stop] = 0
        return grad, None
