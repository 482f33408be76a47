"""The learned optimizer: a coordinatewise two-layer LSTM shared by every parameter coordinate.

Every coordinate of the optimizee is a row of a batch: one set of LSTM weights (phi) is applied to
all coordinates, each with its own hidden state, so the optimizer works for any number of
parameters and any number of stacked tasks. Gates are fused (one matmul per layer).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import fused
from .checks import check_int, check_positive_float
from .preprocess import preprocess_features

LSTMState = tuple[torch.Tensor, ...]  # (h_1, c_1, h_2, c_2, ...), each of shape (hidden_size, N)


@dataclass(frozen=True)
class LSTMConfig:
    """Architecture of the learned optimizer; defaults are the paper's 2 x 20 LSTM."""

    hidden_size: int = 20
    num_layers: int = 2
    preprocess: bool = True
    output_scale: float = 0.1
    preprocess_p: float = 10.0
    # Thesis-code defect (d), for the errata chapter only: the state offset is never advanced, so every
    # parameter tensor reads and writes LSTM state from coordinate 0 (see LSTMOptimizer.step_tasks).
    shared_state_offset_bug: bool = False

    def __post_init__(self):
        check_int("hidden_size", self.hidden_size)
        check_int("num_layers", self.num_layers)
        check_positive_float("output_scale", self.output_scale)
        check_positive_float("preprocess_p", self.preprocess_p)
        for name in ("preprocess", "shared_state_offset_bug"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}={getattr(self, name)!r} must be True or False")

    def to_dict(self) -> dict:
        return asdict(self)


def cell_step_no_grad(gates: torch.Tensor, c_prev: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor) -> None:
    """One LSTM cell step without a tape in PyTorch ops (the path without fused kernels), from gate
    pre-activations (4H, N) (clobbered): writes c_out = f * c_prev + i * g and h_out = o * tanh(c_out).
    ``c_out`` may be ``c_prev`` or a row block of ``gates`` (the spent forget gate)."""
    hidden = c_prev.shape[0]
    gates[: 3 * hidden].sigmoid_()
    i, f, o, candidate = gates.split(hidden)
    candidate.tanh_()
    torch.mul(f, c_prev, out=c_out).addcmul_(i, candidate)
    torch.tanh(c_out, out=h_out).mul_(o)


class LSTMOptimizer(nn.Module):
    """m(grad, state; phi) -> (update, new state), applied to every coordinate independently."""

    def __init__(self, config: LSTMConfig | None = None, seed: int = 0):
        super().__init__()
        self.config = config or LSTMConfig()
        hidden = self.config.hidden_size
        input_size = 2 if self.config.preprocess else 1
        bound = 1.0 / math.sqrt(hidden)  # torch.nn.LSTMCell / nn.Linear default initialisation
        generator = torch.Generator().manual_seed(seed)

        def uniform(*shape):
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound, generator=generator))

        self.gate_weights = nn.ParameterList()
        self.gate_biases = nn.ParameterList()
        for layer in range(self.config.num_layers):
            fan_in = (input_size if layer == 0 else hidden) + hidden
            # rows: input, forget, output gates (sigmoid) then the cell candidate (tanh)
            self.gate_weights.append(uniform(4 * hidden, fan_in))
            self.gate_biases.append(uniform(4 * hidden))
        self.output_weight = uniform(1, hidden)
        self.output_bias = uniform(1)

    def initial_state(self, n_coordinates: int, device=None, dtype=torch.float32) -> LSTMState:
        """Zero hidden and cell states, feature-major: each of shape (hidden_size, n_coordinates)."""
        zeros = lambda: torch.zeros(self.config.hidden_size, n_coordinates, device=device, dtype=dtype)
        return tuple(zeros() for _ in range(2 * self.config.num_layers))

    def features(self, grad: torch.Tensor) -> torch.Tensor:
        """The LSTM's input for a flat gradient, feature-major: preprocessed (2, N) or raw (1, N)."""
        if self.config.preprocess:
            return preprocess_features(grad, self.config.preprocess_p)
        return grad.unsqueeze(0)

    def forward(self, grad: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Updates (N,) for a flat gradient (N,) and the next state.

        Coordinates run along the last axis, so every gate is a contiguous block of rows. With the fused
        kernels (CPU, float32) each layer is one kernel call forward and one backward; otherwise the gates
        come from one matmul per layer (biases ride in it as a row of ones) followed by the cell's
        elementwise ops, in place when there is no gradient tape (evaluation).
        """
        hidden = self.config.hidden_size
        x = self.features(grad)
        inplace = not torch.is_grad_enabled()
        new_state = []
        for layer, (weight, bias) in enumerate(zip(self.gate_weights, self.gate_biases)):
            h, c = state[2 * layer], state[2 * layer + 1]
            if fused.usable(x, h, c, weight):
                if inplace:
                    h_new, c_new = torch.empty_like(c), torch.empty_like(c)
                    fused.layer_step(fused.pack(weight, bias), x, h, c, h_new, c_new)
                    h, c = h_new, c_new
                else:
                    h, c = fused.FusedLayer.apply(x, h, c, weight, bias)
            else:
                ones = x.new_ones(1, x.shape[1])
                gates = torch.cat((weight, bias.unsqueeze(1)), dim=1) @ torch.cat((x, h, ones), dim=0)
                if inplace:
                    h = torch.empty_like(c)
                    cell_step_no_grad(gates, c, gates[hidden: 2 * hidden], h)  # c_t overwrites the spent f rows
                    c = gates[hidden: 2 * hidden]
                else:
                    sig, candidate = gates.split((3 * hidden, hidden))
                    i, f, o = sig.sigmoid().split(hidden)
                    c = f * c + i * candidate.tanh()
                    h = o * c.tanh()
            new_state += [h, c]
            x = h
        out = torch.addmm(self.output_bias.unsqueeze(1), self.output_weight, x)
        return out.squeeze(0) * self.config.output_scale, tuple(new_state)

    def step_tasks(self, grad: torch.Tensor, state: LSTMState, tensor_sizes=None) -> tuple[torch.Tensor, LSTMState]:
        """Updates (n_tasks, dim) for the gradients (n_tasks, dim) of a task batch, and the next state.

        State columns are task-major (task i owns columns i*dim .. (i+1)*dim - 1). Normally this is
        ``forward`` on the flattened gradient. With ``config.shared_state_offset_bug`` it reproduces
        defect (d) of the thesis code: the parameter tensors (sizes ``tensor_sizes``, in layout order)
        are updated one after another, each reading the previous state of coordinates 0..size-1 of its
        task instead of its own, and writing its new state there (later tensors overwrite earlier ones;
        columns no tensor wrote are zero).
        """
        n, dim = grad.shape
        if not self.config.shared_state_offset_bug:
            update, new_state = self(grad.reshape(-1), state)
            return update.view(n, dim), new_state
        sizes = list(tensor_sizes) if tensor_sizes is not None else [dim]
        if sum(sizes) != dim:
            raise ValueError(f"tensor_sizes={sizes} must add up to the parameter count {dim}")
        read, write = _shared_state_runs(tuple(sizes))
        hidden = self.config.hidden_size
        # every tensor's coordinates read the old state's first columns; then one LSTM call for all of them
        state_in = tuple(_ColumnRuns.apply(s.view(hidden, n, dim), read).view(hidden, n * dim) for s in state)
        update, state_out = self(grad.reshape(-1), state_in)
        # column j keeps the state of the last tensor that wrote it (zeros where none did)
        new_state = tuple(_ColumnRuns.apply(s.view(hidden, n, dim), write).view(hidden, n * dim) for s in state_out)
        return update.view(n, dim), new_state


@functools.lru_cache(maxsize=32)
def _shared_state_runs(sizes: tuple[int, ...]) -> tuple[tuple, tuple]:
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


def _complement(ranges, width: int) -> tuple[tuple[int, int], ...]:
    """The column ranges of [0, width) that none of ``ranges`` ((start, stop) pairs) covers."""
    covered = torch.zeros(width, dtype=torch.bool)
    for start, stop in ranges:
        covered[start:stop] = True
    edges = torch.diff(torch.cat((torch.tensor([0]), (~covered).int(), torch.tensor([0])))).nonzero().flatten().tolist()
    return tuple(zip(edges[::2], edges[1::2]))


@functools.lru_cache(maxsize=64)
def _column_plan(runs: tuple, width: int) -> tuple:
    """How ``_ColumnRuns`` writes its output and its gradient with one pass per run and no full zero-fill:
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


class _ColumnRuns(torch.autograd.Function):
    """out[..., d:d+k] = x[..., s:s+k] for each run (s, d, k) along the last axis, zeros elsewhere; the
    backward adds the runs back. Defect (d)'s state copies (slicing and cat would fill a whole zero
    tensor per slice in backward)."""

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


@torch.no_grad()
def _kernel_weights(lstm: LSTMOptimizer) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """What the no-tape runners apply: each layer's packed [W | b] for the kernels, and the output weight and
    bias with the output scale folded in."""
    scale = lstm.config.output_scale
    packed = [fused.pack(w, b) for w, b in zip(lstm.gate_weights, lstm.gate_biases)]
    return packed, lstm.output_weight * scale, lstm.output_bias * scale


class InferenceRunner:
    """The LSTM applied step after step to ``n`` coordinates without autograd, in preallocated buffers.

    Evaluation's fast path for one or two layers (``supported``); other configs use ``forward``. All
    layer inputs live in one buffer B = [x; 1; h_1; h_2] (rows). With the fused kernels each layer is one
    call that reads its input rows and updates h and c in place; without them, layer 1's gate matmul reads
    B[x, 1, h_1] and layer 2's B[1, h_1, h_2] as contiguous row blocks (no concatenation, no allocation)
    and the cell writes the new hidden state straight into B. Same updates as ``forward`` to float
    rounding (tested).
    """

    def __init__(self, lstm: LSTMOptimizer, n_coordinates: int, device=None, dtype=torch.float32,
                 scratch: torch.Tensor | None = None):
        if not self.supported(lstm):
            raise ValueError(f"num_layers={lstm.config.num_layers}: the inference runner handles 1 or 2 layers, "
                             "and not shared_state_offset_bug; use LSTMOptimizer.forward")
        cfg = lstm.config
        self.lstm, self.hidden, self.inputs = lstm, cfg.hidden_size, 2 if cfg.preprocess else 1
        H, I, n = self.hidden, self.inputs, n_coordinates
        self.buffer = torch.zeros(I + 1 + cfg.num_layers * H, n, device=device, dtype=dtype)
        self.buffer[I] = 1.0
        self.cells = [torch.zeros(H, n, device=device, dtype=dtype) for _ in range(cfg.num_layers)]
        # gate pre-activations (path without kernels only, allocated on first need); runners applied one
        # after another may share one flat ``scratch`` tensor
        self.scratch, self.gates = scratch, None
        with torch.no_grad():  # weights with columns in B's row order; output weights carry the output scale
            w0, b0 = lstm.gate_weights[0], lstm.gate_biases[0].unsqueeze(1)
            self.weights = [torch.cat((w0[:, :I], b0, w0[:, I:]), dim=1)]
            if cfg.num_layers == 2:
                self.weights.append(torch.cat((lstm.gate_biases[1].unsqueeze(1), lstm.gate_weights[1]), dim=1))
            self.packed, self.out_weight, self.out_bias = _kernel_weights(lstm)

    def _gates(self) -> torch.Tensor:
        if self.gates is None:
            rows, n = 4 * self.hidden, self.buffer.shape[1]
            if self.scratch is None or self.scratch.numel() < rows * n:
                self.scratch = self.buffer.new_empty(rows * n)
            self.gates = self.scratch[: rows * n].view(rows, n)
        return self.gates

    @staticmethod
    def supported(lstm: LSTMOptimizer) -> bool:
        return lstm.config.num_layers in (1, 2) and not lstm.config.shared_state_offset_bug

    def _rows(self, layer: int) -> slice:
        """Rows of B read by ``layer``: [x, 1, h_1] for the first, [1, h_1, h_2] for the second."""
        I, H = self.inputs, self.hidden
        return slice(0, I + 1 + H) if layer == 0 else slice(I, I + 1 + 2 * H)

    def _hidden_rows(self, layer: int) -> slice:
        start = self.inputs + 1 + layer * self.hidden
        return slice(start, start + self.hidden)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> torch.Tensor:
        """The update (n,) for the gradient (n,); advances the hidden and cell states in place."""
        B = self.buffer
        B[: self.inputs].copy_(self.lstm.features(grad))
        kernels = fused.usable(B)
        for layer, (weight, c) in enumerate(zip(self.weights, self.cells)):
            h = B[self._hidden_rows(layer)]
            if kernels:
                x = B[: self.inputs] if layer == 0 else B[self._hidden_rows(layer - 1)]
                fused.layer_step(self.packed[layer], x, h, c, h, c)
            else:
                torch.mm(weight, B[self._rows(layer)], out=self._gates())
                cell_step_no_grad(self.gates, c, c, h)
        top = B[self._hidden_rows(len(self.cells) - 1)]
        return torch.addmm(self.out_bias.unsqueeze(1), self.out_weight, top).squeeze(0)

    def state(self) -> LSTMState:
        """(h_1, c_1, h_2, c_2) as ``forward`` keeps them (copies)."""
        out = []
        for layer, c in enumerate(self.cells):
            out += [self.buffer[self._hidden_rows(layer)].clone(), c.clone()]
        return tuple(out)


class SharedStateRunner:
    """Defect (d) without autograd, in place: evaluation's fast path for ``shared_state_offset_bug``.

    Same updates as ``step_tasks`` without its state copies (a task batch's state is ~25 MB, so copying
    it several times a step dominated). Each parameter tensor of each task is one kernel call per layer
    that reads the old state of columns 0..size-1 and writes its outputs into the tensor's own columns of
    a second buffer; the updates come from there in one matmul. Then the new state is assembled in that
    buffer: the first tensor (the largest) already sits in its columns; the later tensors' last-written
    pieces are copied down and the columns none wrote are zeroed. Needs the fused kernels and a first
    tensor at least as large as the others (``supported``); ``run_learned`` uses ``step_tasks`` otherwise.
    """

    def __init__(self, lstm: LSTMOptimizer, n_tasks: int, tensor_sizes, device=None, dtype=torch.float32):
        self.sizes = tuple(int(s) for s in tensor_sizes)
        if not self.supported(lstm, self.sizes, torch.empty(0, device=device, dtype=dtype)):
            raise ValueError(f"tensor_sizes={self.sizes}: the shared-state runner needs the fused kernels, "
                             "shared_state_offset_bug and a first tensor at least as large as the others")
        cfg = lstm.config
        self.lstm, self.n, self.dim, self.hidden = lstm, n_tasks, sum(self.sizes), cfg.hidden_size
        self.offsets = [sum(self.sizes[:t]) for t in range(len(self.sizes))]
        width = n_tasks * self.dim
        zeros = lambda: [torch.zeros(self.hidden, width, device=device, dtype=dtype) for _ in range(2 * cfg.num_layers)]
        self.old, self.new = zeros(), zeros()
        _, self.write_runs = _shared_state_runs(self.sizes)
        self.write_runs = [(s, d, k) for s, d, k in self.write_runs if s != d]
        self.zero_from = self.sizes[0]  # columns no tensor wrote: max(sizes) .. dim - 1
        self.packed, self.out_weight, self.out_bias = _kernel_weights(lstm)

    @staticmethod
    def supported(lstm: LSTMOptimizer, tensor_sizes, example: torch.Tensor) -> bool:
        sizes = list(tensor_sizes) if tensor_sizes is not None else []
        return (lstm.config.shared_state_offset_bug and len(sizes) > 0 and sizes[0] == max(sizes)
                and fused.usable(example, lstm.output_weight))

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> torch.Tensor:
        """The updates (n_tasks * dim,) for the task-major gradients (n_tasks * dim,); advances the state."""
        x_all, old, new, layers = self.lstm.features(grad), self.old, self.new, len(self.packed)
        for i in range(self.n):
            base = i * self.dim
            for offset, size in zip(self.offsets, self.sizes):
                read, own = slice(base, base + size), slice(base + offset, base + offset + size)
                x = x_all[:, own]
                for layer in range(layers):
                    h, c = new[2 * layer][:, own], new[2 * layer + 1][:, own]
                    fused.layer_step(self.packed[layer], x, old[2 * layer][:, read], old[2 * layer + 1][:, read], h, c)
                    x = h
        update = torch.addmm(self.out_bias.unsqueeze(1), self.out_weight, new[-2]).squeeze(0)
        for s in new:  # the sources (later tensors' columns) lie past every destination (< sizes[0])
            s3 = s.view(self.hidden, self.n, self.dim)
            for src, dst, k in self.write_runs:
                s3[..., dst:dst + k] = s3[..., src:src + k]
            s3[..., self.zero_from:] = 0
        self.old, self.new = new, old
        return update
