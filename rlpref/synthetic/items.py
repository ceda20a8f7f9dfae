"""Items and their true utilities.

Items x ~ U[0, 1]^F. The true utility is a fixed random ReLU MLP F -> 64 -> 64 -> 1 (one per trial,
seeded from the trial's ``utility_net`` stream), rescaled so that the utilities of the dataset's
2·P items have unit standard deviation. The first P items are the left items of the pairs, the
next P the right ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .mlp import init_mlp, mlp_forward
from .seeding import numpy_rng, torch_generator

__all__ = ["Items", "generate_items", "true_utility_net"]


@dataclass(frozen=True)
class Items:
    """Features ``x1``, ``x2`` [P, F] and true utilities ``u1``, ``u2`` [P] of P pairs (float64)."""

    x1: np.ndarray
    x2: np.ndarray
    u1: np.ndarray
    u2: np.ndarray


def true_utility_net(root_seed: int, trial: int, n_features: int, hidden: Sequence[int]):
    """The trial's fixed random utility network as a numpy function [N, F] -> [N] (unscaled)."""
    params = init_mlp([n_features, *hidden, 1], torch_generator(root_seed, trial, "utility_net"), torch.float64)

    def utility(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return mlp_forward(params, torch.as_tensor(x, dtype=torch.float64)).numpy()

    return utility


def generate_items(
    root_seed: int,
    trial: int,
    n_pairs: int,
    n_features: int = 20,
    hidden: Sequence[int] = (64, 64),
    utility_sd: float = 1.0,
) -> Items:
    """P pairs of uniform items with the trial's true utility, scaled to SD ``utility_sd``."""
    if n_pairs < 1 or n_features < 1:
        raise ValueError(f"need n_pairs >= 1 and n_features >= 1, got {n_pairs}, {n_features}")
    x = numpy_rng(root_seed, trial, "items").random((2 * n_pairs, n_features))
    u = true_utility_net(root_seed, trial, n_features, hidden)(x)
    sd = float(np.std(u))
    if not sd > 0:
        raise ValueError("the true utility is constant over the sampled items; cannot scale it to unit SD")
    u = u * (utility_sd / sd)
    return Items(x1=x[:n_pairs], x2=x[n_pairs:], u1=u[:n_pairs], u2=u[n_pairs:])
