"""Process-wide compute settings, applied in one place that every entry point goes through.

The control pipeline (:func:`rlpref.control.pipeline.run_pipeline`, and so the CLI and the tests), the synthetic grid
and the LLM trainer call :func:`pin_threads` with their config's thread count before any work. Small
torch ops on two cores run several times slower when each process spreads them over every core, and
parallel runs (joblib, SLURM arrays) must not fight over the cores they were given.
"""

from __future__ import annotations

import torch

__all__ = ["pin_threads"]


def pin_threads(n: int) -> int:
    """Limit torch's intra-op threads and numpy's BLAS pool to ``n``; returns ``n``.

    ``n`` comes from a config key (``torch_threads`` for the control track, ``threads`` elsewhere),
    so the error names that it must be a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r} (torch_threads / threads)")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy then keeps its own pool size (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS)
        return n
    threadpool_limits(limits=n, user_api="blas")
    return n
