"""Preference losses shared by the control, synthetic and LLM tracks.

Every loss has the same signature so a track can swap them by name::

    LOSSES[name](u_chosen, u_rejected, strength=None, stratum=None) -> scalar tensor

``u_chosen`` / ``u_rejected``: float tensors [N], the model's utilities of the chosen and rejected item.
``strength``: float tensor [N], a *rank key*: lower = stronger preference (e.g. ``-|ΔR|`` or a
response time). ``stratum``: integer tensor [N]; strength values are only compared inside a stratum.

All losses are pure and vectorised: no Python loop per comparison or per stratum.
"""

from __future__ import annotations

import math
from dataclasses import InitVar, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from rlpref import kernels

__all__ = [
    "LOSSES",
    "LOSS_SPECS",
    "LossSpec",
    "get_loss_spec",
    "pooled_rank_plan",
    "RankPlan",
    "bt_loss",
    "clf_loss",
    "get_loss",
    "make_rank_plan",
    "rr_loss",
    "rr_pooled_loss",
    "rt_regression_loss",
]


def _all_finite(*tensors: Tensor) -> bool:
    """True iff every element is finite, with one cheap reduction in the common case.

    A sum is non-finite whenever an element is NaN/inf; a finite sum proves all elements finite.
    Only a non-finite sum (bad data, or an overflowing sum of huge values) pays the exact check.
    """
    # Python floats: math.isfinite(x.item()) costs a fraction of bool(torch.isfinite(x)) per call.
    if math.isfinite(sum(t.detach().sum(dtype=torch.float64).item() for t in tensors)):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _check_utilities(u_chosen: Tensor, u_rejected: Tensor, *, check_finite: bool = True) -> None:
    for name, u in (("u_chosen", u_chosen), ("u_rejected", u_rejected)):
        if not isinstance(u, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape [N], got {type(u).__name__}")
        if not u.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {u.dtype}; pass u.float()")
        if u.dim() != 1:
            raise ValueError(f"{name} must be 1-D [N] (one utility per comparison), got shape {tuple(u.shape)}")
    if u_chosen.shape != u_rejected.shape:
        raise ValueError(
            f"u_chosen and u_rejected must have the same shape [N], got {tuple(u_chosen.shape)} "
            f"and {tuple(u_rejected.shape)}"
        )
    if u_chosen.numel() == 0:
        raise ValueError("no comparisons: u_chosen and u_rejected are empty")
    if check_finite and not _all_finite(u_chosen, u_rejected):
        raise ValueError(
            "utilities contain NaN or inf; check the reward model's inputs and outputs "
            "(e.g. un-normalised observations or a diverged optimiser)"
        )


def _check_strength(strength: Optional[Tensor], n: int, loss: str, *, check_finite: bool = True) -> Tensor:
    if strength is None:
        raise ValueError(
            f"loss '{loss}' needs `strength`: a float tensor [N] rank key, lower = stronger "
            "(e.g. -|return difference| or a response time)"
        )
    if not isinstance(strength, Tensor):
        raise TypeError(f"strength must be a torch.Tensor [N], got {type(strength).__name__}")
    if strength.shape != (n,):
        raise ValueError(f"strength must have shape [{n}] like the utilities, got {tuple(strength.shape)}")
    if not strength.is_floating_point():
        strength = strength.double()
    if check_finite and not _all_finite(strength):
        raise ValueError("strength contains NaN or inf; drop those comparisons or give them a finite rank key")
    return strength


def _check_stratum(stratum: Optional[Tensor], n: int, device: torch.device) -> Tensor:
    if stratum is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    if not isinstance(stratum, Tensor):
        raise TypeError(f"stratum must be a torch.Tensor [N] of integer ids, got {type(stratum).__name__}")
    if stratum.is_floating_point() or stratum.is_complex() or stratum.dtype == torch.bool:
        raise TypeError(
            f"stratum must hold integer ids (torch.long), got dtype {stratum.dtype}; "
            "pass stratum.long() or build ids with rlpref.strata"
        )
    if stratum.shape != (n,):
        raise ValueError(f"stratum must have shape [{n}] like the utilities, got {tuple(stratum.shape)}")
    return stratum.long()


def bt_loss(
    u_chosen: Tensor,
    u_rejected: Tensor,
    strength: Optional[Tensor] = None,
    stratum: Optional[Tensor] = None,
    *,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Bradley–Terry: mean of -log σ(d), d = u_chosen - u_rejected; strength and stratum are ignored.

    With label smoothing ε the target is 1-ε, i.e. -(1-ε)·log σ(d) - ε·log σ(-d).
    """
    _check_utilities(u_chosen, u_rejected)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    d = u_chosen - u_rejected
    nll = -F.logsigmoid(d)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * F.logsigmoid(-d)
    return nll.mean()


@dataclass(frozen=True)
class RankPlan:
    """Where each comparison sits in its stratum's strongest-first ranking.

    ``index``: long [S, M], row s lists stratum s's comparisons, strongest first, padded with ``N``
    (an index one past the data, which points at a padding slot). ``valid``: bool [S, M].
    ``rev_index``: ``index`` with each row reversed (weakest first, padding first), cached because
    the loss needs suffix sums, i.e. prefix sums of the reversed rows. ``pos``: long [N], where
    comparison i sits in ``index`` flattened (each sits in exactly one slot), for the backward pass.
    ``padded``: whether any row has padding (equal-sized strata, e.g. random_k, have none).
    The plan depends only on ``strength`` and ``stratum``, so a training loop may build it once.
    """

    index: Tensor
    valid: Tensor
    n: int
    rev_index: Optional[Tensor] = None
    pos: Optional[Tensor] = None
    padded: bool = True
    _trusted: InitVar[bool] = False  # set only by make_rank_plan, whose layout is valid by construction

    def __post_init__(self, _trusted: bool) -> None:
        """Check a hand-built layout once, so the loss (and its C++ kernel) can trust every index."""
        if _trusted:
            return
        index, n = self.index, self.n
        if not isinstance(index, Tensor) or index.dtype != torch.long or index.dim() != 2:
            raise TypeError("RankPlan.index must be a long tensor [S, M]; build plans with make_rank_plan")
        with torch.no_grad():
            valid = index < n
            problem = None
            if bool((index < 0).any()) or bool((index > n).any()):
                problem = f"indices outside [0, {n}]"
            elif bool((valid[:, 1:] & ~valid[:, :-1]).any()):
                problem = "padding before an item in a row (padding must come last, strongest first)"
            elif not bool((torch.bincount(index[valid], minlength=n) == 1).all()):
                problem = f"not every comparison 0..{n - 1} appears exactly once"
            elif self.valid.shape != index.shape or not bool((self.valid == valid).all()):
                problem = "valid != (index < n)"
            elif self.rev_index is not None and not torch.equal(self.rev_index, index.flip(1)):
                problem = "rev_index is not index with its rows reversed"
            elif self.pos is not None and not torch.equal(index.reshape(-1)[self.pos], torch.arange(n, device=index.device)):
                problem = "pos does not point at each comparison's slot"
        if problem:
            raise ValueError(f"invalid RankPlan: {problem}; build plans with make_rank_plan")


def make_rank_plan(strength: Tensor, stratum: Optional[Tensor] = None, *, check_ties: bool = True) -> RankPlan:
    """Sort comparisons by (stratum, strength) and lay each stratum out as a padded row."""
    # n comes from strength itself; a missing or non-1-D strength gets the helpful message first.
    n = strength.shape[0] if isinstance(strength, Tensor) and strength.dim() == 1 else -1
    if n == -1 and isinstance(strength, Tensor):
        raise ValueError(f"strength must be 1-D [N], got shape {tuple(strength.shape)}")
    strength = _check_strength(strength, n, "rr")
    if n == 0:
        raise ValueError("no comparisons: strength is empty")
    stratum = _check_stratum(stratum, n, strength.device)
    with torch.no_grad():
        # Lexicographic sort: by strength, then stably by stratum.
        by_strength = torch.argsort(strength, stable=True)
        order = by_strength[torch.argsort(stratum[by_strength], stable=True)]
        s_sorted = stratum[order]
        _, counts = torch.unique_consecutive(s_sorted, return_counts=True)
        # One host sync for both the row width and the tie count (matters on GPU).
        if check_ties and n > 1:
            k_sorted = strength[order]
            tied = (s_sorted[1:] == s_sorted[:-1]) & (k_sorted[1:] == k_sorted[:-1])
            width, n_tied = torch.stack([counts.max(), tied.sum()]).tolist()
        else:
            width, n_tied = int(counts.max()), 0
        if n_tied:
            first = int(torch.nonzero(tied)[0, 0])
            raise ValueError(
                f"{n_tied} tied strength value(s) inside one stratum (e.g. stratum "
                f"{int(s_sorted[first])}, strength {float(k_sorted[first])}): the ranking is ambiguous. "
                "Split ties into separate strata with rlpref.strata.round_robin(strength, groups)."
            )
        n_strata = counts.numel()
        starts = torch.cumsum(counts, 0) - counts
        row = torch.repeat_interleave(torch.arange(n_strata, device=order.device), counts)
        col = torch.arange(n, device=order.device) - starts[row]
        index = torch.full((n_strata, width), n, dtype=torch.long, device=order.device)
        index[row, col] = order
        valid = index < n
        rev_index = index.flip(1).contiguous()
    return RankPlan(index=index, valid=valid, n=n, rev_index=rev_index, pos=_slot_positions(index, n),
                    padded=n_strata * width != n, _trusted=True)


def _slot_positions(index: Tensor, n: int) -> Tensor:
    """long [N]: the flat slot of each comparison in ``index`` (padding slots hold N)."""
    flat = index.reshape(-1)
    slots = torch.nonzero(flat < n).squeeze(1)
    pos = torch.empty(n, dtype=torch.long, device=flat.device)
    pos[flat[slots]] = slots
    return pos


def rr_loss(
    u_chosen: Tensor,
    u_rejected: Tensor,
    strength: Optional[Tensor] = None,
    stratum: Optional[Tensor] = None,
    *,
    plan: Optional[RankPlan] = None,
    use_kernel: Optional[bool] = None,
) -> Tensor:
    """ResponseRank: Plackett–Luce over each stratum's strongest-first ranking plus a d = 0 anchor.

    With d_(1..m) the stratum's differences sorted strongest first and worths exp(d)::

        log L = Σ_k [ d_(k) - log(1 + Σ_{j≥k} exp d_(j)) ]

    (the anchor's own term is 0). Returns the summed NLL over all strata divided by N. A stratum
    of size 1 contributes -log σ(d), exactly Bradley–Terry. Pass a precomputed ``plan``
    (:func:`make_rank_plan`) to skip the sort when strength and strata are fixed across steps.

    On CPU the compiled kernel of :mod:`rlpref.kernels` computes the same values and gradients when it
    is built (``use_kernel=None``: whenever available; ``False``: always the eager path; ``True``: the
    kernel or an error).
    """
    _check_utilities(u_chosen, u_rejected, check_finite=False)
    n = u_chosen.shape[0]
    if plan is None:
        # Shape check against N here; make_rank_plan checks the values.
        plan = make_rank_plan(_check_strength(strength, n, "rr", check_finite=False), stratum)
    elif plan.n != n:
        raise ValueError(f"rank plan was built for {plan.n} comparisons, got {n}")
    rev_index = plan.rev_index if plan.rev_index is not None else plan.index.flip(1)
    # The exp/cumsum path is accurate whenever it stays finite (an underflowing exp only drops terms far
    # below the anchor's 1), so it runs first and one check of the scalar decides: only an overflow
    # (|d| in the hundreds) or bad input pays for the logcumsumexp path.
    kernel = _cpu_kernel(u_chosen, u_rejected, use_kernel)
    if kernel is not None:
        loss = kernel.rr_loss(u_chosen, u_rejected, rev_index)
    else:
        pos = plan.pos if plan.pos is not None else _slot_positions(plan.index, n)
        loss = _FastRR.apply(u_chosen, u_rejected, rev_index, pos, plan.padded)
    if math.isfinite(loss.item()):
        return loss
    if not _all_finite(u_chosen, u_rejected):
        _check_utilities(u_chosen, u_rejected)  # raises the NaN/inf message
    d = u_chosen - u_rejected
    if not bool(torch.isfinite(d).all()):
        raise ValueError("u_chosen - u_rejected overflows to inf; the utilities are far too large")
    return (_rr_log_denominators_stable(d, rev_index).sum() - d.sum()) / n


def _cpu_kernel(u_chosen: Tensor, u_rejected: Tensor, use_kernel: Optional[bool]):
    """The compiled rr module when it applies (CPU, float32/float64, one dtype), else None for the eager path."""
    if use_kernel is False:
        return None
    module = kernels.load()
    fits = (u_chosen.device.type == "cpu" and u_chosen.dtype == u_rejected.dtype
            and u_chosen.dtype in (torch.float32, torch.float64) and u_rejected.device.type == "cpu")
    if use_kernel and module is None:
        raise RuntimeError(f"use_kernel=True but the compiled rr kernel is {kernels.load_error()}")
    if use_kernel and not fits:
        raise RuntimeError("use_kernel=True but the compiled rr kernel only takes CPU float32/float64 utilities "
                           "of one dtype; pass use_kernel=None to fall back to the eager path")
    return module if fits else None


class _FastRR(torch.autograd.Function):
    """The rr loss by exp + cumsum, with a hand-written backward (one graph node instead of ~10).

    Forward: W = exp(d) laid out weakest-first per stratum (pads 0), C = cumsum(W) along rows,
    L = (Σ log(1 + C) − Σ d) / N. Backward: g = 1/(N·(1 + C)); dL/dW is the row-wise suffix sum of g,
    i.e. a plain prefix sum once g is flipped to the strongest-first layout; every comparison sits in
    exactly one slot of it, so gathering at ``pos`` replaces a scatter; dL/dd = exp(d)·dL/dW − 1/N, and
    dL/du_rejected = −dL/du_chosen.
    """

    @staticmethod
    def forward(ctx, u_chosen: Tensor, u_rejected: Tensor, rev_index: Tensor, pos: Tensor, padded: bool) -> Tensor:
        n = u_chosen.shape[0]
        d = u_chosen - u_rejected
        w = d.exp()
        c = _rr_prefix_sums(w, rev_index, padded)
        ctx.save_for_backward(w, c, pos)
        return torch.log1p(c).sum().sub_(d.sum()).div_(n)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # Grad mode is on here only under create_graph=True; this backward is not differentiable
        # (a cheaper guard than @once_differentiable, which wraps every call).
        if torch.is_grad_enabled():
            raise RuntimeError("rr does not support double backward (create_graph=True)")
        w, c, pos = ctx.saved_tensors
        n = w.shape[0]
        scale = grad / n
        # Exact suffix sums as prefix sums of the flipped rows (total − prefix would cancel
        # catastrophically: g falls steeply along a row and is then multiplied by exp(d)).
        g = c.flip(1).add_(1.0).reciprocal_().mul_(scale)
        gd = g.cumsum(1).view(-1).index_select(0, pos).mul_(w).sub_(scale)
        return gd, gd.neg(), None, None, None


def _rr_prefix_sums(w: Tensor, rev_index: Tensor, padded: bool = True) -> Tensor:
    """[S, M] prefix sums of the worths in weakest-first row layout; padding slots add 0."""
    flat = rev_index.reshape(-1)
    source = torch.cat([w, w.new_zeros(1)]) if padded else w  # padding indexes slot N, a zero
    return torch.cumsum(source.index_select(0, flat).view(rev_index.shape), dim=1)


def _rr_log_denominators_stable(d: Tensor, rev_index: Tensor) -> Tensor:
    """[S, M] values log(1 + Σ_{j≥k} exp d_(j)) in reversed row layout by logcumsumexp; pads are exactly 0.

    Rows are reversed (weakest first), so the suffix sums of the ranking are prefix sums; the sum of
    these terms minus Σ d is the summed NLL. Stable for any finite d, but an order of magnitude slower
    on CPU than :class:`_FastRR`, so it only runs when that one overflows. ``index_select`` on the flat
    index (not ``x[rev_index]``): its backward is an index_add, not a slow accumulating index_put.
    """
    flat = rev_index.reshape(-1)
    padded = torch.cat([d, d.new_full((1,), float("-inf"))]).index_select(0, flat).view(rev_index.shape)
    suffix = torch.logcumsumexp(padded, dim=1)
    return torch.logaddexp(suffix, torch.zeros_like(suffix))  # log(1 + e^x), exact; pads -> 0


def rr_pooled_loss(
    u_chosen: Tensor,
    u_rejected: Tensor,
    strength: Optional[Tensor] = None,
    stratum: Optional[Tensor] = None,
    *,
    plan: Optional[RankPlan] = None,
) -> Tensor:
    """ResponseRank with every comparison of a fit in one stratum (the 'pooled' ablation).

    ``stratum`` here names the *fit* (None: one fit), so stacked independent fits stay apart. Tied
    strengths inside a fit are dealt round-robin into tie-free sub-strata (:func:`rlpref.strata.round_robin`)
    instead of aborting: pooling puts comparisons from different rollout batches or annotators together,
    where equal strengths are common and carry no order. ``plan``: :func:`pooled_rank_plan`, built once.
    """
    if plan is None:
        _check_utilities(u_chosen, u_rejected, check_finite=False)
        plan = pooled_rank_plan(_check_strength(strength, u_chosen.shape[0], "rr_pooled"), stratum)
    return rr_loss(u_chosen, u_rejected, plan=plan)


def pooled_rank_plan(strength: Tensor, fit: Optional[Tensor] = None) -> RankPlan:
    """The :class:`RankPlan` of ``rr_pooled``: one stratum per fit (``fit`` ids [N], None: one), ties
    split round-robin."""
    from rlpref.strata import round_robin  # numpy-side helper; imported late to keep this module light

    n = strength.shape[0] if isinstance(strength, Tensor) and strength.dim() == 1 else -1
    strength = _check_strength(strength, n, "rr_pooled")
    fit_np = None if fit is None else _check_stratum(fit, n, strength.device).cpu().numpy()
    ids = torch.as_tensor(round_robin(strength.detach().cpu().numpy(), fit_np), device=strength.device)
    return make_rank_plan(strength, ids)


def clf_loss(
    u_chosen: Tensor,
    u_rejected: Tensor,
    strength: Optional[Tensor] = None,
    stratum: Optional[Tensor] = None,
) -> Tensor:
    """Per-item classification ("Rethinking BT"): chosen items are positives, rejected negatives.

    BCE-with-logits on each item's utility, averaged over the 2N items.
    """
    _check_utilities(u_chosen, u_rejected)
    return 0.5 * (F.softplus(-u_chosen).mean() + F.softplus(u_rejected).mean())


def rt_regression_loss(
    u_chosen: Tensor,
    u_rejected: Tensor,
    strength: Optional[Tensor] = None,
    stratum: Optional[Tensor] = None,
) -> Tensor:
    """Regress d onto a strength-derived target: a weak baseline.

    Assumed link: the preference margin falls linearly with the strength rank key. Inside each
    stratum the key is standardised, z = (k - mean) / std, and the target is d* = 1 - z, so the
    strongest comparisons ask for the largest positive margin and the weakest for one near or
    below zero. Strata of size 1 (std undefined) get z = 0, i.e. target 1. Loss = mean (d - d*)².
    """
    _check_utilities(u_chosen, u_rejected)
    n = u_chosen.shape[0]
    strength = _check_strength(strength, n, "rt_regression").to(u_chosen.dtype)
    stratum = _check_stratum(stratum, n, u_chosen.device)
    with torch.no_grad():
        _, inverse, counts = torch.unique(stratum, return_inverse=True, return_counts=True)
        s = counts.numel()
        cnt = counts.to(strength.dtype)
        mean = torch.zeros(s, dtype=strength.dtype, device=strength.device).index_add_(0, inverse, strength) / cnt
        centred = strength - mean[inverse]
        var = torch.zeros_like(mean).index_add_(0, inverse, centred**2) / cnt
        std = var.sqrt()[inverse]
        z = torch.where(std > 0, centred / torch.where(std > 0, std, torch.ones_like(std)), torch.zeros_like(std))
        target = 1.0 - z
    d = u_chosen - u_rejected
    return ((d - target) ** 2).mean()


LossFn = Callable[..., Tensor]


@dataclass(frozen=True)
class LossSpec:
    """What a loss needs from the track that calls it, so no track branches on loss names.

    ``uses_strength``: reads ``strength`` (and ``stratum``); the others ignore both.
    ``pooled``: strength is ranked across the whole fit, whatever strata the track builds (those still
    shape its mini-batches); ``stratum`` then names the fit. ``ranks``: a ranking loss, which also accepts a
    precomputed :class:`RankPlan` (``plan=``) so a track with fixed strata sorts once per fit, not per
    step. ``options``: keyword options the loss accepts (config keys of the same name).
    """

    name: str
    fn: LossFn
    summary: str
    uses_strength: bool = False
    pooled: bool = False
    ranks: bool = False
    options: tuple[str, ...] = ()

    def inputs(self, strength: Optional[Tensor], stratum: Optional[Tensor], fit: Optional[Tensor] = None,
               **options) -> dict:
        """Keyword arguments for ``fn`` beyond the utilities: strength and strata as this loss takes them
        (a :class:`RankPlan` for ranking losses, built once) and the options it accepts. A pooled loss
        ranks across ``fit`` (ids [N] of stacked independent fits; None: one fit) and ignores ``stratum``."""
        kwargs = {k: v for k, v in options.items() if k in self.options}
        if not self.uses_strength:
            return kwargs
        if self.pooled:
            kwargs["plan"] = pooled_rank_plan(strength, fit)
        elif self.ranks:
            kwargs["plan"] = make_rank_plan(strength, stratum)
        else:
            kwargs.update(strength=strength, stratum=stratum)
        return kwargs


LOSS_SPECS: dict[str, LossSpec] = {
    s.name: s
    for s in (
        LossSpec("bt", bt_loss, "Bradley–Terry: which option is preferred", options=("label_smoothing",)),
        LossSpec("rr", rr_loss, "ResponseRank: BT plus strength ranked inside each stratum", uses_strength=True, ranks=True),
        LossSpec("rr_pooled", rr_pooled_loss, "ResponseRank with one stratum per fit (ties split round-robin)",
                 uses_strength=True, pooled=True, ranks=True),
        LossSpec("clf", clf_loss, "per-item classification: chosen -> 1, rejected -> 0"),
        LossSpec("rt_regression", rt_regression_loss, "regress the margin onto a standardised strength target",
                 uses_strength=True),
    )
}

#: name -> loss function (every loss has the signature in the module docstring).
LOSSES: dict[str, LossFn] = {name: spec.fn for name, spec in LOSS_SPECS.items()}

#: Losses that read ``strength`` (the rest ignore it).
USES_STRENGTH = frozenset(name for name, spec in LOSS_SPECS.items() if spec.uses_strength)


def get_loss_spec(name: str) -> LossSpec:
    """Look a loss's spec up by name; unknown names list the choices."""
    try:
        return LOSS_SPECS[name]
    except KeyError:
        raise KeyError(f"unknown loss '{name}'; choose one of: {', '.join(sorted(LOSS_SPECS))}") from None


def get_loss(name: str) -> LossFn:
    """Look a loss function up by name; unknown names list the choices."""
    return get_loss_spec(name).fn
