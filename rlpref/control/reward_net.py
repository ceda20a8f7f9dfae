"""Stage 4: the reward model r_θ(s, a) [, s'] and its training from preferences.

A segment's utility is U = Σ_t r_θ(s_t, a_t); any loss in :mod:`rlpref.losses` turns utilities of
chosen and rejected segments into a training signal. Mini-batches are built from *whole strata* for
every loss, so bt and rr see identical batches and differ only in the loss.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rlpref import metrics
from rlpref.artifacts import atomic_path, atomic_write_json
from rlpref.control.records import Preferences, Segments
from rlpref.losses import get_loss_spec
from rlpref.progress import progress_enabled
from rlpref.runtime import bf16_native
from rlpref.schema import Section, build, rule
from rlpref.strata import STRATIFIERS, stratify

__all__ = [
    "RewardModel",
    "RewardTrainConfig",
    "evaluate_reward_model",
    "load_reward_model",
    "one_hot_actions",
    "save_reward_model",
    "split_strata",
    "stratum_batches",
    "train_reward_model",
    "validation_mask",
]


def one_hot_actions(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """Actions as float32 [T, act_dim]; discrete actions one-hot (the reward net takes vectors)."""
    if isinstance(space, gym.spaces.Discrete):
        out = np.zeros((actions.shape[0], int(space.n)), dtype=np.float32)
        out[np.arange(actions.shape[0]), actions.astype(np.int64).ravel()] = 1.0
        return out
    return np.asarray(actions, dtype=np.float32).reshape(actions.shape[0], -1)


_DIVERGED = ("the learned reward is NaN/inf for some inputs; the reward model diverged or the observations "
             "are out of its training range. Retrain it (e.g. lower reward_model.lr).")


@dataclass(frozen=True)
class RewardTrainConfig(Section):
    SECTION = "reward_model"

    hidden: tuple[int, ...] = rule((256, 256, 256, 256, 256), ge=1)
    use_next_obs: bool = False
    use_actions: bool = False  # state-only r(s) or r(s, s') by default: r(s, a) let agents hack it through the action
    ensemble: int = rule(1, ge=1)
    lr: float = rule(3e-4, gt=0.0)
    weight_decay: float = rule(0.0, ge=0.0)
    batch_size: int = rule(64, ge=1)  # comparisons per mini-batch (whole strata are never split)
    max_epochs: int = rule(100, ge=1)
    patience: int = rule(5, ge=1)
    val_fraction: float = rule(0.15, ge=0.0, lt=1.0)
    strata: str = rule("by_group", choices=STRATIFIERS)  # rlpref.strata.stratify kind, groups = rollout batch
    strata_k: Optional[int] = rule(None, ge=1)
    label_smoothing: float = rule(0.0, ge=0.0, lt=0.5)
    # Strata larger than this are cut, each epoch anew, into random parts of at most this many comparisons,
    # each part its own training stratum (rr ranks inside it) and mini-batch: more, cheaper steps per epoch
    # where strata are large (budget=paper's 455 per rollout batch; +reward_fit=paper sets 64). None: strata
    # stay whole (validation always keeps them whole). docs/results.md "Reward-model fit at 5000 comparisons".
    max_stratum: Optional[int] = rule(None, ge=1)
    # Number format of the training steps' matrix products. bf16: autocast to bfloat16 (weights, optimiser,
    # losses and every evaluation stay float32), ~3x cheaper per step on a CPU with AMX; only where the
    # CPU has it natively (runtime.bf16_native). docs/results.md "Reward-model fit at 5000 comparisons".
    precision: str = rule("fp32", choices=("fp32", "bf16"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision == "bf16" and not bf16_native():
            raise ValueError("reward_model.precision=bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                             "this one would emulate it, slower than float32: set reward_model.precision=fp32")
        if self.strata == "random_k" and self.strata_k is None:
            raise ValueError("strata 'random_k' needs its partition size: set strata.k (e.g. strata.k=8)")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "RewardTrainConfig":
        """Typed and checked (:func:`rlpref.schema.build`)."""
        return build(cls, cfg)

    def key(self, loss: str) -> dict:
        """What changes a model trained with ``loss``: every field, less those this setting ignores
        (``strata_k`` outside random_k/round_robin, ``label_smoothing`` for losses without it)."""
        out = asdict(self)
        if self.max_stratum is None:  # unset: the keys of models fitted before the option existed
            out.pop("max_stratum")
        if self.precision == "fp32":  # the default: keys of models fitted before the option existed
            out.pop("precision")
        if self.strata not in ("random_k", "round_robin"):
            out.pop("strata_k")
        if "label_smoothing" not in get_loss_spec(loss).options:
            out.pop("label_smoothing")
        return out


class _MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for h in hidden:
            layers += [nn.Linear(last, h), nn.ReLU(inplace=True)]  # in place: same values, less memory traffic
            last = h
        layers.append(nn.Linear(last, 1))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
                nn.init.zeros_(m.bias)
        nn.init.orthogonal_(self.net[-1].weight, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class RewardModel(nn.Module):
    """Per-step reward r(s, a[, s']) averaged over ensemble members; inputs standardised with
    statistics of the feedback set (stored as buffers, so they travel with the weights).

    The served reward (``forward``, ``predict``) is ``out_scale * mean_member + out_shift``; training
    sees the members' raw output, so the affine level (identity unless set, e.g. by the online loop's
    ``keep_level``) never changes what the preference losses fit.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        use_next_obs: bool = False,
        ensemble: int = 1,
        use_actions: bool = True,
    ):
        super().__init__()
        self.obs_dim, self.act_dim, self.use_next_obs, self.use_actions = obs_dim, act_dim, use_next_obs, use_actions
        self.hidden = tuple(hidden)
        in_dim = obs_dim * (2 if use_next_obs else 1) + (act_dim if use_actions else 0)
        self.members = nn.ModuleList([_MLP(in_dim, hidden) for _ in range(ensemble)])
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_scale", torch.ones(()))
        self.register_buffer("out_shift", torch.zeros(()))

    def spec(self) -> dict:
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "use_next_obs": self.use_next_obs,
            "use_actions": self.use_actions,
            "ensemble": len(self.members),
        }

    def features(self, obs: torch.Tensor, act: torch.Tensor, next_obs: Optional[torch.Tensor] = None) -> torch.Tensor:
        parts = [obs] + ([act] if self.use_actions else []) + ([next_obs] if self.use_next_obs else [])
        if self.use_next_obs and next_obs is None:
            raise ValueError("this reward model uses s' (use_next_obs=true); pass next_obs")
        return torch.cat(parts, dim=-1)

    def set_input_stats(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])
        self.in_mean.copy_(flat.mean(0))
        self.in_std.copy_(flat.std(0).clamp_min(1e-6))

    def member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member per-step rewards [E, ...] from features x [..., in_dim]."""
        z = (x - self.in_mean) / self.in_std
        return torch.stack([m(z) for m in self.members])

    def forward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.member_rewards(self.features(obs, act, next_obs)).mean(0) * self.out_scale + self.out_shift

    @torch.no_grad()
    def predict(self, obs: np.ndarray, act: np.ndarray, next_obs: Optional[np.ndarray] = None) -> np.ndarray:
        """Numpy in, numpy out: per-step rewards [B] for obs [B, obs_dim], act [B, act_dim] (one-hot if discrete)."""
        nxt = torch.as_tensor(next_obs, dtype=torch.float32) if next_obs is not None else None
        out = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(act, dtype=torch.float32), nxt)
        return out.numpy()

    def predict_env(self, obs: np.ndarray, actions: np.ndarray, next_obs: Optional[np.ndarray],
                    action_space: gym.Space) -> np.ndarray:
        """The learned reward of raw env transitions: the one way every caller (the agent's env wrapper, the
        online loop's statistics and replay relabelling, probes, videos) scores what an env produced.

        ``obs`` [..., obs_dim] and ``next_obs`` (used only when the model takes s'; may be None otherwise) are
        raw observations; ``actions`` [..., *action_shape] are env actions (discrete ids are one-hot encoded
        with ``action_space``). Returns float32 rewards [...]; non-finite output raises FloatingPointError.
        """
        obs = np.asarray(obs, dtype=np.float32)
        lead = obs.shape[:-1]
        n = int(np.prod(lead)) if lead else 1
        acts = one_hot_actions(np.asarray(actions).reshape(n, -1), action_space)
        nxt = np.asarray(next_obs, dtype=np.float32).reshape(n, -1) if self.use_next_obs else None
        out = self.predict(obs.reshape(n, -1), acts, nxt).astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise FloatingPointError(_DIVERGED)
        return out.reshape(lead)


def stratum_batches(stratum: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle strata and pack whole strata into mini-batches of about ``batch_size`` comparisons."""
    order = np.argsort(stratum, kind="stable")
    ids, starts, counts = np.unique(stratum[order], return_index=True, return_counts=True)
    batches, current, size = [], [], 0
    for s in rng.permutation(ids.size):
        current.append(order[starts[s] : starts[s] + counts[s]])
        size += counts[s]
        if size >= batch_size:
            batches.append(np.concatenate(current))
            current, size = [], 0
    if current:
        batches.append(np.concatenate(current))
    return batches


def split_strata(stratum: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """New stratum ids: each stratum of more than ``size`` comparisons cut at random into the fewest parts of
    at most ``size`` (sizes differ by at most one); smaller strata stay whole. Parts are subsets of one
    stratum, so a ranking loss still compares strength only where it is comparable (and meets no new ties)."""
    order = np.lexsort((rng.random(stratum.size), stratum))  # by stratum, randomly inside each
    _, starts, counts = np.unique(stratum[order], return_index=True, return_counts=True)
    parts = -(-counts // size)
    group = np.repeat(np.arange(counts.size), counts)
    rank = np.arange(stratum.size) - starts[group]
    out = np.empty(stratum.size, dtype=np.int64)
    out[order] = (np.cumsum(parts) - parts)[group] + rank % parts[group]
    return out


class _Data:
    """Segments as tensors, plus the preference arrays, for fast indexing."""

    def __init__(self, model: RewardModel, segments: Segments):
        obs = torch.as_tensor(segments.obs)
        act = torch.as_tensor(segments.acts)
        nxt = torch.as_tensor(segments.next_obs)
        self.x = model.features(obs, act, nxt if model.use_next_obs else None)  # [M, L, in_dim]

    def utilities(self, model: RewardModel, seg_idx: torch.Tensor) -> torch.Tensor:
        """Per-member segment utilities [E, len(seg_idx)], summed in float32 (also under bf16 autocast)."""
        return model.member_rewards(self.x[seg_idx]).float().sum(-1)


def _pair_loss(model, data, prefs: Preferences, idx: np.ndarray, stratum: np.ndarray, loss_name: str, cfg) -> torch.Tensor:
    """Mean over ensemble members of the loss on comparisons ``idx``; the loss's spec says what it takes."""
    spec = get_loss_spec(loss_name)
    seg = np.concatenate([prefs.chosen[idx], prefs.rejected[idx]])
    uniq, inv = np.unique(seg, return_inverse=True)
    u = data.utilities(model, torch.as_tensor(uniq))  # [E, U]
    inv = torch.as_tensor(inv)
    n = idx.size
    options = {"label_smoothing": cfg.label_smoothing} if cfg.label_smoothing else {}
    kwargs = spec.inputs(torch.as_tensor(prefs.strength[idx]), torch.as_tensor(stratum[idx]), **options)
    total = u.new_zeros(())
    for e in range(u.shape[0]):
        total = total + spec.fn(u[e, inv[:n]], u[e, inv[n:]], **kwargs)
    return total / u.shape[0]


def _strata_for(prefs: Preferences, idx: np.ndarray, loss_name: str, cfg: RewardTrainConfig, rng) -> np.ndarray:
    """Stratum ids per comparison (full-length array; only ``idx`` entries are meaningful). They shape the
    mini-batches for every loss; losses that rank strength also compare it only inside them."""
    out = np.zeros(len(prefs), dtype=np.int64)
    strength = prefs.strength[idx] if get_loss_spec(loss_name).uses_strength else None
    # random_k partitions the whole feedback set, as the paper's runs did; the others work per rollout batch.
    groups = None if cfg.strata in ("global", "random_k") else prefs.batch[idx]
    out[idx] = stratify(cfg.strata, n=idx.size, groups=groups, strength=strength, k=cfg.strata_k, rng=rng)
    return out


def validation_mask(n: int, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """bool [n]: a random ``val_fraction`` of the comparisons (none when n < 4) held out for early stopping."""
    perm = rng.permutation(n)
    n_val = max(1, int(round(val_fraction * n))) if n >= 4 else 0
    mask = np.zeros(n, dtype=bool)
    mask[perm[:n_val]] = True
    return mask


def train_reward_model(
    segments: Segments,
    prefs: Preferences,
    loss_name: str,
    cfg: RewardTrainConfig,
    seed: int,
    *,
    init: Optional[RewardModel] = None,
    val_mask: Optional[np.ndarray] = None,
    keep_init: bool = True,
    balance_val: bool = False,
    focus: Optional[np.ndarray] = None,
    replay: Optional[float] = None,
    on_epoch: Optional[Callable[[float], None]] = None,
) -> tuple[RewardModel, dict, list[dict]]:
    """Fit a reward model; early stopping on validation loss. Returns (model, metrics, history).

    ``init``: fine-tune a copy of this model (its input normalisation is kept, so training starts
    from the reward the agent already sees) instead of a fresh one. ``val_mask`` (bool [P]): a fixed
    validation split, so repeated fine-tuning never validates on pairs it trained on earlier.
    ``keep_init``: when fine-tuning, the starting model is a candidate too, kept unless some epoch beats
    it on validation; False returns the best *trained* epoch, so new feedback always moves the model.
    ``balance_val``: the validation loss is the mean over rollout batches of each batch's mean loss, so
    a small new batch counts as much as any other instead of drowning among the older pairs.
    ``focus`` (bool [P]) with ``replay`` = ρ: each epoch trains on the focus pairs (e.g. an online round's
    new ones) plus a fresh random draw of ρ times as many of the other training pairs, instead of on
    all of them: a refit then costs in proportion to the new feedback, not to all feedback so far.
    ``on_epoch(fraction)``: called after each epoch with the share of ``max_epochs`` done (progress).
    """
    get_loss_spec(loss_name)  # unknown names fail before any work
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train_idx, val_idx = _split(len(prefs), cfg.val_fraction, val_mask, rng)
    stratum = _strata_for(prefs, train_idx, loss_name, cfg, rng)
    val_stratum = _strata_for(prefs, val_idx, loss_name, cfg, rng) if val_idx.size else None
    model, data = _start_model(segments, prefs, train_idx, cfg, init)
    val_parts = ([val_idx[prefs.batch[val_idx] == b] for b in np.unique(prefs.batch[val_idx])] if balance_val
                 else [val_idx])

    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(np.mean([_pair_loss(model, data, prefs, part, val_stratum, loss_name, cfg).item()
                                  for part in val_parts]))

    def train_epoch(pairs: np.ndarray, opt) -> float:
        model.train()
        return _train_epoch(model, opt, data, prefs, pairs, stratum, loss_name, cfg, rng)

    # Fine-tuning with keep_init must beat the starting model on validation, or the starting model is kept.
    start_val = validation_loss() if init is not None and val_idx.size and keep_init else math.inf
    history, best_val = _fit(model, cfg, loss_name, _epoch_sampler(train_idx, focus, replay, len(prefs), rng),
                             train_epoch, validation_loss if val_idx.size else None, start_val, on_epoch)
    model.eval()
    result = evaluate_reward_model(model, segments, prefs.subset(val_idx) if val_idx.size else prefs)
    result.update({"val_loss": best_val if val_idx.size else None, "epochs": len(history),
                   "n_train": int(train_idx.size)})
    return model, result, history


def _start_model(segments: Segments, prefs: Preferences, train_idx: np.ndarray, cfg: RewardTrainConfig,
                 init: Optional[RewardModel]) -> tuple[RewardModel, "_Data"]:
    """A copy of ``init`` (its input normalisation kept), or a fresh model standardised on the training
    pairs' segments; with the segments' features for it."""
    model = copy.deepcopy(init) if init is not None else RewardModel(
        segments.obs.shape[-1], segments.acts.shape[-1], cfg.hidden, cfg.use_next_obs, cfg.ensemble, cfg.use_actions)
    data = _Data(model, segments)
    if init is None:
        train_segs = np.unique(np.concatenate([prefs.chosen[train_idx], prefs.rejected[train_idx]]))
        model.set_input_stats(data.x[torch.as_tensor(train_segs)])
    return model, data


def _fit(model: RewardModel, cfg: RewardTrainConfig, loss_name: str, epoch_pairs: Callable[[], np.ndarray],
         train_epoch: Callable, validation_loss: Optional[Callable[[], float]], best_val: float,
         on_epoch: Optional[Callable[[float], None]]) -> tuple[list[dict], float]:
    """Epochs with early stopping on validation loss (none without a validation set); the model ends at
    its best epoch (or unchanged, when nothing beats ``best_val``). Returns (history, best val loss)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_state, bad_epochs, history = copy.deepcopy(model.state_dict()), 0, []
    bar = tqdm(range(cfg.max_epochs), desc=f"reward model ({loss_name})", unit="epoch", disable=not progress_enabled())
    for epoch in bar:
        record = {"epoch": epoch, "train_loss": train_epoch(epoch_pairs(), opt)}
        if validation_loss is not None:
            record["val_loss"] = validation_loss()
            if record["val_loss"] < best_val - 1e-6:
                best_val, bad_epochs, best_state = record["val_loss"], 0, copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
        history.append(record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
        if on_epoch is not None:
            on_epoch((epoch + 1) / cfg.max_epochs)
        if validation_loss is not None and bad_epochs >= cfg.patience:
            break
    bar.close()
    if validation_loss is not None:
        model.load_state_dict(best_state)
    return history, best_val


def _split(n: int, val_fraction: float, val_mask: Optional[np.ndarray], rng) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) comparison indices. The default split is drawn even when a mask is given, so the
    rest of the random stream (strata, batch order) is the same either way: a mask equal to the default
    split trains the same model."""
    default_split = validation_mask(n, val_fraction, rng)
    if val_mask is None:
        val_mask = default_split
    elif val_mask.shape != (n,) or val_mask.dtype != np.bool_:
        raise ValueError(f"val_mask must be a bool array [{n}], got {val_mask.dtype} {val_mask.shape}")
    train_idx = np.flatnonzero(~val_mask)
    if train_idx.size == 0:
        raise ValueError("no training comparisons: val_mask holds out all of them")
    return train_idx, np.flatnonzero(val_mask)


def _epoch_sampler(train_idx: np.ndarray, focus: Optional[np.ndarray], replay: Optional[float], n: int, rng):
    """A function giving each epoch's training comparisons: all of them, or (``replay`` = ρ) the ``focus``
    ones plus a fresh draw of ρ times as many of the others."""
    if replay is None:
        return lambda: train_idx
    if focus is None or focus.shape != (n,):
        raise ValueError(f"replay needs focus, a bool array [{n}] marking the pairs every epoch trains on")
    focus_train, rest_train = train_idx[focus[train_idx]], train_idx[~focus[train_idx]]
    n_replay = min(rest_train.size, int(round(replay * focus_train.size)))
    return lambda: np.sort(np.concatenate([focus_train, rng.choice(rest_train, n_replay, replace=False)]))


def _train_epoch(model, opt, data, prefs: Preferences, pairs: np.ndarray, stratum: np.ndarray, loss_name: str,
                 cfg: RewardTrainConfig, rng) -> float:
    """One pass over ``pairs`` in mini-batches of whole strata (cut first when ``cfg.max_stratum`` is set);
    returns the mean training loss."""
    losses = []
    if cfg.max_stratum is not None:
        stratum = stratum.copy()
        stratum[pairs] = split_strata(stratum[pairs], cfg.max_stratum, rng)
    for batch in stratum_batches(stratum[pairs], cfg.batch_size, rng):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = _pair_loss(model, data, prefs, pairs[batch], stratum, loss_name, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def segment_utilities(model: RewardModel, segments: Segments, chunk: int = 512) -> np.ndarray:
    out = []
    for start in range(0, len(segments), chunk):
        sl = slice(start, start + chunk)
        r = model(
            torch.as_tensor(segments.obs[sl]),
            torch.as_tensor(segments.acts[sl]),
            torch.as_tensor(segments.next_obs[sl]) if model.use_next_obs else None,
        )
        out.append(r.sum(-1).numpy())
    return np.concatenate(out).astype(np.float64)


def evaluate_reward_model(model: RewardModel, segments: Segments, prefs: Preferences) -> dict:
    """Accuracy vs labels and vs true returns, Pearson/Spearman of U vs true return, PDC — on ``prefs``.
    Utilities of the segments in ``prefs`` only (a validation split's are a tenth of the feedback's)."""
    segs = np.unique(np.concatenate([prefs.chosen, prefs.rejected]))
    u = np.full(len(segments), np.nan)
    u[segs] = segment_utilities(model, segments.subset(segs))
    uc, ur = u[prefs.chosen], u[prefs.rejected]
    enough = segs.size >= 3 and len(prefs) >= 2  # correlations of fewer points are not computed (None)
    return {
        "val_accuracy": metrics.choice_accuracy(uc, ur),
        "val_true_accuracy": metrics.order_accuracy(prefs.return_chosen, prefs.return_rejected, uc, ur),
        "pearson": metrics.pearson(u[segs], segments.returns[segs]) if enough else None,
        "spearman": metrics.spearman(u[segs], segments.returns[segs]) if enough else None,
        "pdc": metrics.pdc(prefs.return_chosen - prefs.return_rejected, uc - ur) if enough else None,
        "n_val": len(prefs),
    }


def save_reward_model(model: RewardModel, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "reward_net.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    atomic_write_json(directory / "reward_net.json", model.spec())


def load_reward_model(directory: Path) -> RewardModel:
    """Rebuild a saved reward model (``reward_net.json`` + ``reward_net.pt``, loaded with weights_only)."""
    directory = Path(directory)
    spec_path, weights = directory / "reward_net.json", directory / "reward_net.pt"
    try:
        spec = json.loads(spec_path.read_text())
        model = RewardModel(spec["obs_dim"], spec["act_dim"], spec["hidden"], spec["use_next_obs"], spec["ensemble"],
                            spec.get("use_actions", True))
        state = torch.load(weights, weights_only=True, map_location="cpu")
        for name in ("out_scale", "out_shift"):  # models saved before the served level existed: identity
            state.setdefault(name, getattr(model, name))
        model.load_state_dict(state)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise RuntimeError(
            f"corrupt or mismatched reward model in {directory}: {type(exc).__name__}: {exc}. Delete it to rebuild."
        ) from None
    return model.eval()
