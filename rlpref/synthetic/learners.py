"""Learners of the synthetic track and their training, one fit at a time or many fits at once.

A learner is a loss from :mod:`rlpref.losses` plus how its strength and strata are built:

======================  ========================  ===============================  ===========
learner                 loss                      strata (``stratify``)            strength
======================  ========================  ===============================  ===========
bt                      bt                        —                                —
rr                      rr                        ``by_group``: the random strata  rt
rr_pooled               rr                        ``global``: one stratum          rt
rr_perm                 rr                        ``by_group``                     rt permuted
rt_regression           rt_regression_hyperbolic  ``global``                       rt
rt_regression_perm      rt_regression_hyperbolic  ``global``                       rt permuted
rt_regression_std       rt_regression             ``global``                       rt
rt_regression_std_perm  rt_regression             ``global``                       rt permuted
clf                     clf                       —                                —
======================  ========================  ===============================  ===========

``rt_regression`` is the paper's response-time regression baseline (:mod:`rlpref.synthetic.losses`):
the margin is regressed onto the inverse of the assumed hyperbolic link, (rt_max − rt_min)/(rt − rt_min) − 1,
with ``train.rt_min`` / ``train.rt_max`` (0 and 10, the link of the deterministic dataset). The
``rt_regression_std`` pair uses the repository-wide scale-free loss of :mod:`rlpref.losses` instead.

What each loss takes (strength, strata, a precomputed rank plan) comes from its
:class:`rlpref.losses.LossSpec`. Ranking losses get their strata through ``stratify(..., strength=rt)``,
which splits a stratum round-robin when rts tie (drift-diffusion rts lie on the dt grid and can tie), so
no tie reaches the sort; ``rr_pooled`` ranks each fit as one stratum and splits its ties the same way.
``*_perm`` shuffle the rts across the training pairs of a fit (a control: same values, no information).

Batched training: B independent fits with the same number N of training pairs run as one tensor
program. Weights are stacked ([B, in, out]) and applied with ``bmm``; the utilities of each learner's
fits are flattened to [B_l·N] with stratum ids offset per fit, so one loss call covers all of its fits.
All losses here are (sum over comparisons) / (number of comparisons), so B_l × loss(flat) equals the
sum of the per-fit losses, and the gradient each fit receives is exactly the one it would get alone.
AdamW is element-wise, so one optimiser over the stacked tensors equals B separate optimisers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from rlpref.losses import LossSpec, get_loss_spec
from rlpref.schema import Section, rule
from rlpref.strata import stratify

from .losses import SYNTHETIC_LOSS_SPECS
from .mlp import Params, init_mlp, mlp_forward, stack_mlps, stacked_mlp_forward
from .seeding import numpy_rng, torch_generator

__all__ = [
    "FitData",
    "LEARNERS",
    "LearnerSpec",
    "TrainConfig",
    "fit_data",
    "fit_single",
    "fit_stacked",
    "get_learner",
    "init_learner",
]


@dataclass(frozen=True)
class LearnerSpec:
    name: str
    loss: str
    strata: Optional[str]  # a stratify() kind ("by_group" | "global") or None when strength is unused
    permute: bool = False

    @property
    def spec(self) -> LossSpec:
        if self.loss in SYNTHETIC_LOSS_SPECS:
            return SYNTHETIC_LOSS_SPECS[self.loss]
        return get_loss_spec(self.loss)

    @property
    def ranks(self) -> bool:
        return self.spec.ranks


LEARNERS: dict[str, LearnerSpec] = {
    s.name: s
    for s in (
        LearnerSpec("bt", "bt", None),
        LearnerSpec("rr", "rr", "by_group"),
        LearnerSpec("rr_pooled", "rr_pooled", "global"),
        LearnerSpec("rr_perm", "rr", "by_group", permute=True),
        LearnerSpec("rt_regression", "rt_regression_hyperbolic", "global"),
        LearnerSpec("rt_regression_perm", "rt_regression_hyperbolic", "global", permute=True),
        LearnerSpec("rt_regression_std", "rt_regression", "global"),
        LearnerSpec("rt_regression_std_perm", "rt_regression", "global", permute=True),
        LearnerSpec("clf", "clf", None),
    )
}


def get_learner(name: str) -> LearnerSpec:
    try:
        return LEARNERS[name]
    except KeyError:
        raise KeyError(f"unknown learner '{name}'; choose one of: {', '.join(LEARNERS)}") from None


@dataclass(frozen=True)
class TrainConfig(Section):
    """The learners' training (``train.*``), typed and checked on construction: a bad value names its key."""

    SECTION = "train"
    hidden: tuple[int, ...] = rule((64,), ge=1)
    epochs: int = rule(200, ge=0)
    lr: float = rule(1e-3, gt=0.0)
    weight_decay: float = rule(0.01, ge=0.0)
    rt_min: float = 0.0  # rt_regression: the assumed link rt = rt_min + (rt_max - rt_min) / (|du| + 1)
    rt_max: float = 10.0
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))


@dataclass(frozen=True)
class FitData:
    """The training input of one fit: chosen / rejected features [N, F], and for learners that use
    strength, the rank key [N] (lower = stronger) and tie-free stratum ids [N]."""

    x_chosen: np.ndarray
    x_rejected: np.ndarray
    strength: Optional[np.ndarray]
    stratum: Optional[np.ndarray]


def fit_data(
    learner: LearnerSpec,
    x1: np.ndarray,
    x2: np.ndarray,
    y: np.ndarray,
    rt: np.ndarray,
    groups: np.ndarray,
    perm_rng: Optional[np.random.Generator] = None,
    *,
    ties: str = "split",
) -> FitData:
    """Build a fit's input from its N training pairs (y = True: first item chosen).

    ``ties`` (ranking learners only): ``"split"`` (default) deals a stratum with tied rts round-robin
    into tie-free strata; ``"index"`` keeps the strata whole and orders tied rts by pair index, the
    arbitrary order the reference's ``torch.argsort`` gives them (a reference quirk: the ranking then
    asserts an order the data do not contain). ``"index"`` replaces the rank key by its tie-free rank
    (by rt, then pair index); a ranking loss only uses the order, so nothing else changes.
    """
    if ties not in ("split", "index"):
        raise ValueError(f"ties must be 'split' or 'index', got {ties!r}")
    y = np.asarray(y, dtype=bool)[:, None]
    xc, xr = np.where(y, x1, x2), np.where(y, x2, x1)
    if learner.strata is None:
        return FitData(xc, xr, None, None)
    strength = np.asarray(rt, dtype=np.float64)
    if learner.permute:
        if perm_rng is None:
            raise ValueError(f"learner '{learner.name}' permutes strength: pass perm_rng")
        strength = strength[perm_rng.permutation(strength.shape[0])]
    n = strength.shape[0]
    if learner.ranks and ties == "index":
        rank = np.empty(n, dtype=np.float64)
        rank[np.lexsort((np.arange(n), strength))] = np.arange(n)
        strength = rank
    stratum = stratify(
        learner.strata,
        n=n,
        groups=groups if learner.strata == "by_group" else None,
        strength=strength if learner.ranks else None,
    )
    return FitData(xc, xr, strength, stratum)


def init_learner(root_seed: int, trial: int, n_features: int, cfg: TrainConfig) -> Params:
    """The trial's initial learner weights (shared by all learners, fractions and datasets of the trial)."""
    return init_mlp([n_features, *cfg.hidden, 1], torch_generator(root_seed, trial, "learner_init"), cfg.dtype)


def permutation_rng(root_seed: int, trial: int, n_train: int) -> np.random.Generator:
    return numpy_rng(root_seed, trial, "permutation", n_train)


def _optimizer(tensors: Sequence[Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(tensors, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def _as_params(params: Params, dtype: torch.dtype) -> Params:
    return [(w.detach().to(dtype).clone().requires_grad_(True), b.detach().to(dtype).clone().requires_grad_(True)) for w, b in params]


def _loss_inputs(learner: LearnerSpec, strength: Optional[np.ndarray], stratum: Optional[np.ndarray],
                 fit: Optional[np.ndarray], cfg: TrainConfig) -> dict:
    """The loss's keyword inputs for a fit's (or a stacked block's) fixed strength and strata."""
    if learner.strata is None:
        return {}
    as_t = lambda a, dt: None if a is None else torch.as_tensor(a, dtype=dt)  # noqa: E731
    return learner.spec.inputs(as_t(strength, torch.float64), as_t(stratum, torch.long), as_t(fit, torch.long),
                               rt_min=cfg.rt_min, rt_max=cfg.rt_max)


def fit_single(learner: LearnerSpec, data: FitData, init: Params, cfg: TrainConfig) -> Params:
    """One fit, full batch, ``cfg.epochs`` AdamW steps (the one-fit-at-a-time reference path)."""
    params = _as_params(init, cfg.dtype)
    opt = _optimizer([t for wb in params for t in wb], cfg)
    xc = torch.as_tensor(data.x_chosen, dtype=cfg.dtype)
    xr = torch.as_tensor(data.x_rejected, dtype=cfg.dtype)
    kwargs = _loss_inputs(learner, data.strength, data.stratum, None, cfg)
    loss_fn = learner.spec.fn
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(mlp_forward(params, xc), mlp_forward(params, xr), **kwargs)
        loss.backward()
        opt.step()
    return [(w.detach(), b.detach()) for w, b in params]


def fit_stacked(
    learners: Sequence[LearnerSpec],
    data: Sequence[FitData],
    inits: Sequence[Params],
    cfg: TrainConfig,
    progress=None,
) -> Params:
    """B fits at once (all with the same N); returns stacked parameters (``W`` [B, in, out]).

    ``learners[i]``, ``data[i]``, ``inits[i]`` describe fit i. Fits are regrouped by learner
    internally; the result is in the input order. ``progress``: optional callable run once per epoch.
    """
    b_total = len(data)
    if not (len(learners) == b_total == len(inits)) or b_total == 0:
        raise ValueError(f"need equally many (>0) learners, data and inits; got {len(learners)}, {b_total}, {len(inits)}")
    n = data[0].x_chosen.shape[0]
    if any(d.x_chosen.shape[0] != n for d in data):
        raise ValueError("all fits of one stacked program must have the same number of training pairs")
    # Order fits by learner so that each loss sees one contiguous block.
    names = [lr.name for lr in learners]
    order = sorted(range(b_total), key=lambda i: (list(dict.fromkeys(names)).index(names[i]), i))
    x = torch.as_tensor(
        np.stack([np.concatenate([data[i].x_chosen, data[i].x_rejected]) for i in order]), dtype=cfg.dtype
    )
    groups = []
    start = 0
    while start < b_total:
        spec = learners[order[start]]
        stop = start
        while stop < b_total and learners[order[stop]].name == spec.name:
            stop += 1
        block = order[start:stop]
        strength = stratum = fit = None
        if spec.strata is not None:
            strength = np.concatenate([data[i].strength for i in block])
            offset, ids = 0, []
            for i in block:  # stratum ids offset per fit, so no stratum spans two fits
                ids.append(data[i].stratum + offset)
                offset += int(data[i].stratum.max()) + 1
            stratum = np.concatenate(ids)
            fit = np.repeat(np.arange(len(block)), n)
        kwargs = _loss_inputs(spec, strength, stratum, fit, cfg)  # fixed for all epochs
        groups.append((spec.spec.fn, start, stop, kwargs))
        start = stop
    params = _as_params(stack_mlps([inits[i] for i in order]), cfg.dtype)
    opt = _optimizer([t for wb in params for t in wb], cfg)
    for _ in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        u = stacked_mlp_forward(params, x)
        total = 0.0
        for loss_fn, s, e, kwargs in groups:
            uc = u[s:e, :n].reshape(-1)
            ur = u[s:e, n:].reshape(-1)
            total = total + (e - s) * loss_fn(uc, ur, **kwargs)
        total.backward()
        opt.step()
        if progress is not None:
            progress()
    inverse = np.argsort(order)
    return [(w.detach()[inverse], b.detach()[inverse]) for w, b in params]


def predict_stacked(params: Params, x: np.ndarray | Tensor, chunk: int = 512) -> np.ndarray:
    """Utilities of stacked fits: x [B, M, F] -> [B, M] (float64 numpy), in chunks of fits."""
    x = torch.as_tensor(x, dtype=params[0][0].dtype)
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            out.append(stacked_mlp_forward([(w[s : s + chunk], b[s : s + chunk]) for w, b in params], x[s : s + chunk]))
    return torch.cat(out).double().numpy()
