"""Does a learned reward rank whole *policies* the way the true return does?

A reward model can reach ~99 % validation accuracy on its own feedback and still mislead an agent:
the agent visits states and actions the feedback never showed. This diagnostic rolls out a library of
policies (every agent and source checkpoint found in a cache, a uniformly random policy and the
zero-action policy), then scores each with reward models and reports, per model, the Spearman
correlation of learned vs true episode return and the learned score given to *degenerate* policies
(true return below 10 % of the best probe's), on a 0 = random … 1 = best-probe scale.

    python scripts/probe_reward.py --cache CACHE [--cache CACHE2 ...] --env HalfCheetah-v4 \
        --rollouts probes.npz --models RM_DIR [RM_DIR ...]

``RM_DIR`` holds ``reward_net.json`` + ``reward_net.pt`` (a cache's ``reward_model/<key>`` folder or a
run folder). The rollouts are cached in ``--rollouts`` (npz) so that many models can be compared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from envs import make_env
from rlpref.artifacts import load_npz, save_npz
from rlpref.control.algos import load_agent
from rlpref.control.policies import random_policy, sb3_policy
from rlpref.control.reward_net import load_reward_model
from rlpref.control.segments import collect_stream


def _policies(caches: list[Path]) -> list[tuple[str, Path, str]]:
    """(name, directory, algo) of every saved agent and source checkpoint in the caches."""
    found = []
    for cache in caches:
        for manifest in sorted(cache.glob("agent/*/manifest.json")):
            cfg = json.loads(manifest.read_text())["config"]
            found.append((f"agent:{cfg['reward']}:s{cfg['seed']}:{manifest.parent.name}", manifest.parent / "agent",
                          cfg["algo"]))
        for manifest in sorted(cache.glob("source/*/manifest.json")):
            cfg = json.loads(manifest.read_text())["config"]
            for ckpt in sorted(manifest.parent.glob("ckpt_*")):
                found.append((f"source:s{cfg['seed']}:{ckpt.name}", ckpt, cfg["algo"]))
    return found


def collect(caches: list[Path], env_id: str, episodes: int, seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """Roll every probe policy out in ``episodes`` envs for ``max_steps`` steps each (the rollout code of
    the segments stage); a probe's true return is the summed reward over those steps."""
    env_cfg = {"id": env_id, "max_episode_steps": max_steps}
    env = make_env(env_id, max_episode_steps=max_steps)
    space = env.action_space
    env.close()
    probes = [("random", random_policy(space, seed), None),
              ("zero", lambda o: np.zeros((o.shape[0],) + space.shape, np.float32), None)]
    for name, directory, algo in _policies(caches):
        model, norm = load_agent(algo, directory)
        probes.append((name, sb3_policy(model), norm))
    names, obs, acts, next_obs, rets = [], [], [], [], []
    for name, policy, norm in probes:
        stream = collect_stream(env_cfg, policy, episodes * max_steps, episodes, seed, norm, desc=name)
        r = stream["rewards"].astype(np.float64).sum(-1)
        print(f"{name:50s} true return {r.mean():9.1f}", flush=True)
        names.append(name)
        obs.append(stream["obs"])
        acts.append(stream["acts"])
        next_obs.append(stream["next_obs"])
        rets.append(r)
    return {"names": np.asarray(names), "obs": np.stack(obs), "acts": np.stack(acts), "next_obs": np.stack(next_obs),
            "returns": np.stack(rets)}


def score(model_dir: Path, probes: dict[str, np.ndarray]) -> dict:
    model = load_reward_model(model_dir)
    obs, acts = probes["obs"], probes["acts"]
    with torch.no_grad():
        r = model(torch.as_tensor(obs), torch.as_tensor(acts),
                  torch.as_tensor(probes["next_obs"]) if model.use_next_obs else None).numpy()
    learned = r.sum(-1).mean(-1)  # per probe: mean over its envs of the summed learned reward
    true = probes["returns"].mean(-1)
    names = list(probes["names"])
    rand = learned[names.index("random")]
    scale = learned.max() - rand
    degenerate = (true < 0.1 * true.max()) & (np.arange(true.size) != names.index("random"))
    best_true = int(np.argmax(true))
    return {
        "model": str(model_dir),
        "spearman": float(spearmanr(learned, true).statistic),
        "degenerate_score": float(((learned[degenerate] - rand) / scale).max()) if degenerate.any() else None,
        "best_true_probe_score": float((learned[best_true] - rand) / scale),
        "per_probe": {n: [float(t), float((l - rand) / scale)] for n, t, l in zip(names, true, learned)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, action="append", default=[], help="artefact cache(s) to take policies from")
    ap.add_argument("--env", default="HalfCheetah-v4")
    ap.add_argument("--rollouts", type=Path, required=True, help="npz of probe rollouts (built if missing)")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--models", type=Path, nargs="*", default=[])
    ap.add_argument("--verbose", action="store_true", help="print every probe's normalised learned score")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.rollouts.is_file():
        probes = load_npz(args.rollouts, required=("names", "obs", "acts", "next_obs", "returns"))
    else:
        if not args.cache:
            ap.error(f"{args.rollouts} does not exist: pass --cache to build it")
        probes = collect(args.cache, args.env, args.episodes, args.seed, args.max_steps)
        save_npz(args.rollouts, probes)
    for m in args.models:
        res = score(m, probes)
        worst = "n/a (no degenerate probe)" if res["degenerate_score"] is None else f"{res['degenerate_score']:.3f}"
        print(f"{m}: spearman {res['spearman']:.3f}  worst degenerate {worst}  "
              f"best-true probe {res['best_true_probe_score']:.3f}")
        if args.verbose:
            for name, (t, s) in sorted(res["per_probe"].items(), key=lambda kv: kv[1][0]):
                print(f"    {name:50s} true {t:9.1f}  learned {s:6.3f}")


if __name__ == "__main__":
    main()
