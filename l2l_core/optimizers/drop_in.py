"""The trained LSTM as a drop-in ``torch.optim.Optimizer`` for any ``nn.Module``.

    opt = LearnedOptimizer(model.parameters(), pretrained="mnist")  # shipped, trained in the book's chapter 2
    loss.backward(); opt.step(); opt.zero_grad()

Each parameter tensor keeps its own LSTM hidden state (per coordinate), exactly as the functional
evaluation path keeps one per coordinate of the flat parameter vector, so both give the same steps.

Parameters of any floating dtype (float64, bfloat16, float16) train: the LSTM runs in its own weights' dtype
(float32 for the shipped and saved ones) and keeps its states in it; it sees the gradients cast to that dtype and its
updates are added to the parameters in their own. Sparse gradients are refused, as torch.optim.Adam refuses them.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from l2l_core.optimizers.checkpoint import config_from_dict, load_optimizer
from l2l_core.optimizers.pretrained import load
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.optimizers.state_layouts import PER_COORDINATE


def _state_keys(num_layers: int) -> list[str]:
    """Names of a parameter's LSTM state tensors: h0, c0, h1, c1, ..."""
    return [f"{kind}{layer}" for layer in range(num_layers) for kind in "hc"]


class LearnedOptimizer(torch.optim.Optimizer):
    """Applies ``theta <- theta + m(grad, state; phi)`` with a trained (frozen) LSTM ``m``."""

    def __init__(self, params, checkpoint=None, lstm: LSTMOptimizer | None = None, pretrained: str | None = None,
                 meta_seed: int | None = None):
        """Exactly one source of the LSTM: ``pretrained`` (a shipped name, e.g. "mnist", with an optional
        ``meta_seed``; see ``l2l_core.optimizers.pretrained``), ``checkpoint`` (a saved LSTM's path) or ``lstm``."""
        if sum(x is not None for x in (checkpoint, lstm, pretrained)) != 1:
            raise ValueError("pass exactly one of pretrained=<shipped name, e.g. 'mnist'>, checkpoint=<path to a "
                             f"saved LSTM> or lstm=<LSTMOptimizer>; got checkpoint={checkpoint!r}, "
                             f"lstm={type(lstm).__name__ if lstm is not None else None}, pretrained={pretrained!r}")
        if meta_seed is not None and pretrained is None:
            raise ValueError(f"meta_seed={meta_seed!r} chooses among shipped LSTMs; it needs pretrained=<name>")
        super().__init__(params, defaults={})
        if pretrained is not None:
            lstm = load(pretrained, meta_seed)
        if checkpoint is not None:
            lstm, _ = load_optimizer(checkpoint)
        if not isinstance(lstm, LSTMOptimizer):
            raise TypeError(f"lstm={lstm!r} must be an l2l_core LSTMOptimizer")
        if lstm.config.state_layout != PER_COORDINATE:
            raise ValueError(f"this LSTM was trained with state_layout={lstm.config.state_layout!r} (the errata "
                             f"chapter's); the drop-in optimizer keeps one state per coordinate ({PER_COORDINATE!r})")
        self.lstm = lstm.requires_grad_(False)
        self._lstm_device = None

    def _lstm_on(self, device):
        if self._lstm_device != device:
            self.lstm.to(device)
            self._lstm_device = device
        return self.lstm

    def _lstm_dtype(self) -> torch.dtype:
        """The dtype the LSTM computes and keeps its states in: its weights' (float32 unless made otherwise)."""
        return self.lstm.output_weight.dtype

    @torch.no_grad()
    def step(self, closure=None):
        """One LSTM update of every parameter that has a gradient: all of them in one LSTM call per device (the LSTM
        is coordinatewise, so this gives the numbers of one call per tensor, in far fewer calls), in the LSTM's dtype
        whatever the parameters' (module docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        batches: dict = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.layout != torch.strided:  # checked for all before any parameter moves
                    raise RuntimeError(f"LearnedOptimizer does not support sparse gradients ({p.grad.layout}, e.g. "
                                       "from nn.Embedding(sparse=True)): the LSTM updates every coordinate at every "
                                       "step; use dense gradients (sparse=False)")
                if p.is_complex():
                    raise TypeError(f"LearnedOptimizer does not support complex parameters ({p.dtype}); view them "
                                    "as real ones (torch.view_as_real)")
                batches.setdefault(p.device, []).append(p)
        dtype = self._lstm_dtype()
        for device, params in batches.items():
            lstm = self._lstm_on(device)
            keys = _state_keys(lstm.config.num_layers)
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state.update(zip(keys, lstm.initial_state(p.numel(), device=device, dtype=dtype)))
                    state["step"] = 0
            grad = torch.cat([p.grad.reshape(-1).to(dtype) for p in params])  # .to: no copy for the LSTM's dtype
            hidden = tuple(torch.cat([self.state[p][k] for p in params], dim=1) for k in keys)
            update, hidden = lstm(grad, hidden)
            sizes = [p.numel() for p in params]
            pieces = [h.split(sizes, dim=1) for h in hidden]  # views: no copy until the next step's cat
            for i, (p, u) in enumerate(zip(params, update.split(sizes))):
                # in p's dtype: computed in the wider of the two and rounded once (a bfloat16 p is not rounded twice)
                p.add_(u.view_as(p))
                state = self.state[p]
                state.update((k, piece[i]) for k, piece in zip(keys, pieces))
                state["step"] += 1
        return loss

    def state_dict(self):
        """The usual optimizer state (per-parameter LSTM states) plus the LSTM's config and weights."""
        out = super().state_dict()
        # own copies of the views into a step's joint state (saving a view would save all of it); live state untouched
        out["state"] = {i: {k: v.clone() if torch.is_tensor(v) and v._base is not None else v for k, v in state.items()}
                        for i, state in out["state"].items()}
        out["lstm"] = {"config": self.lstm.config.to_dict(),
                       "weights": {k: v.detach().cpu().clone() for k, v in self.lstm.state_dict().items()}}
        return out

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("lstm", None)
        if saved is not None:
            lstm = LSTMOptimizer(config_from_dict(saved["config"])).to(saved["weights"]["output_weight"].dtype)
            lstm.load_state_dict(saved["weights"])
            self.lstm, self._lstm_device = lstm.requires_grad_(False), None
        super().load_state_dict(state_dict)
        # torch.optim casts the loaded states to each parameter's dtype (for a bfloat16 model, a rounding); the LSTM
        # keeps them in its own, so they are taken again from the saved tensors, on the parameter's device
        params = [p for group in self.param_groups for p in group["params"]]
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        dtype = self._lstm_dtype()
        for i, p in zip(saved_ids, params):
            for key, value in state_dict["state"].get(i, {}).items():
                if torch.is_tensor(value):
                    self.state[p][key] = value.to(device=p.device, dtype=dtype)


def reference_run(lstm: LSTMOptimizer, steps: int = 20) -> list[float]:
    """Losses of a fixed tiny model (5-4-3 sigmoid MLP, 32 fixed random points, float64) trained with ``lstm``
    as a drop-in optimizer: a fingerprint of the weights and of the drop-in path, the same on every CPU (float64
    runs the PyTorch path, not the float32 kernels)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (32,), generator=g)
    model = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    opt = LearnedOptimizer(model.parameters(), lstm=copy.deepcopy(lstm).double())
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses
