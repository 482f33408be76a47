"""The learned optimizer: a coordinatewise two-layer LSTM shared by every parameter coordinate.

Every coordinate of the optimizee is a column of the state: one set of LSTM weights (phi) is applied to
all coordinates, each with its own hidden state, so the optimizer works for any number of parameters and
any number of stacked tasks. ``reference_layer_step`` is one layer as the paper's equations; ``layer_step``
is the one dispatch between it and the fast paths (fused CPU kernels; in place without a tape), and
``InferenceRunner`` is evaluation's allocation-free loop over the same steps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from l2l_core.optimizers import fused
from l2l_core.checks import check_int, check_positive_float
from l2l_core.optimizers.preprocess import preprocess_features
from l2l_core.optimizers.state_layouts import PER_COORDINATE, ColumnRuns, state_layout

LSTMState = tuple[torch.Tensor, ...]  # (h_1, c_1, h_2, c_2, ...), each of shape (hidden_size, N)


@dataclass(frozen=True)
class LSTMConfig:
    """Architecture of the learned optimizer; defaults are the paper's 2 x 20 LSTM."""

    hidden_size: int = 20
    num_layers: int = 2
    preprocess: bool = True
    output_scale: float = 0.1
    preprocess_p: float = 10.0
    # where each parameter tensor's state lives (``state_layouts``); only the errata chapter uses another
    state_layout: str = PER_COORDINATE

    def __post_init__(self):
        check_int("hidden_size", self.hidden_size)
        check_int("num_layers", self.num_layers)
        check_positive_float("output_scale", self.output_scale)
        check_positive_float("preprocess_p", self.preprocess_p)
        if not isinstance(self.preprocess, bool):
            raise TypeError(f"preprocess={self.preprocess!r} must be True or False")
        if not isinstance(self.state_layout, str):
            raise TypeError(f"state_layout={self.state_layout!r} must be the name of a registered state layout")

    def to_dict(self) -> dict:
        return asdict(self)


def reference_layer_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM layer step for every coordinate (a column each), as the paper's equations (Andrychowicz et al.
    2016, Sec. 2.1: a standard LSTM per coordinate); differentiable. Every other path is tested against it.

        [i; f; o; g] = W [x; h] + b                      (gate pre-activations, rows in this order)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')
    """
    i, f, o, g = torch.addmm(bias.unsqueeze(1), weight, torch.cat((x, h))).chunk(4)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def cell_step_no_grad(gates: torch.Tensor, c_prev: torch.Tensor, c_out: torch.Tensor, h_out: torch.Tensor) -> None:
    """The reference step's cell, in place and without a tape (the fast path when the fused kernels cannot run),
    from gate pre-activations (4H, N) (clobbered): writes c_out = f * c_prev + i * g and h_out = o * tanh(c_out).
    ``c_out`` may be ``c_prev`` or a row block of ``gates`` (the spent forget gate)."""
    hidden = c_prev.shape[0]
    gates[: 3 * hidden].sigmoid_()
    i, f, o, candidate = gates.split(hidden)
    candidate.tanh_()
    torch.mul(f, c_prev, out=c_out).addcmul_(i, candidate)
    torch.tanh(c_out, out=h_out).mul_(o)


def layer_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h', c') of one layer: the one dispatch between the reference step and the fast paths. The fused kernels
    where they run (CPU, float32: one call forward, one backward); else the reference, in place when there is no
    gradient tape (evaluation). Same numbers to float rounding (tests/test_fused.py, tests/test_lstm_optimizer.py)."""
    taped = torch.is_grad_enabled()
    if fused.usable(x, h, c, weight):
        if taped:
            return fused.FusedLayer.apply(x, h, c, weight, bias)
        h_new, c_new = torch.empty_like(c), torch.empty_like(c)
        fused.layer_step(fused.pack(weight, bias), x, h, c, h_new, c_new)
        return h_new, c_new
    if taped:
        return reference_layer_step(x, h, c, weight, bias)
    gates = torch.addmm(bias.unsqueeze(1), weight, torch.cat((x, h)))
    h_new = torch.empty_like(c)
    hidden = c.shape[0]
    cell_step_no_grad(gates, c, gates[hidden: 2 * hidden], h_new)  # c' overwrites the spent forget-gate rows
    return h_new, gates[hidden: 2 * hidden]


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
        """Updates (N,) for a flat gradient (N,) and the next state: ``layer_step`` per layer, then the output
        layer. Coordinates run along the last axis, so every gate is a contiguous block of rows."""
        x = self.features(grad)
        new_state = []
        for layer, (weight, bias) in enumerate(zip(self.gate_weights, self.gate_biases)):
            x, c = layer_step(x, state[2 * layer], state[2 * layer + 1], weight, bias)
            new_state += [x, c]
        out = torch.addmm(self.output_bias.unsqueeze(1), self.output_weight, x)
        return out.squeeze(0) * self.config.output_scale, tuple(new_state)

    def step_tasks(self, grad: torch.Tensor, state: LSTMState, tensor_sizes=None) -> tuple[torch.Tensor, LSTMState]:
        """Updates (n_tasks, dim) for the gradients (n_tasks, dim) of a task batch, and the next state.

        State columns are task-major (task i owns columns i*dim .. (i+1)*dim - 1). Normally this is
        ``forward`` on the flattened gradient. With another ``config.state_layout`` the coordinates read and
        write the state columns its runs say, for the parameter tensors of sizes ``tensor_sizes`` (layout
        order); columns no coordinate wrote are zero.
        """
        n, dim = grad.shape
        layout = state_layout(self.config.state_layout)
        if layout is None:
            update, new_state = self(grad.reshape(-1), state)
            return update.view(n, dim), new_state
        sizes = list(tensor_sizes) if tensor_sizes is not None else [dim]
        if sum(sizes) != dim:
            raise ValueError(f"tensor_sizes={sizes} must add up to the parameter count {dim}")
        read, write = layout.runs(tuple(sizes))
        hidden = self.config.hidden_size
        # every tensor's coordinates read the old state's first columns; then one LSTM call for all of them
        state_in = tuple(ColumnRuns.apply(s.view(hidden, n, dim), read).view(hidden, n * dim) for s in state)
        update, state_out = self(grad.reshape(-1), state_in)
        # column j keeps the state of the last tensor that wrote it (zeros where none did)
        new_state = tuple(ColumnRuns.apply(s.view(hidden, n, dim), write).view(hidden, n * dim) for s in state_out)
        return update.view(n, dim), new_state


@torch.no_grad()
def kernel_weights(lstm: LSTMOptimizer) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
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
            raise ValueError(f"num_layers={lstm.config.num_layers}, state_layout={lstm.config.state_layout!r}: the "
                             f"inference runner handles 1 or 2 layers with the {PER_COORDINATE!r} layout; use forward")
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
            self.packed, self.out_weight, self.out_bias = kernel_weights(lstm)

    def _gates(self) -> torch.Tensor:
        if self.gates is None:
            rows, n = 4 * self.hidden, self.buffer.shape[1]
            if self.scratch is None or self.scratch.numel() < rows * n:
                self.scratch = self.buffer.new_empty(rows * n)
            self.gates = self.scratch[: rows * n].view(rows, n)
        return self.gates

    @staticmethod
    def supported(lstm: LSTMOptimizer) -> bool:
        return lstm.config.num_layers in (1, 2) and lstm.config.state_layout == PER_COORDINATE

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
