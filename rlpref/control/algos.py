"""Building and saving SB3 agents — the part shared by the source and learned-reward stages.

Hyperparameters are data (``conf/env/*.yaml``, rl-zoo3 style) turned into SB3 objects here; policies
as plain callables live in :mod:`rlpref.control.policies`, true-return evaluation in
:mod:`rlpref.control.evaluation`.

The env stack is ``Monitor(make_env) x n → DummyVecEnv → [reward wrapper] → [VecNormalize]``: the
learned reward is injected *inside* VecNormalize so it is normalised by the running std of the
discounted return, as in the reference pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from envs import make_env
from rlpref.artifacts import load_npz, save_npz

__all__ = [
    "ALGOS",
    "ObsNorm",
    "build_model",
    "hyperparams",
    "load_agent",
    "make_train_env",
    "obs_norm_of",
    "resolve_algo",
    "save_agent",
]

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}
_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU, "leaky_relu": torch.nn.LeakyReLU}


def resolve_algo(requested: str, env_cfg: Mapping[str, Any]) -> str:
    """``auto`` picks the env's configured algorithm; SAC on a discrete env is refused."""
    algo = env_cfg.get("algo", "ppo") if requested == "auto" else requested
    if algo not in ALGOS:
        raise ValueError(f"unknown agent '{algo}'; choose one of: auto, {', '.join(ALGOS)}")
    if algo == "sac" and env_cfg.get("discrete", False):
        raise ValueError(
            f"SAC needs continuous actions but {env_cfg['id']} has discrete actions; use agent=ppo (or agent=auto)"
        )
    if algo not in env_cfg.get("hyperparams", {}):
        raise ValueError(
            f"env config {env_cfg['id']} has no hyperparameters for '{algo}' "
            f"(it has: {', '.join(env_cfg.get('hyperparams', {})) or 'none'}); add hyperparams.{algo} to conf/env/"
        )
    return algo


@dataclass(frozen=True)
class ObsNorm:
    """VecNormalize's observation statistics, stored without pickle."""

    mean: np.ndarray
    var: np.ndarray
    count: float
    clip_obs: float
    epsilon: float

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs, self.clip_obs).astype(
            np.float32
        )

    @classmethod
    def from_vecnormalize(cls, venv: VecNormalize) -> "ObsNorm":
        rms = venv.obs_rms
        return cls(rms.mean.copy(), rms.var.copy(), float(rms.count), float(venv.clip_obs), float(venv.epsilon))

    def save(self, path: Path) -> None:
        save_npz(
            path,
            {
                "mean": self.mean,
                "var": self.var,
                "count": np.float64(self.count),
                "clip_obs": np.float64(self.clip_obs),
                "epsilon": np.float64(self.epsilon),
            },
        )

    @classmethod
    def load(cls, path: Path) -> "ObsNorm":
        a = load_npz(path, ("mean", "var", "count", "clip_obs", "epsilon"))
        return cls(a["mean"], a["var"], float(a["count"]), float(a["clip_obs"]), float(a["epsilon"]))


def _policy_kwargs(raw: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    kwargs = dict(raw or {})
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation_fn '{act}'; choose one of: {', '.join(_ACTIVATIONS)}")
        kwargs["activation_fn"] = _ACTIVATIONS[act]
    if "net_arch" in kwargs and isinstance(kwargs["net_arch"], Mapping):
        kwargs["net_arch"] = {k: list(v) for k, v in kwargs["net_arch"].items()}
    elif "net_arch" in kwargs:
        kwargs["net_arch"] = list(kwargs["net_arch"])
    return kwargs


#: Hyperparameters that may be a schedule over training, written rl-zoo3's way: ``lin_<start>`` decays
#: linearly from ``start`` to 0 (CleanRL's PPO anneals its learning rate so, which steadies the end of a run).
SCHEDULED = ("learning_rate", "clip_range")


def _schedule(key: str, value: Any) -> Any:
    """``value`` as SB3 takes it: a number stays (a numeric string becomes one), ``lin_<start>`` becomes a
    linear decay from ``start`` to 0 over training."""
    if not isinstance(value, str):
        return value
    linear = value.startswith("lin_")
    text = value[4:] if linear else value
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number > 0:
        raise ValueError(f"hyperparams.{key}='{value}' is not a positive number or a linear schedule "
                         "'lin_<start>' (e.g. lin_3e-4); fix it in conf/env/ or agent.overrides")
    return LinearSchedule(number, 0.0, 1.0) if linear else number


def hyperparams(env_cfg: Mapping[str, Any], algo: str, overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """The env's hyperparameters for ``algo`` with ``overrides`` merged in, as plain (JSON-able) data.

    They key stage artefacts, so names stay strings here (schedules are checked now, so a typo fails
    before any work); :func:`build_model` turns them into objects.
    """
    hp = {**dict(env_cfg["hyperparams"][algo]), **dict(overrides or {})}
    for key in SCHEDULED:
        if key in hp:
            _schedule(key, hp[key])
    return hp


def make_train_env(
    env_cfg: Mapping[str, Any],
    seed: int,
    *,
    reward_wrapper: Optional[Callable[[VecEnv], VecEnv]] = None,
    norm_obs: bool,
    norm_reward: bool,
    gamma: float,
) -> VecEnv:
    """Vectorised training env: Monitor records the *true* episode return even when the reward is replaced."""
    n_envs = int(env_cfg.get("n_envs", 1))

    def thunk(i: int):
        def _make():
            env = make_env(
                env_cfg["id"],
                max_episode_steps=env_cfg.get("max_episode_steps"),
                env_kwargs=env_cfg.get("env_kwargs"),
            )
            env.reset(seed=seed + i)
            env.action_space.seed(seed + i)
            return Monitor(env)

        return _make

    venv: VecEnv = DummyVecEnv([thunk(i) for i in range(n_envs)])
    venv.seed(seed)
    if reward_wrapper is not None:
        venv = reward_wrapper(venv)
    if norm_obs or norm_reward:
        venv = VecNormalize(venv, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)
    return venv


def build_model(algo: str, venv: VecEnv, hp: Mapping[str, Any], seed: int) -> BaseAlgorithm:
    hp = dict(hp)
    hp["policy_kwargs"] = _policy_kwargs(hp.get("policy_kwargs"))
    hp.update({key: _schedule(key, hp[key]) for key in SCHEDULED if key in hp})
    policy = hp.pop("policy", "MlpPolicy")
    return ALGOS[algo](policy, venv, seed=seed, verbose=0, device="cpu", **hp)


def obs_norm_of(venv: VecEnv) -> Optional[ObsNorm]:
    return ObsNorm.from_vecnormalize(venv) if isinstance(venv, VecNormalize) and venv.norm_obs else None


def save_agent(model: BaseAlgorithm, obs_norm: Optional[ObsNorm], directory: Path) -> None:
    """``model.zip`` (SB3's own format: JSON + torch state dicts) and ``obs_norm.npz``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / "model.zip")
    if obs_norm is not None:
        obs_norm.save(directory / "obs_norm.npz")


def load_agent(algo: str, directory: Path) -> tuple[BaseAlgorithm, Optional[ObsNorm]]:
    directory = Path(directory)
    path = directory / "model.zip"
    if not path.is_file():
        raise FileNotFoundError(f"no agent at {path}")
    try:
        model = ALGOS[algo].load(path, device="cpu")
    except Exception as exc:
        raise RuntimeError(f"corrupt agent file {path}: {type(exc).__name__}: {exc}. Delete it to rebuild.") from None
    norm_path = directory / "obs_norm.npz"
    return model, (ObsNorm.load(norm_path) if norm_path.is_file() else None)
