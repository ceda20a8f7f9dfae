"""Active query selection: which candidate pairs the teacher is asked about.

The teacher's pairing draws ``pool`` times as many candidate pairs as it needs (inside each rollout
batch, so every stratum still holds the comparisons RR ranks against each other); a rule keeps the
most informative ones under the current reward model r_θ, and only those are labelled. The same
teacher then gives choice and strength, so RR and BT work with every rule.

- ``random``: the first candidates (the teacher's own random draw; no model needed).
- ``entropy``: largest binary entropy of p = σ(ΔU), ΔU from the ensemble mean: the pairs r_θ is least
  sure about.
- ``disagreement``: largest spread (sd) of the members' p_e = σ(ΔU_e) (B-Pref/PEBBLE; needs
  ``reward_model.ensemble >= 2``).
- ``dopt``: greedy D-optimal design on the last hidden layer: maximise log det(Σ p(1−p) ΔφΔφᵀ + λI)
  over the selected pairs, with Δφ the difference of the two segments' summed features (U is linear in
  them). Each greedy step is a rank-one (Sherman–Morrison) update, O(C·d) for C candidates.
- ``dopt_past``: ``dopt`` whose design starts from the pairs already labelled.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch

from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import RewardModel
from rlpref.schema import Section, rule

__all__ = ["QUERY_RULES", "QueryConfig", "Selector", "make_selector", "score_segments", "select_pairs"]

QUERY_RULES = ("random", "disagreement", "entropy", "dopt", "dopt_past")
Selector = Callable[[np.ndarray, int], np.ndarray]  # (candidate pairs [C, 2], n) -> chosen candidate indices [n]


@dataclass(frozen=True)
class QueryConfig(Section):
    SECTION = "query"
    name: str = rule("random", choices=QUERY_RULES)
    pool: int = rule(10, ge=1)  # candidate pairs drawn per query asked
    chunks: int = rule(4, ge=2)  # offline feedback: the first chunk at random, each later one selected by r_θ fitted so far
    ridge: float = rule(1e-3, gt=0.0)  # λ of the D-optimal design

    @property
    def active(self) -> bool:
        return self.name != "random"

    def key(self) -> Optional[dict]:
        """What changes the selected pairs (None under random: nothing here is read)."""
        return asdict(self) if self.active else None


@torch.no_grad()
def score_segments(model: RewardModel, segments: Segments, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(U [E, M]: each member's segment utility, Φ [M, d]: member 0's last hidden layer summed over the
    segment's steps), in the units the losses train (before the served affine level)."""
    utilities, feats = [], []
    for start in range(0, len(segments), chunk):
        sl = slice(start, start + chunk)
        x = model.features(torch.as_tensor(segments.obs[sl]), torch.as_tensor(segments.acts[sl]),
                           torch.as_tensor(segments.next_obs[sl]) if model.use_next_obs else None)
        utilities.append(model.member_rewards(x).sum(-1).double().numpy())
        z = (x - model.in_mean) / model.in_std
        feats.append(model.members[0].net[:-1](z).sum(-2).double().numpy())
    return np.concatenate(utilities, axis=1), np.concatenate(feats)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _dopt(x: np.ndarray, w: np.ndarray, n: int, a_inv: np.ndarray) -> np.ndarray:
    """Greedy log-det design: n rows of x [C, d] with weights w [C], starting from A⁻¹ ``a_inv`` [d, d]."""
    q = np.einsum("cd,de,ce->c", x, a_inv, x)
    taken = np.zeros(len(x), dtype=bool)
    out = []
    for _ in range(min(n, len(x))):
        gain = np.where(taken, -np.inf, np.log1p(w * q))
        j = int(np.argmax(gain))
        v = a_inv @ x[j]
        denom = 1.0 + w[j] * q[j]
        a_inv = a_inv - w[j] * np.outer(v, v) / denom
        q = q - w[j] * (x @ v) ** 2 / denom
        taken[j] = True
        out.append(j)
    return np.asarray(out, dtype=np.int64)


def select_pairs(rule_name: str, cand: np.ndarray, n: int, u: np.ndarray, phi: np.ndarray,
                 past: Optional[np.ndarray] = None, ridge: float = 1e-3) -> np.ndarray:
    """Indices of the ``n`` candidate pairs (``cand`` [C, 2] segment indices) the rule asks about."""
    n = min(n, len(cand))
    if rule_name == "random":
        return np.arange(n)
    d_u = u[:, cand[:, 0]] - u[:, cand[:, 1]]  # [E, C]
    if rule_name == "entropy":
        p = np.clip(_sigmoid(d_u.mean(0)), 1e-12, 1 - 1e-12)
        score = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        return np.argsort(-score, kind="stable")[:n]
    if rule_name == "disagreement":
        if u.shape[0] < 2:
            raise ValueError("query=disagreement needs an ensemble: set reward_model.ensemble >= 2")
        return np.argsort(-_sigmoid(d_u).std(0), kind="stable")[:n]
    if rule_name in ("dopt", "dopt_past"):
        p = _sigmoid(d_u.mean(0))
        x = phi[cand[:, 0]] - phi[cand[:, 1]]
        a = ridge * np.eye(phi.shape[1])
        if rule_name == "dopt_past" and past is not None and len(past):
            xp = phi[past[:, 0]] - phi[past[:, 1]]
            pp = _sigmoid(u[:, past[:, 0]].mean(0) - u[:, past[:, 1]].mean(0))
            a = a + (xp * (pp * (1 - pp))[:, None]).T @ xp
        return _dopt(x, p * (1 - p), n, np.linalg.inv(a))
    raise ValueError(f"unknown query rule '{rule_name}'; choose one of: {', '.join(QUERY_RULES)}")


def make_selector(cfg: QueryConfig, model: RewardModel, segments: Segments, past: Optional[Preferences] = None,
                  timer: Optional[list] = None) -> Optional[Selector]:
    """A selector for :func:`rlpref.control.teacher.label_pairs` (None under ``random``): segments are
    scored once; ``timer`` (a list) collects the seconds spent scoring and selecting."""
    if not cfg.active:
        return None
    t0 = time.perf_counter()
    u, phi = score_segments(model, segments)
    past_pairs = None if past is None else past.pairs
    if timer is not None:
        timer.append(time.perf_counter() - t0)

    def select(cand: np.ndarray, n: int) -> np.ndarray:
        t = time.perf_counter()
        idx = select_pairs(cfg.name, cand, n, u, phi, past_pairs, cfg.ridge)
        if timer is not None:
            timer.append(time.perf_counter() - t)
        return idx

    return select
