"""Process-wide compute settings, applied in one place that every entry point goes through.

The control pipeline (:func:`rlpref.control.pipeline.run_pipeline`, and so the CLI and the tests), the synthetic grid
and the LLM trainer call :func:`configure_compute` with their config's thread count before any work:

- Threads: small torch ops on two cores run several times slower when each process spreads them over every
  core, and parallel runs (joblib, SLURM arrays) must not fight over the cores they were given.
- Denormal floats are flushed to zero. A preference loss that saturates (bt on noise-free labels drives
  its logits up until the gradients are ~1e-40) otherwise sends the CPU into its slow denormal path: a
  `budget=paper` Swimmer-v5 bt fit at σ = 0 went from 11 to ~50 s per epoch as its loss fell (docs/results.md,
  section "The paper's σ = 0.25 column"). Only values below ~1.2e-38 become 0: an update that small moves
  no weight of ordinary size, though where denormals occurred the numbers are no longer bit-identical to
  a run without the flush.
"""

from __future__ import annotations

import torch

__all__ = ["bf16_native", "configure_compute"]


def configure_compute(n: int) -> int:
    """Limit torch's intra-op threads and numpy's BLAS pool to ``n`` and flush denormals; returns ``n``.

    ``n`` comes from a config key (``torch_threads`` for the control track, ``threads`` elsewhere),
    so the error names that it must be a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r} (torch_threads / threads)")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    torch.set_flush_denormal(True)  # False where the CPU cannot (then nothing changes)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy then keeps its own pool size (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS)
        return n
    threadpool_limits(limits=n, user_api="blas")
    return n


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX, through oneDNN).

    Elsewhere torch emulates them, several times slower than float32, so ``reward_model.precision=bf16``
    is refused there rather than silently slowing the fit it was meant to speed up."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False
