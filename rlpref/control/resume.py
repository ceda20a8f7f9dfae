"""Training state that survives a kill: a long stage saves it as it goes and a rebuild continues from it.

A state is a folder ``state_<step>/`` in the stage's partial folder (``ArtifactStore.partial_path``):
``model.zip`` (SB3's own format: policy, optimisers, step counter), ``vecnormalize.npz`` (observation
and return statistics), ``replay.npz`` for off-policy agents (the replay buffer, without pickle) and
``state.json`` written last, so a state without it is an interrupted save and is ignored. Only the
newest complete state is kept. ``state.json`` carries ``STATE_FORMAT``: a state written in another
format (by an older rlpref) is ignored with a warning and the stage starts over, because reading it
as today's format would silently mix up what it holds. A resumed stage continues where its last state left off; its result is
a valid artefact of the same config but not bit-identical to an uninterrupted build (the envs restart
their episodes, the random streams differ from that point).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rlpref.artifacts import atomic_write_json, load_npz, save_npz
from rlpref.control.algos import ALGOS

__all__ = ["STATE_FORMAT", "latest_state", "load_state", "save_state"]

#: Version of what a state folder holds; bump it whenever a stateful callback changes what it saves.
#: 2: the online loop saves only the feedback its rounds added (1, unmarked: all feedback so far).
STATE_FORMAT = 2
log = logging.getLogger("rlpref")

_REPLAY = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_state(model: BaseAlgorithm, directory: Path, extra: Optional[dict] = None,
               more: Optional[Callable[[Path], None]] = None) -> Path:
    """Write the model's training state as ``state_<step>`` under ``directory``; drop older states.
    ``extra``: JSON fields for ``state.json``; ``more(folder)`` writes further files (before the marker)."""
    directory = Path(directory)
    step = int(model.num_timesteps)
    out = directory / f"state_{step:012d}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model.save(out / "model.zip")
    venv = model.get_env()
    if isinstance(venv, VecNormalize):
        stats = {}
        for part, on in (("obs", venv.norm_obs), ("ret", venv.norm_reward)):
            if on:
                rms = getattr(venv, f"{part}_rms")
                stats.update({f"{part}_mean": rms.mean, f"{part}_var": rms.var, f"{part}_count": np.float64(rms.count)})
        save_npz(out / "vecnormalize.npz", stats)
    if isinstance(model, OffPolicyAlgorithm):
        buf = model.replay_buffer
        n = buf.buffer_size if buf.full else buf.pos  # only the filled part
        save_npz(out / "replay.npz", {**{k: getattr(buf, k)[:n] for k in _REPLAY if getattr(buf, k, None) is not None},
                                      "pos": np.int64(buf.pos), "full": np.bool_(buf.full)})
    if more is not None:
        more(out)
    atomic_write_json(out / "state.json", {"num_timesteps": step, "format": STATE_FORMAT, **(extra or {})})
    for old in directory.glob("state_*"):
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    return out


def latest_state(directory: Optional[Path]) -> Optional[Path]:
    """The newest complete state under ``directory`` (None: nothing to resume from)."""
    if directory is None or not Path(directory).is_dir():
        return None
    done = sorted(p for p in Path(directory).glob("state_*") if (p / "state.json").is_file())
    if not done:
        return None
    found = json.loads((done[-1] / "state.json").read_text()).get("format", 1)
    if found != STATE_FORMAT:
        log.warning("ignoring the resume state %s: it is in format %s, this rlpref reads format %s; "
                    "the stage starts over", done[-1], found, STATE_FORMAT)
        return None
    return done[-1]


def load_state(algo: str, state: Path, venv: VecEnv, **load_kwargs: Any) -> tuple[BaseAlgorithm, dict]:
    """The model of ``state`` bound to ``venv`` (its VecNormalize statistics and replay buffer restored)
    and the state's ``state.json``."""
    model = ALGOS[algo].load(state / "model.zip", env=venv, device="cpu", **load_kwargs)
    if isinstance(venv, VecNormalize) and (state / "vecnormalize.npz").is_file():
        a = load_npz(state / "vecnormalize.npz", ())
        for part in ("obs", "ret"):
            if f"{part}_mean" in a:
                rms = getattr(venv, f"{part}_rms")
                rms.mean, rms.var, rms.count = a[f"{part}_mean"], a[f"{part}_var"], float(a[f"{part}_count"])
    if isinstance(model, OffPolicyAlgorithm) and (state / "replay.npz").is_file():
        a = load_npz(state / "replay.npz", ("pos", "full"))
        buf = model.replay_buffer
        for k in _REPLAY:
            if k in a:
                getattr(buf, k)[: a[k].shape[0]] = a[k]
        buf.pos, buf.full = int(a["pos"]), bool(a["full"])
    return model, json.loads((state / "state.json").read_text())
