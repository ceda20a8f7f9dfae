"""Render a finished run's final policy to mp4, headless: ``python -m rlpref.video <run dir>``.

Runs after training and evaluation (never inside them), so rendering cannot slow training. Each
episode is played with the deterministic policy on an env that keeps the true reward; every frame is
overlaid with the running true return and, for runs on a learned reward, the running learned return
Σ r_θ(s, a). Both totals are also in the file name. ``--compare`` puts a second run beside the first
(e.g. BT and RR of the same seed), both started from the same env seed.

MuJoCo needs an off-screen OpenGL: :func:`headless_gl` picks ``MUJOCO_GL=egl`` where EGL works (a GPU
machine) and ``osmesa`` otherwise (CPU, ``apt-get install libosmesa6``); highway-env draws with
pygame on SDL's dummy video driver.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["Episode", "headless_gl", "render_run", "write_mp4"]

log = logging.getLogger(__name__)

_EGL_PROBE = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"


def headless_gl() -> str:
    """Choose the off-screen GL before MuJoCo is imported; returns the ``MUJOCO_GL`` in force.

    An explicit ``MUJOCO_GL`` is respected. Otherwise EGL is probed in a subprocess (a failed EGL
    start cannot be undone inside this process) and OSMesa is the fallback.
    """
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (highway-env) without a display
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # and without a sound card
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if "mujoco" in sys.modules:
        raise RuntimeError(
            "MuJoCo was imported before an off-screen GL was chosen; set MUJOCO_GL=egl or MUJOCO_GL=osmesa "
            "in the environment before starting Python"
        )
    try:
        probe = subprocess.run([sys.executable, "-c", _EGL_PROBE], env={**os.environ, "MUJOCO_GL": "egl"},
                               capture_output=True, timeout=60)
        egl_works = probe.returncode == 0
    except subprocess.TimeoutExpired:
        egl_works = False
    os.environ["MUJOCO_GL"] = "egl" if egl_works else "osmesa"
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    return os.environ["MUJOCO_GL"]


@dataclass
class Episode:
    """One rendered episode: frames uint8 [T, H, W, 3], the true return, the learned return (or None)."""

    frames: np.ndarray
    true_return: float
    learned_return: Optional[float]
    steps: int
    ended: bool  # False: cut at max_steps before the episode ended


def _overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        xy = (6, 4 + 13 * i)
        draw.text((xy[0] + 1, xy[1] + 1), text, fill=(0, 0, 0))
        draw.text(xy, text, fill=(255, 255, 255))
    return np.asarray(img)


def play_episode(run_dir: Path, seed: int, max_steps: Optional[int], width: int, height: int,
                 label: str = "") -> Episode:
    """Play the run's final policy for one episode (to its end, or at most ``max_steps`` steps) and render
    every step."""
    from envs import make_env
    from rlpref.control.algos import load_agent
    from rlpref.control.policies import sb3_policy
    from rlpref.control.reward_net import load_reward_model

    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: render a finished run folder (one with results.json)")
    try:
        results = json.loads(results_path.read_text())
        env_cfg, algo = results["config"]["env"], results["algo"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise RuntimeError(f"corrupt results file {results_path}: {exc}") from None
    model, obs_norm = load_agent(algo, run_dir / "agent")
    policy = sb3_policy(model, deterministic=True)
    reward_model = load_reward_model(run_dir) if results.get("reward") == "learned" else None
    kwargs = dict(env_cfg.get("env_kwargs") or {})
    if env_cfg["id"].startswith(("HalfCheetah", "Walker2d", "Swimmer", "Hopper", "Ant", "Humanoid")):
        kwargs.update(width=width, height=height)
    env = make_env(env_cfg["id"], render_mode="rgb_array", max_episode_steps=env_cfg.get("max_episode_steps"),
                   env_kwargs=kwargs)
    obs, _ = env.reset(seed=seed)
    true_ret, learned_ret, frames = 0.0, 0.0 if reward_model is not None else None, []

    def snap(step: int) -> None:
        lines = [f"{label}{env_cfg['id']}  step {step}", f"true return {true_ret:9.1f}"]
        if learned_ret is not None:
            lines.append(f"learned return {learned_ret:9.1f}")
        frames.append(_overlay(np.asarray(env.render(), dtype=np.uint8), lines))

    snap(0)
    steps, term, trunc = 0, False, False
    while max_steps is None or steps < max_steps:
        raw = np.asarray(obs, dtype=np.float32)[None]
        action = policy(obs_norm(raw) if obs_norm is not None else raw)
        obs, r, term, trunc, _ = env.step(action[0])
        if reward_model is not None:
            learned_ret += float(reward_model.predict_env(raw, np.asarray(action), np.asarray(obs)[None],
                                                          env.action_space)[0])
        true_ret += float(r)
        steps += 1
        snap(steps)
        if term or trunc:
            break
    env.close()
    return Episode(np.stack(frames), true_ret, learned_ret, steps, bool(term or trunc))


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Write frames uint8 [T, H, W, 3] as H.264 mp4, atomically (temp file, then rename)."""
    import imageio.v2 as imageio

    from rlpref.artifacts import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=1) as w:
        for f in frames:
            w.append_data(f)
    return path


def _fps(env_id: str) -> int:
    from envs import make_env

    env = make_env(env_id)
    fps = env.metadata.get("render_fps") or 30
    env.close()
    return int(fps)


def _method(results: dict) -> str:
    return results["loss"] if results["reward"] == "learned" else "oracle"


def _tag(results: dict) -> str:
    return f"{results['env']}_{_method(results)}_seed{results['seed']}"


def render_run(
    run_dir: Path,
    *,
    episodes: int = 1,
    max_steps: Optional[int] = None,
    width: int = 320,
    height: int = 240,
    seed: int = 2024,
    compare: Optional[Path] = None,
    out_dir: Optional[Path] = None,
) -> list[Path]:
    """Render ``episodes`` episodes of a run (optionally beside a second run) to ``<out>/*.mp4``.

    Each video covers the whole episode unless ``max_steps`` cuts it; a cut video's name ends in
    ``_first<N>steps`` and the log says how many steps it shows, so a name never claims a whole episode.
    The returns in the name are those of the steps shown.
    """
    if episodes < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need episodes >= 1 and max_steps >= 1, got {episodes}, {max_steps}")
    headless_gl()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "videos"
    results = json.loads((run_dir / "results.json").read_text())
    other = json.loads((Path(compare) / "results.json").read_text()) if compare else None
    if other is not None and other["env"] != results["env"]:
        raise ValueError(f"--compare needs runs of the same env, got {results['env']} and {other['env']}")
    fps = _fps(results["env"])
    paths = []
    for ep in range(episodes):
        a = play_episode(run_dir, seed + ep, max_steps, width, height, label=f"{_method(results)}  ")
        name = f"{_tag(results)}_ep{ep}_true{a.true_return:.0f}"
        if a.learned_return is not None:
            name += f"_learned{a.learned_return:.0f}"
        frames, cut = a.frames, not a.ended
        if other is not None:
            b = play_episode(Path(compare), seed + ep, max_steps, width, height, label=f"{_method(other)}  ")
            t = max(len(a.frames), len(b.frames))
            pad = lambda f: np.concatenate([f, np.repeat(f[-1:], t - len(f), axis=0)])  # noqa: E731
            frames = np.concatenate([pad(a.frames), pad(b.frames)], axis=2)
            name += f"_vs_{_method(other)}_true{b.true_return:.0f}"
            cut = cut or not b.ended
        if cut:
            name += f"_first{max_steps}steps"
            log.info("video %s.mp4 shows the first %d steps of each episode (max_steps)", name, max_steps)
        paths.append(write_mp4(out_dir / f"{name}.mp4", frames, fps))
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.video", description="Render a finished run's policy to mp4.")
    ap.add_argument("run_dir", type=Path, help="a run folder with results.json and agent/")
    ap.add_argument("--compare", type=Path, default=None, help="a second run of the same env, shown side by side")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="cut each episode after this many steps (default: the whole episode)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--seed", type=int, default=2024, help="env seed of the first episode")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: <run dir>/videos)")
    args = ap.parse_args(argv)
    for p in render_run(args.run_dir, episodes=args.episodes, max_steps=args.max_steps, width=args.width,
                        height=args.height, seed=args.seed, compare=args.compare, out_dir=args.out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
