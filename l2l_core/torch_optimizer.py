"""The trained LSTM as a drop-in ``torch.optim.Optimizer`` for any ``nn.Module``.

    opt = LearnedOptimizer(model.parameters(), checkpoint="build/full/results/02_mnist/lstm-seed0.pt")
    loss.backward(); opt.step(); opt.zero_grad()

Each parameter tensor keeps its own LSTM hidden state (per coordinate), exactly as the functional
evaluation path keeps one per coordinate of the flat parameter vector, so both give the same steps.
"""
from __future__ import annotations

import torch

from .checkpoint import load_optimizer
from .lstm_optimizer import LSTMConfig, LSTMOptimizer


def _state_keys(num_layers: int) -> list[str]:
    """Names of a parameter's LSTM state tensors: h0, c0, h1, c1, ..."""
    return [f"{kind}{layer}" for layer in range(num_layers) for kind in "hc"]


class LearnedOptimizer(torch.optim.Optimizer):
    """Applies ``theta <- theta + m(grad, state; phi)`` with a trained (frozen) LSTM ``m``."""

    def __init__(self, params, checkpoint=None, lstm: LSTMOptimizer | None = None):
        if (checkpoint is None) == (lstm is None):
            raise ValueError("pass exactly one of checkpoint=<path to a saved LSTM> or lstm=<LSTMOptimizer>")
        super().__init__(params, defaults={})
        if checkpoint is not None:
            lstm, _ = load_optimizer(checkpoint)
        if not isinstance(lstm, LSTMOptimizer):
            raise TypeError(f"lstm={lstm!r} must be an l2l_core LSTMOptimizer")
        if lstm.config.shared_state_offset_bug:
            raise ValueError("this LSTM was trained with shared_state_offset_bug=True (the thesis-code defect); "
                             "the drop-in optimizer keeps one state per parameter tensor, so it cannot reproduce it")
        self.lstm = lstm.requires_grad_(False)
        self._lstm_device = None

    def _lstm_on(self, device):
        if self._lstm_device != device:
            self.lstm.to(device)
            self._lstm_device = device
        return self.lstm

    @torch.no_grad()
    def step(self, closure=None):
        """One LSTM update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                lstm = self._lstm_on(p.device)
                state = self.state[p]
                keys = _state_keys(lstm.config.num_layers)
                if "step" not in state:
                    state.update(zip(keys, lstm.initial_state(p.numel(), device=p.device, dtype=p.dtype)))
                    state["step"] = 0
                update, hidden = lstm(p.grad.reshape(-1), tuple(state[k] for k in keys))
                p.add_(update.view_as(p))
                state.update(zip(keys, hidden))
                state["step"] += 1
        return loss

    def state_dict(self):
        """The usual optimizer state (per-parameter LSTM states) plus the LSTM's config and weights."""
        out = super().state_dict()
        out["lstm"] = {"config": self.lstm.config.to_dict(),
                       "weights": {k: v.detach().cpu().clone() for k, v in self.lstm.state_dict().items()}}
        return out

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("lstm", None)
        if saved is not None:
            lstm = LSTMOptimizer(LSTMConfig(**saved["config"]))
            lstm.load_state_dict(saved["weights"])
            self.lstm, self._lstm_device = lstm.requires_grad_(False), None
        super().load_state_dict(state_dict)
