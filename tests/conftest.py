"""Process-wide settings every test runs under, as the CLI runs.

``rlpref.video.headless_gl`` must run before the first ``import mujoco``; without this, the rendering test
passes only when it happens to run before every other test that builds a MuJoCo env. Torch and BLAS are
pinned to one thread through the same :func:`rlpref.runtime.configure_compute` the entry points call: on two
cores, small torch ops spread over both threads ran the end-to-end tests many times slower whenever
anything else shared the machine.
"""

from pathlib import Path

import pytest
import torch

from rlpref.video import headless_gl

headless_gl()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    from rlpref.runtime import configure_compute

    configure_compute(1)


# Shared helpers of the loss tests (test_losses, test_rr_kernel), handed out as fixtures.

def _naive_rr(d: torch.Tensor, strength: torch.Tensor, stratum: torch.Tensor) -> torch.Tensor:
    """Per-stratum Python reference: sort strongest first, Plackett-Luce with a d = 0 anchor."""
    total = d.new_zeros(())
    for s in torch.unique(stratum).tolist():
        idx = torch.nonzero(stratum == s).flatten()
        order = idx[torch.argsort(strength[idx])]
        ds = [d[i] for i in order.tolist()]
        for k in range(len(ds)):
            rest = torch.stack(ds[k:] + [d.new_zeros(())])  # the anchor has worth exp(0)
            total = total + ds[k] - torch.logsumexp(rest, 0)
    return -total / d.shape[0]


def _random_problem(seed: int, n_strata: int = 60, max_size: int = 9):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, max_size + 1, (n_strata,), generator=g)
    n = int(sizes.sum())
    # non-contiguous, shuffled stratum ids
    ids = torch.randperm(1000, generator=g)[:n_strata] * 7 - 50
    stratum = torch.repeat_interleave(ids, sizes)[torch.randperm(n, generator=g)]
    strength = torch.randperm(n, generator=g).to(torch.float64) * 0.37 - 3.0  # distinct values
    uc = (torch.randn(n, generator=g, dtype=torch.float64) * 2).requires_grad_()
    ur = (torch.randn(n, generator=g, dtype=torch.float64) * 2).requires_grad_()
    return uc, ur, strength, stratum


@pytest.fixture
def naive_rr():
    """Per-stratum Python reference of the rr loss: naive_rr(d, strength, stratum) -> scalar."""
    return _naive_rr


@pytest.fixture
def random_problem():
    """random_problem(seed, n_strata=60, max_size=9) -> (uc, ur, strength, stratum), float64, distinct strengths."""
    return _random_problem


@pytest.fixture(scope="session")
def compose_config():
    """compose_config(overrides) -> the resolved control config (a plain dict), as the CLI composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = str(Path(__file__).resolve().parents[1] / "conf")

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)

    return _compose


def _make_segments(m: int, length: int, batches: int, seed: int = 0, *, act_dim: int = 2, reward: str = "obs0",
                   shift: bool = False):
    """Synthetic segments [m, length] in ``batches`` equal rollout batches, 3-d observations.

    ``reward="obs0"``: the per-step reward is obs[..., 0], so the true return is learnable from
    observations; ``"noise"``: rewards are noise unrelated to them. ``shift``: batch b's rewards (or
    observations) are raised by b, as a later checkpoint of a learning agent would be.
    """
    import numpy as np

    from rlpref.control.records import Segments
    from rlpref.control.segments import discounted_returns

    rng = np.random.default_rng(seed)
    level = np.repeat(np.arange(batches), m // batches)
    if reward == "noise":
        rewards = rng.normal(size=(m, length)).astype(np.float32) + (level[:, None] if shift else 0)
        obs = rng.normal(size=(m, length, 3)).astype(np.float32)
    elif reward == "obs0":
        obs = (rng.normal(size=(m, length, 3)) + (level[:, None, None] if shift else 0)).astype(np.float32)
        rewards = obs[..., 0].copy()
    else:
        raise ValueError(f"reward must be 'obs0' or 'noise', got {reward!r}")
    return Segments(obs=obs, acts=rng.normal(size=(m, length, act_dim)).astype(np.float32), next_obs=obs,
                    rewards=rewards, returns=discounted_returns(rewards, 0.99), batch=level.astype(np.int64))


@pytest.fixture
def make_segments():
    """make_segments(m, length, batches, seed=0, *, act_dim, reward, shift) -> Segments (see _make_segments)."""
    return _make_segments


@pytest.fixture
def load_script():
    """scripts/<name>.py as a module (scripts are not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
