#!/usr/bin/env python
"""PPO steps/s on the learned reward vs on the true reward, measured as A/B pairs in one process.

    python scripts/bench_throughput.py [--env HalfCheetah-v4] [--steps 8192] [--pairs 3]

Both arms use the env's tuned PPO and the same env stack (DummyVecEnv + VecNormalize); the learned arm
adds the LearnedRewardVecEnv with the default reward net (5 x 256 MLP; the weights do not change the
cost), scored as the agent stage scores it: per rollout for on-policy agents (RolloutRelabel), per step
otherwise (``--per-step`` forces per step). Arms alternate A B A B so machine-speed drift cancels in the
per-pair ratio learned/plain.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from rlpref.control.algos import ALGOS, build_model, hyperparams, make_train_env, resolve_algo
from rlpref.control.learned_reward import LearnedRewardVecEnv, RolloutRelabel
from rlpref.control.reward_net import RewardModel
from rlpref.runtime import configure_compute

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def steps_per_second(env_cfg: dict, algo: str, steps: int, reward_model=None, seed: int = 0,
                     per_step: bool = False) -> float:
    hp = hyperparams(env_cfg, algo)
    gamma = float(hp.get("gamma", 0.99))
    deferred = reward_model is not None and not per_step and issubclass(ALGOS[algo], OnPolicyAlgorithm)
    wrapper = (lambda v: LearnedRewardVecEnv(v, reward_model, deferred=deferred)) if reward_model is not None else None
    venv = make_train_env(env_cfg, seed, reward_wrapper=wrapper, norm_obs=True, norm_reward=not deferred,
                          gamma=gamma)
    model = build_model(algo, venv, hp, seed)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=RolloutRelabel(gamma) if deferred else None)
    rate = model.num_timesteps / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="HalfCheetah-v4")
    ap.add_argument("--steps", type=int, default=8192)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--per-step", action="store_true", help="score the learned reward every step (as SAC does)")
    args = ap.parse_args()
    configure_compute(1)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[f"env={args.env}"]), resolve=True)
    env_cfg = cfg["env"]
    algo = resolve_algo("auto", env_cfg)
    probe = make_train_env(env_cfg, 0, norm_obs=False, norm_reward=False, gamma=0.99)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    model = RewardModel(obs_dim, act_dim, cfg["reward_model"]["hidden"],
                        use_actions=cfg["reward_model"]["use_actions"]).eval()
    ratios, plain, learned = [], [], []
    for _ in range(args.pairs):
        plain.append(steps_per_second(env_cfg, algo, args.steps))
        learned.append(steps_per_second(env_cfg, algo, args.steps, model, per_step=args.per_step))
        ratios.append(learned[-1] / plain[-1])
    mode = "per step" if args.per_step or algo != "ppo" else "per rollout"
    print(f"{args.env} {algo}, {args.steps} steps per arm, {args.pairs} pairs, 1 torch thread, learned reward {mode}")
    print(f"plain   steps/s: median {statistics.median(plain):.0f} (min {min(plain):.0f}, max {max(plain):.0f})")
    print(f"learned steps/s: median {statistics.median(learned):.0f} (min {min(learned):.0f}, max {max(learned):.0f})")
    print(f"ratio learned/plain: median {statistics.median(ratios):.3f} (per pair: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
