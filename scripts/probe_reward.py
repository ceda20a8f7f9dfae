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
from rlpref.control.reward_net import load_reward_model


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


def _rollout(env_id: str, act_fn, episodes: int, seed: int, max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obs [E, T, D], actions [E, T, A], true returns [E] of ``episodes`` full episodes."""
    all_obs, all_act, rets = [], [], []
    for ep in range(episodes):
        env = make_env(env_id, max_episode_steps=max_steps)
        obs, _ = env.reset(seed=seed + ep)
        o_list, a_list, ret = [], [], 0.0
        for _ in range(max_steps):
            a = np.asarray(act_fn(obs), dtype=np.float32)
            o_list.append(obs.astype(np.float32))
            a_list.append(a)
            obs, r, term, trunc, _ = env.step(a)
            ret += float(r)
            if term or trunc:
                break
        env.close()
        all_obs.append(np.stack(o_list))
        all_act.append(np.stack(a_list))
        rets.append(ret)
    return np.stack(all_obs), np.stack(all_act), np.asarray(rets)


def collect(caches: list[Path], env_id: str, episodes: int, seed: int, max_steps: int) -> dict[str, np.ndarray]:
    names, obs, acts, rets = [], [], [], []
    env = make_env(env_id, max_episode_steps=max_steps)
    space = env.action_space
    env.close()
    rng = np.random.default_rng(seed)
    probes = [("random", lambda o: rng.uniform(space.low, space.high).astype(np.float32)),
              ("zero", lambda o: np.zeros(space.shape, np.float32))]
    for name, directory, algo in _policies(caches):
        model, norm = load_agent(algo, directory)

        def act(o, model=model, norm=norm):
            x = norm(o[None]) if norm is not None else o[None]
            return model.predict(x, deterministic=True)[0][0]

        probes.append((name, act))
    for name, act_fn in probes:
        o, a, r = _rollout(env_id, act_fn, episodes, seed, max_steps)
        print(f"{name:50s} true return {r.mean():9.1f}", flush=True)
        names.append(name)
        obs.append(o)
        acts.append(a)
        rets.append(r)
    return {"names": np.asarray(names), "obs": np.stack(obs), "acts": np.stack(acts), "returns": np.stack(rets)}


def score(model_dir: Path, probes: dict[str, np.ndarray]) -> dict:
    model = load_reward_model(model_dir)
    obs, acts = probes["obs"], probes["acts"]
    with torch.no_grad():
        r = model(torch.as_tensor(obs), torch.as_tensor(acts), torch.as_tensor(np.roll(obs, -1, axis=2))
                  if model.use_next_obs else None).numpy()
    learned = r.sum(-1).mean(-1)  # per probe: mean over episodes of the summed reward
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
        probes = load_npz(args.rollouts, required=("names", "obs", "acts", "returns"))
    else:
        if not args.cache:
            ap.error(f"{args.rollouts} does not exist: pass --cache to build it")
        probes = collect(args.cache, args.env, args.episodes, args.seed, args.max_steps)
        save_npz(args.rollouts, probes)
    for m in args.models:
        res = score(m, probes)
        print(f"{m}: spearman {res['spearman']:.3f}  worst degenerate {res['degenerate_score']:.3f}  "
              f"best-true probe {res['best_true_probe_score']:.3f}")
        if args.verbose:
            for name, (t, s) in sorted(res["per_probe"].items(), key=lambda kv: kv[1][0]):
                print(f"    {name:50s} true {t:9.1f}  learned {s:6.3f}")


if __name__ == "__main__":
    main()
