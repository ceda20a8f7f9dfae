"""Plain ReLU MLPs as explicit parameter lists, single or stacked over a batch of independent fits.

Layout: a list of ``(W, b)`` with ``W`` [in, out] and ``b`` [out]; a stacked MLP has ``W`` [B, in, out]
and ``b`` [B, 1, out]. The initialisation matches ``torch.nn.Linear``'s default (weights and biases
uniform in ±1/sqrt(fan_in)), drawn from an explicit generator so it is reproducible per trial.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["init_mlp", "mlp_forward", "stack_mlps", "stacked_mlp_forward"]

Params = list[tuple[Tensor, Tensor]]


def init_mlp(sizes: Sequence[int], gen: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
    """Layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, nn.Linear-style uniform init."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"MLP sizes must be >= 2 positive ints, got {list(sizes)}")
    params: Params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / float(fan_in) ** 0.5
        w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        params.append((w.to(dtype), b.to(dtype)))
    return params


def mlp_forward(params: Params, x: Tensor) -> Tensor:
    """x [..., in] -> [...] (the last layer must have one output)."""
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def stack_mlps(mlps: Sequence[Params]) -> Params:
    """Stack B MLPs of the same shape into one batched parameter list (new, independent tensors)."""
    if not mlps:
        raise ValueError("no MLPs to stack")
    return [
        (torch.stack([m[i][0] for m in mlps]), torch.stack([m[i][1] for m in mlps]).unsqueeze(1))
        for i in range(len(mlps[0]))
    ]


def stacked_mlp_forward(params: Params, x: Tensor) -> Tensor:
    """Batched forward: x [B, M, in] with stacked params -> [B, M] (one bmm per layer)."""
    h = x
    for i, (w, b) in enumerate(params):
        h = torch.baddbmm(b, h, w)
        if i < len(params) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)
