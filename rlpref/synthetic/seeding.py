"""Deterministic per-trial random streams derived from one root seed.

Every random draw of the synthetic track comes from a stream named by ``(trial, purpose, *extra)``,
so a trial's data, strata, initial weights and permutations are the same whether it is generated
alone or together with 99 others, and whichever datasets or learners run beside it. The dataset name
is deliberately *not* part of the key: all six datasets of trial t share items, true utility, stratum
assignment and learner initialisation (paired comparisons, lower-variance differences); they differ
only in how choices and response times are generated and whether the per-stratum multiplier is
applied.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["STREAMS", "numpy_rng", "torch_generator", "stream_seed"]

#: Purposes of the random streams; the integer is part of the SeedSequence spawn key.
STREAMS = {
    "utility_net": 0,  # weights of the true utility MLP (torch)
    "items": 1,  # item features
    "responses": 2,  # choices and response times (incl. drift-diffusion noise)
    "strata": 3,  # random stratum of each pair
    "variability": 4,  # per-stratum response-time multipliers
    "learner_init": 5,  # initial weights of the learners (torch)
    "permutation": 6,  # strength permutation of the *_perm controls
}


def _sequence(root_seed: int, trial: int, purpose: str, extra: tuple[int, ...] = ()) -> np.random.SeedSequence:
    if purpose not in STREAMS:
        raise KeyError(f"unknown random stream '{purpose}'; choose one of: {', '.join(STREAMS)}")
    if trial < 0:
        raise ValueError(f"trial index must be >= 0, got {trial}")
    return np.random.SeedSequence(int(root_seed), spawn_key=(int(trial), STREAMS[purpose], *map(int, extra)))


def numpy_rng(root_seed: int, trial: int, purpose: str, *extra: int) -> np.random.Generator:
    """A numpy Generator for one trial and purpose (PCG64 seeded by a SeedSequence)."""
    return np.random.Generator(np.random.PCG64(_sequence(root_seed, trial, purpose, extra)))


def stream_seed(root_seed: int, trial: int, purpose: str, *extra: int) -> int:
    """A 63-bit integer seed for one trial and purpose (for torch generators)."""
    state = _sequence(root_seed, trial, purpose, extra).generate_state(1, dtype=np.uint64)[0]
    return int(state) & 0x7FFF_FFFF_FFFF_FFFF


def torch_generator(root_seed: int, trial: int, purpose: str, *extra: int) -> torch.Generator:
    """A CPU torch.Generator for one trial and purpose."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(stream_seed(root_seed, trial, purpose, *extra))
    return gen
