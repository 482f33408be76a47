"""Gradient preprocessing of Andrychowicz et al. (2016), Appendix A.

Gradients span many orders of magnitude; the LSTM sees two bounded features per coordinate instead:
``(log|g| / p, sign g)`` when ``|g| >= exp(-p)``, else ``(-1, exp(p) * g)``.
"""
from __future__ import annotations

import math

import torch


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Map a flat gradient of shape (N,) to features of shape (N, 2) (Appendix A, with ``p``)."""
    return preprocess_features(grad, p).T


def preprocess_features(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The same features feature-major, shape (2, N), each row contiguous (the LSTM's input layout)."""
    threshold = math.exp(-p)
    magnitude = grad.abs()
    large = magnitude >= threshold
    log_part = torch.where(large, magnitude.clamp_min(threshold).log() / p, -1.0)
    sign_part = torch.where(large, grad.sign(), grad * math.exp(p))
    return torch.stack((log_part, sign_part))
