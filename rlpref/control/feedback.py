"""One feedback iteration, the unit every protocol is built from.

    policy ──rollout──▶ new rollout batch ──pair──▶ teacher labels ──append──▶ r_θ refitted

:func:`feedback_iteration` runs one: optionally roll a policy out as a new rollout batch (a new stratum),
label ``n`` pairs (chosen at random or by an active query rule under the current r_θ), append them to
the feedback so far and refit r_θ. The protocols differ only in the parts they plug in:

- the offline protocol's active-query chunks: no rollout (the source agent's clips are all there),
  labels over the whole feedback set, a fresh fit after each chunk for the next one to select with;
- the online protocol's first iteration: a uniformly random policy's rollout, labels inside it;
- rounds during agent training (``protocol=online`` and ``offline_rounds``): the training agent's rollout,
  labels that involve its batch, r_θ fine-tuned on everything so far.

Every iteration ``i`` of a run draws its episodes and random numbers from its own streams
(:func:`iteration_seeds`), so no two iterations replay the same episodes or draws.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch

from rlpref.control.config import IterationConfig
from rlpref.control.query import QueryConfig, make_selector
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import RewardModel, RewardTrainConfig, train_reward_model, validation_mask
from rlpref.control.teacher import TeacherConfig, label_pairs

__all__ = [
    "FeedbackState", "Labeller", "Refit", "RewardSetup", "feedback_iteration", "finetune", "fit_each_chunk",
    "iteration_seeds", "label_all", "label_new_batch",
]

#: Env reset seeds of rollout iterations start here (the source agent's batches use seed + 1000·b, b ≤ K).
_ROLLOUT_SEED_BASE = 50_000


def iteration_seeds(seed: int, i: int) -> tuple[np.random.Generator, int]:
    """(random stream, first env reset seed) of feedback iteration ``i`` of the run seeded ``seed``: the
    stream cuts the clips, draws and labels the pairs and picks the validation pairs; iteration 0 is the
    online protocol's first, rounds are 1, 2, ... in both protocols that have them."""
    return np.random.default_rng([seed, i, 11]), seed + _ROLLOUT_SEED_BASE + 1000 * i


@dataclass(frozen=True)
class RewardSetup:
    """What fits r_θ: the loss and its training settings (the loss decides which settings it reads)."""

    loss: str
    train: RewardTrainConfig

    def key(self) -> dict:
        return {"loss": self.loss, **self.train.key(self.loss)}


@dataclass
class FeedbackState:
    """All feedback so far: segments [M], preferences [P] indexing them, the fixed validation split
    (bool [P]: a pair once held out is never trained on) and the current r_θ (None before the first fit).
    A run's first iteration starts from nothing (segments None)."""

    segments: Optional[Segments] = None
    prefs: Optional[Preferences] = None
    val_mask: Optional[np.ndarray] = None
    model: Optional[RewardModel] = None
    n_start_segments: int = field(default=0, init=False)  # what the state started with (saved elsewhere)
    n_start_prefs: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.val_mask is not None and (self.val_mask.dtype != bool or self.val_mask.shape != (len(self.prefs),)):
            raise ValueError(f"val_mask must be bool [{len(self.prefs)}] (one per comparison), "
                             f"got {self.val_mask.dtype} {self.val_mask.shape}")
        self.n_start_segments = len(self.segments) if self.segments is not None else 0
        self.n_start_prefs = len(self.prefs) if self.prefs is not None else 0

    def added(self) -> tuple[Segments, Preferences]:
        """What the iterations added to the feedback the state started with."""
        return (self.segments.subset(np.arange(self.n_start_segments, len(self.segments))),
                self.prefs.subset(np.arange(self.n_start_prefs, len(self.prefs))))


#: label(state, n, rng, timer) -> the new labelled pairs (indices into state.segments)
Labeller = Callable[[FeedbackState, int, np.random.Generator, list], Preferences]
#: refit(state, labelled, rng) -> metrics: appends ``labelled`` to the state and refits its r_θ
Refit = Callable[[FeedbackState, Preferences, np.random.Generator], dict]


def feedback_iteration(state: FeedbackState, n: int, rng: np.random.Generator, *, label: Labeller,
                       refit: Optional[Refit], rollout: Optional[Callable[[], Segments]] = None) -> dict:
    """One iteration on ``state`` (changed in place): [roll out a new batch,] label ``n`` pairs, append and
    refit (``refit`` None: append only). Returns the iteration's log."""
    t0 = time.perf_counter()
    log: dict = {}
    if rollout is not None:
        new = rollout()
        state.segments = new if state.segments is None else Segments.concat([state.segments, new])
        log.update({"batch": int(new.batch[0]), "n_new_segments": len(new),
                    "new_segments_mean_return": float(new.returns.mean()),
                    "new_segments_min_return": float(new.returns.min())})
    t_rollout = time.perf_counter()
    timer: list[float] = []
    labelled = label(state, n, rng, timer)
    t_label = time.perf_counter()
    log["n_new_pairs"] = len(labelled)
    if refit is None:
        _append(state, labelled)
    else:
        log.update(refit(state, labelled, rng))
    log.update({"n_pairs_total": len(state.prefs) if state.prefs is not None else 0,
                "seconds_rollout": t_rollout - t0, "seconds_label": t_label - t_rollout,
                "seconds_select": float(sum(timer)), "seconds_refit": time.perf_counter() - t_label})
    return log


def _append(state: FeedbackState, labelled: Preferences, new_val: Optional[np.ndarray] = None) -> None:
    state.prefs = labelled if state.prefs is None else Preferences.concat([state.prefs, labelled])
    if new_val is not None:
        state.val_mask = new_val if state.val_mask is None else np.concatenate([state.val_mask, new_val])


def _selector(query: QueryConfig, state: FeedbackState, timer: list):
    """The active query rule's selector under the current r_θ (None: random pairs, or no r_θ yet)."""
    if state.model is None:
        return None
    return make_selector(query, state.model, state.segments, past=state.prefs, timer=timer)


def label_all(teacher: TeacherConfig, query: QueryConfig, gamma: float) -> Labeller:
    """Pairs over the whole feedback set, as the teacher's pairing draws them (the offline protocol)."""
    def label(state: FeedbackState, n: int, rng: np.random.Generator, timer: list) -> Preferences:
        select = _selector(query, state, timer)
        return label_pairs(state.segments, n, teacher, gamma, rng, select=select, pool=query.pool,
                           exclude=state.prefs.pairs if select is not None else None)
    return label


def label_new_batch(teacher: TeacherConfig, query: QueryConfig, it: IterationConfig, gamma: float) -> Labeller:
    """Pairs that involve the newest rollout batch (one stratum): ``it.pairing`` splits them into pairs
    inside it and pairs with an earlier clip (the first batch of a run has none, so all lie inside it);
    ``it.scale`` picks the teacher's yardstick. A settled agent's batch may hold fewer distinct non-tied
    pairs than asked: what exists is taken (strict=False)."""
    def label(state: FeedbackState, n: int, rng: np.random.Generator, timer: list) -> Preferences:
        batch = int(state.segments.batch.max())
        earlier = bool(np.any(state.segments.batch != batch))
        split = {"within": (n, 0), "across": (0, n), "mixed": (n - n // 2, n // 2)}[it.pairing] if earlier else (n, 0)
        select = _selector(query, state, timer)
        parts = []
        for pairing, count in zip(("within_batch", "across_batches"), split):
            if count:
                judge = replace(teacher, pairing=pairing, scale="scope" if it.scale == "round" else "all")
                parts.append(label_pairs(state.segments, count, judge, gamma, rng, batches=[batch], strict=False,
                                         select=select, pool=query.pool,
                                         exclude=state.prefs.pairs if select is not None else None))
        return parts[0] if len(parts) == 1 else Preferences.concat(parts)
    return label


def fit_each_chunk(reward: RewardSetup, seed: int, last: bool) -> Refit:
    """Active-query chunks: append, then (except after the ``last`` chunk, which the reward-model stage fits)
    a fresh r_θ on everything so far for the next chunk to select with."""
    def refit(state: FeedbackState, labelled: Preferences, rng: np.random.Generator) -> dict:
        _append(state, labelled)
        if not last:
            state.model = train_reward_model(state.segments, state.prefs, reward.loss, reward.train, seed)[0]
        return {}
    return refit


def finetune(reward: RewardSetup, it: IterationConfig, seed: int) -> Refit:
    """A round's refit: the new pairs get validation pairs of their own, r_θ is fine-tuned on all feedback
    (epochs capped by ``it.refit_epochs``, optionally replaying only some older pairs), and the mean and sd
    of its per-step reward on the new clips are logged before and after (``it.keep_level`` restores them).
    Fewer than 2 new pairs are not worth a refit: they are dropped."""
    refit_cfg = reward.train if it.refit_epochs is None else replace(reward.train, max_epochs=it.refit_epochs)

    def refit(state: FeedbackState, labelled: Preferences, rng: np.random.Generator) -> dict:
        if len(labelled) < 2:
            return {}
        new = state.segments.subset(np.flatnonzero(state.segments.batch == state.segments.batch.max()))
        before = step_reward_stats(state.model, new)
        _append(state, labelled, validation_mask(len(labelled), reward.train.val_fraction, rng))
        state.model, metrics, history = train_reward_model(
            state.segments, state.prefs, reward.loss, refit_cfg, seed, init=state.model, val_mask=state.val_mask,
            keep_init=it.refit == "gated", balance_val=it.refit == "trained", replay=it.refit_replay,
            focus=np.arange(len(state.prefs)) >= len(state.prefs) - len(labelled))
        after = step_reward_stats(state.model, new)
        if it.keep_level:
            _set_level(state.model, after, before)
        return {"epochs": len(history), **{k: metrics[k] for k in ("val_accuracy", "val_true_accuracy", "pearson",
                                                                    "spearman") if k in metrics},
                "reward_mean_before": before[0], "reward_sd_before": before[1],
                "reward_mean_after": after[0], "reward_sd_after": after[1]}
    return refit


def step_reward_stats(model: RewardModel, segments: Segments) -> tuple[float, float]:
    """Mean and sd of r_θ over every step of ``segments``: logged before and after a refit, because the
    preference losses pin r_θ down only up to an offset (and loosely in scale), so a refit can move the
    level of the reward the agent is being trained on while leaving every ranking intact."""
    obs, acts, nxt = (a.reshape(-1, a.shape[-1]) for a in (segments.obs, segments.acts, segments.next_obs))
    r = model.predict(obs, acts, nxt if model.use_next_obs else None)
    return float(r.mean()), float(r.std())


@torch.no_grad()
def _set_level(model: RewardModel, current: tuple[float, float], target: tuple[float, float]) -> None:
    """Compose the model's served affine level so that (mean, sd) ``current`` becomes ``target``.
    A constant reward (sd 0) on either side keeps the scale and matches only the mean."""
    c = target[1] / current[1] if current[1] > 0 and target[1] > 0 else 1.0
    model.out_scale.mul_(c)
    model.out_shift.mul_(c).add_(target[0] - c * current[0])
