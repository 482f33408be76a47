"""A plain functional implementation of one meta-training trajectory, kept for comparison only.

Flat theta, torch.autograd.grad, two torch.nn.LSTMCell layers in (N, hidden) layout, masked
preprocessing: what a straightforward port of the paper looks like. The benchmark times it beside
the engine on the same task so the ratio engine/reference means something.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class PlainLSTMOptimizer(nn.Module):
    def __init__(self, hidden: int = 20, preprocess: bool = True, output_scale: float = 0.1, p: float = 10.0):
        super().__init__()
        self.preprocess, self.output_scale, self.p = preprocess, output_scale, p
        self.cells = nn.ModuleList([nn.LSTMCell(2 if preprocess else 1, hidden), nn.LSTMCell(hidden, hidden)])
        self.out = nn.Linear(hidden, 1)

    def forward(self, grad, state):
        if self.preprocess:
            x = torch.zeros(grad.shape[0], 2)
            keep = grad.abs() >= math.exp(-self.p)
            x[keep, 0] = grad[keep].abs().log() / self.p
            x[keep, 1] = grad[keep].sign()
            x[~keep, 0] = -1
            x[~keep, 1] = grad[~keep] * math.exp(self.p)
        else:
            x = grad.unsqueeze(1)
        new = []
        for cell, hc in zip(self.cells, state):
            h, c = cell(x, hc)
            new.append((h, c))
            x = h
        return self.out(x).squeeze(1) * self.output_scale, new


def plain_trajectory(lstm: PlainLSTMOptimizer, meta_opt, tasks, steps: int = 100, unroll: int = 20) -> list[float]:
    """The same mathematics as l2l_core.training.meta_train.train_trajectory, written the plain way."""
    theta = tasks.initial_params().requires_grad_(True)
    n = theta.numel()
    state = [(torch.zeros(n, 20), torch.zeros(n, 20)) for _ in lstm.cells]
    loss = tasks.loss(theta, 0)
    grad = torch.autograd.grad(loss.sum(), theta)[0]
    theta = theta.detach()
    out = []
    for start in range(0, steps, unroll):
        meta_loss = 0
        for t in range(start, min(start + unroll, steps)):
            update, state = lstm(grad.reshape(-1), state)
            theta = theta + update.view_as(theta)
            loss = tasks.loss(theta, t + 1)
            meta_loss = meta_loss + loss.mean()
            if t + 1 < steps:
                grad = torch.autograd.grad(loss.sum(), theta, retain_graph=True)[0]
        meta_opt.zero_grad()
        meta_loss.backward()
        meta_opt.step()
        out.append(meta_loss.item())
        theta = theta.detach()
        state = [(h.detach(), c.detach()) for h, c in state]
    return out
