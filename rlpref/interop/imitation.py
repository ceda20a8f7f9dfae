"""ResponseRank as a reward loss of imitation's ``PreferenceComparisons`` loop.

imitation (HumanCompatibleAI/imitation, 1.0.x) trains its reward net with a cross-entropy (Bradley–Terry)
loss over fragment pairs. :class:`ResponseRankRewardLoss` swaps in rlpref's ResponseRank loss so that
imitation's own loop learns from preference *strength* too:

- the choice is imitation's preference (pairs it labels 0.5, a tie, carry no order and are skipped);
- the strength is the gap of the two fragments' true returns (discounted like the preference model's
  returns), as a rank key −|R1 − R2| (lower = stronger), from the rewards the fragments carry;
- the strata are gathering rounds: :class:`RoundTagger` wraps the preference gatherer and files every
  pair under the round it was labelled in, the rollout batch of imitation's loop. Tied strengths inside a
  round are split round-robin (:func:`rlpref.strata.stratify`) so no tie reaches the sort.

    tagger = RoundTagger(SyntheticGatherer(rng=rng))
    trainer = BasicRewardTrainer(preference_model, ResponseRankRewardLoss(tagger), rng=rng)
    PreferenceComparisons(..., preference_gatherer=tagger, reward_trainer=trainer).train(...)

imitation is optional: importing this module without it raises an ImportError that says how to install it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

try:
    from imitation.algorithms import preference_comparisons as pc
    from imitation.data import rollout
except ImportError as exc:  # pragma: no cover - exercised only where imitation is missing
    raise ImportError(
        "rlpref.interop.imitation needs imitation: pip install --no-deps imitation==1.0.1 "
        "(make install does this)"
    ) from exc

from rlpref.losses import rr_loss
from rlpref.strata import stratify

__all__ = ["ResponseRankRewardLoss", "RoundTagger"]


class RoundTagger(pc.PreferenceGatherer):
    """A preference gatherer that labels with ``gatherer`` and remembers each pair's gathering round."""

    def __init__(self, gatherer: pc.PreferenceGatherer):
        self.gatherer = gatherer  # before the base class sets the logger, which goes to the gatherer
        super().__init__(custom_logger=gatherer.logger)
        self.n_rounds = 0
        self._round_of: dict[int, int] = {}  # id of a pair's first fragment -> round

    @property
    def logger(self):
        return self.gatherer.logger

    @logger.setter
    def logger(self, value) -> None:  # PreferenceComparisons hands its logger to the gatherer
        self.gatherer.logger = value

    def __call__(self, fragment_pairs: Sequence[pc.TrajectoryWithRewPair]) -> np.ndarray:
        preferences = self.gatherer(fragment_pairs)
        for first, _ in fragment_pairs:
            self._round_of[id(first)] = self.n_rounds
        self.n_rounds += 1
        return preferences

    def rounds(self, fragment_pairs: Sequence[pc.TrajectoryPair]) -> np.ndarray:
        """int [N]: the round each pair was gathered in (a KeyError names a pair this tagger never saw)."""
        try:
            return np.array([self._round_of[id(first)] for first, _ in fragment_pairs], dtype=np.int64)
        except KeyError:
            raise KeyError("a fragment pair that this RoundTagger did not gather: pass the same tagger as "
                           "PreferenceComparisons' preference_gatherer") from None


def _discounted_returns(values: Sequence[np.ndarray], discount: float) -> np.ndarray:
    """Discounted sums of per-step values, one per fragment."""
    return np.array([float(np.sum(np.asarray(v, np.float64) * discount ** np.arange(len(v)))) for v in values])


class ResponseRankRewardLoss(pc.RewardLoss):
    """rlpref's ResponseRank loss over imitation's fragment pairs (single reward nets; not ensembles)."""

    def __init__(self, tagger: RoundTagger):
        super().__init__()
        self.tagger = tagger

    def forward(self, fragment_pairs: Sequence[pc.TrajectoryPair], preferences: np.ndarray,
                preference_model: pc.PreferenceModel) -> pc.LossAndMetrics:
        if preference_model.ensemble_model is not None:
            raise NotImplementedError("ResponseRankRewardLoss trains single reward nets, not ensembles")
        if not all(isinstance(f, pc.TrajectoryWithRew) for pair in fragment_pairs for f in pair):
            raise ValueError("ResponseRank needs each fragment's true rewards for its strength (TrajectoryWithRew)")
        prefs = np.asarray(preferences, dtype=np.float64)
        keep = np.flatnonzero(prefs != 0.5)
        pairs = [fragment_pairs[i] for i in keep]
        if not pairs:  # only ties: nothing to rank, a zero loss that still reaches every parameter
            zero = sum(p.sum() for p in preference_model.model.parameters()) * 0.0
            return pc.LossAndMetrics(loss=zero, metrics={"accuracy": torch.tensor(float("nan"))})
        gamma = float(preference_model.discount_factor)
        frags = [f for pair in pairs for f in pair]
        lengths = [len(f.acts) for f in frags]
        rews = preference_model.rewards(rollout.flatten_trajectories(frags))  # [Σ lengths]
        discounts = torch.cat([gamma ** torch.arange(n, dtype=rews.dtype) for n in lengths])
        u = torch.stack([part.sum() for part in torch.split(rews * discounts, lengths)])
        u1, u2 = u[0::2], u[1::2]
        first = torch.as_tensor(prefs[keep] > 0.5)
        u_chosen, u_rejected = torch.where(first, u1, u2), torch.where(first, u2, u1)
        true = _discounted_returns([f.rews for f in frags], gamma)
        strength = -np.abs(true[0::2] - true[1::2])
        stratum = stratify("by_group", n=len(pairs), groups=self.tagger.rounds(pairs), strength=strength)
        loss = rr_loss(u_chosen, u_rejected, torch.as_tensor(strength, dtype=u.dtype), torch.as_tensor(stratum))
        with torch.no_grad():
            accuracy = (u_chosen > u_rejected).float().mean()
        metrics = {"accuracy": accuracy.detach().cpu(), "n_strata": torch.tensor(float(np.unique(stratum).size))}
        return pc.LossAndMetrics(loss=loss, metrics=metrics)
