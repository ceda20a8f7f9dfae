"""Tests of rlpref.losses: known values, references, gradients, orientation, input errors."""

from __future__ import annotations

import math

import pytest
import torch

from rlpref.losses import LOSS_SPECS, LOSSES, USES_STRENGTH, get_loss, get_loss_spec, make_rank_plan, rr_loss

D64 = torch.float64


def t(x, dtype=D64):
    return torch.tensor(x, dtype=dtype)


def lt(x):
    return torch.tensor(x, dtype=torch.long)


# ---------------------------------------------------------------- known values (literals)
# Inputs shared by the hand-computed cases: d = u_chosen - u_rejected = (2, -1).
UC2, UR2 = [2.0, 0.0], [0.0, 1.0]


def test_bt_known_value():
    # (log(1+e^-2) + log(1+e^1)) / 2
    assert LOSSES["bt"](t(UC2), t(UR2)).item() == pytest.approx(0.7200948492805977, rel=1e-12)


def test_bt_label_smoothing_known_value():
    # 0.9*softplus(-d) + 0.1*softplus(d), averaged over d = (2, -1)
    got = LOSSES["bt"](t(UC2), t(UR2), label_smoothing=0.1).item()
    assert got == pytest.approx(0.7700948492805977, rel=1e-12)


def test_bt_label_smoothing_range():
    with pytest.raises(ValueError, match="label_smoothing"):
        LOSSES["bt"](t(UC2), t(UR2), label_smoothing=0.5)


def test_rr_known_value_single_stratum():
    # stratum of 2 with d = (1, -0.5), strength (1, 2) -> strongest first is d = 1:
    # -(1 - log(1+e^1+e^-0.5)) - (-0.5 - log(1+e^-0.5)), divided by N = 2
    got = LOSSES["rr"](t([1.0, -0.5]), t([0.0, 0.0]), strength=t([1.0, 2.0]), stratum=lt([0, 0]))
    assert got.item() == pytest.approx(0.7192228841440258, rel=1e-12)


def test_rr_known_value_sort_is_by_strength_not_position():
    # same comparisons listed in the other order: the ranking comes from strength, not the index
    got = LOSSES["rr"](t([-0.5, 1.0]), t([0.0, 0.0]), strength=t([2.0, 1.0]), stratum=lt([3, 3]))
    assert got.item() == pytest.approx(0.7192228841440258, rel=1e-12)


def test_rr_known_value_with_singleton_stratum():
    # the stratum above plus a singleton with d = 2 (contributes log(1+e^-2)); divided by N = 3
    got = LOSSES["rr"](
        t([1.0, -0.5, 2.0]), t([0.0, 0.0, 0.0]), strength=t([1.0, 2.0, 0.5]), stratum=lt([0, 0, 1])
    )
    assert got.item() == pytest.approx(0.5217912597770081, rel=1e-12)


def test_rr_pooled_known_value_one_stratum_per_fit():
    # one fit: one stratum, order by strength (0.5, 1, 2) -> d = (2, 1, -0.5)
    got = LOSSES["rr_pooled"](t([1.0, -0.5, 2.0]), t([0.0, 0.0, 0.0]), strength=t([1.0, 2.0, 0.5]))
    assert got.item() == pytest.approx(0.6330730858149676, rel=1e-12)
    # stratum names the fit: two fits are ranked apart, exactly as rr with those strata
    fits = lt([0, 0, 1])
    args = (t([1.0, -0.5, 2.0]), t([0.0, 0.0, 0.0]))
    apart = LOSSES["rr_pooled"](*args, strength=t([1.0, 2.0, 0.5]), stratum=fits)
    assert apart.item() == pytest.approx(LOSSES["rr"](*args, strength=t([1.0, 2.0, 0.5]), stratum=fits).item(), rel=1e-12)
    assert apart.item() != pytest.approx(got.item())


def test_clf_known_value():
    # items: chosen (2, 0) -> softplus(-u); rejected (0, 1) -> softplus(u); mean over 4 items
    assert LOSSES["clf"](t(UC2), t(UR2)).item() == pytest.approx(0.7066210149202714, rel=1e-12)


def test_rt_regression_known_value():
    # stratum 0: strength (3, 1, 2) -> z = (+sqrt(1.5), -sqrt(1.5), 0), target 1 - z;
    # stratum 1 is a singleton -> target 1. d = (2, 0, 1, 0.5).
    got = LOSSES["rt_regression"](
        t([2.0, 0.0, 1.0, 0.5]), t([0.0] * 4), strength=t([3.0, 1.0, 2.0, 7.0]), stratum=lt([0, 0, 0, 1])
    )
    assert got.item() == pytest.approx(2.537244871391589, rel=1e-12)


# ---------------------------------------------------------------- rr against references


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rr_matches_naive_reference_values_and_grads(seed, naive_rr, random_problem):
    uc, ur, strength, stratum = random_problem(seed)
    assert torch.unique(stratum).numel() >= 50
    got = rr_loss(uc, ur, strength, stratum)
    g_got = torch.autograd.grad(got, (uc, ur))
    ref = naive_rr(uc - ur, strength, stratum)
    g_ref = torch.autograd.grad(ref, (uc, ur))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rr_all_singletons_equals_bt():
    g = torch.Generator().manual_seed(3)
    uc, ur = torch.randn(40, generator=g, dtype=D64), torch.randn(40, generator=g, dtype=D64)
    strength = torch.randn(40, generator=g, dtype=D64)
    stratum = torch.randperm(40, generator=g)
    torch.testing.assert_close(rr_loss(uc, ur, strength, stratum), LOSSES["bt"](uc, ur), rtol=1e-13, atol=0)


def test_rr_singletons_with_equal_strength_across_strata_equals_bt():
    # ties across different strata are fine: strength is never compared between strata
    uc, ur = t([0.3, -1.2, 2.0]), t([0.0, 0.5, -1.0])
    got = rr_loss(uc, ur, strength=t([1.0, 1.0, 1.0]), stratum=lt([0, 1, 2]))
    torch.testing.assert_close(got, LOSSES["bt"](uc, ur))


def test_rr_with_plan_equals_without(random_problem):
    uc, ur, strength, stratum = random_problem(4)
    plan = make_rank_plan(strength, stratum)
    a = rr_loss(uc, ur, strength, stratum)
    b = rr_loss(uc, ur, plan=plan)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ga = torch.autograd.grad(a, uc)[0]
    gb = torch.autograd.grad(rr_loss(uc, ur, plan=plan), uc)[0]
    torch.testing.assert_close(ga, gb, rtol=0, atol=0)


def test_rr_plan_size_mismatch():
    plan = make_rank_plan(t([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="rank plan was built for 3"):
        rr_loss(t([1.0, 2.0]), t([0.0, 0.0]), plan=plan)


def test_rr_float32_matches_float64(random_problem):
    uc, ur, strength, stratum = random_problem(5)
    a = rr_loss(uc.detach().float(), ur.detach().float(), strength, stratum)
    b = rr_loss(uc.detach(), ur.detach(), strength, stratum)
    assert a.dtype == torch.float32
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


# ---------------------------------------------------------------- gradients and extremes


def _loss_inputs(name, n=12, seed=0, scale=1.0, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    uc = (torch.randn(n, generator=g, dtype=dtype) * scale).requires_grad_()
    ur = (torch.randn(n, generator=g, dtype=dtype) * scale).requires_grad_()
    strength = torch.randperm(n, generator=g).to(D64)
    stratum = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 0][:n])
    return uc, ur, strength, stratum


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name):
    uc, ur, strength, stratum = _loss_inputs(name)
    fn = LOSSES[name]
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, strength=strength, stratum=stratum), (uc, ur))


def test_gradcheck_rr_eager_path():
    """The kernel, when built, serves rr by default; the eager autograd.Function needs its own check."""
    uc, ur, strength, stratum = _loss_inputs("rr")
    assert torch.autograd.gradcheck(
        lambda a, b: rr_loss(a, b, strength=strength, stratum=stratum, use_kernel=False), (uc, ur)
    )


def test_rr_eager_path_refuses_double_backward():
    u = torch.randn(6, dtype=torch.float64, requires_grad=True)
    loss = rr_loss(u, torch.zeros(6, dtype=torch.float64), torch.arange(6.0), use_kernel=False)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, u, create_graph=True)


def test_gradcheck_bt_label_smoothing():
    uc, ur, _, _ = _loss_inputs("bt")
    assert torch.autograd.gradcheck(lambda a, b: LOSSES["bt"](a, b, label_smoothing=0.2), (uc, ur))


@pytest.mark.parametrize("dtype", [torch.float32, D64])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_for_huge_differences(name, dtype):
    n = 12
    mags = torch.tensor([1e4, -1e4, 5e3, -3e3, 1e2, -1e2, 0.0, 1.0, -1e4, 1e4, 7e3, -7e3], dtype=dtype)
    uc = mags.clone().requires_grad_()
    ur = mags.flip(0).clone().requires_grad_()  # d spans about ±2e4
    _, _, strength, stratum = _loss_inputs(name, n)
    loss = LOSSES[name](uc, ur, strength=strength, stratum=stratum)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(uc.grad).all() and torch.isfinite(ur.grad).all()


def test_rr_huge_differences_value():
    # a confident, correctly ordered model has loss ~0; the inverse has loss ~|d|
    d = t([1e4, 5e3])
    good = rr_loss(d, torch.zeros(2, dtype=D64), strength=t([1.0, 2.0]))
    bad = rr_loss(-d, torch.zeros(2, dtype=D64), strength=t([1.0, 2.0]))
    assert good.item() == pytest.approx(0.0, abs=1e-12)
    # d = (-1e4, -5e3): each NLL term is -d_k + log(1 + Σ_{j>=k} e^d_j) = -d_k + ~0
    assert bad.item() == pytest.approx((1e4 + 5e3) / 2, rel=1e-9)


# ---------------------------------------------------------------- orientation


def test_bt_orientation_swap():
    uc, ur, _, _ = _loss_inputs("bt", seed=7)
    d = uc - ur
    # -log σ(d) + log σ(-d) = -d  ->  bt(c, r) - bt(r, c) = -mean(d)
    diff = LOSSES["bt"](uc, ur) - LOSSES["bt"](ur, uc)
    torch.testing.assert_close(diff, -d.mean())


def test_clf_orientation_swap():
    uc, ur, _, _ = _loss_inputs("clf", seed=8)
    # softplus(-x) - softplus(x) = -x for each item -> difference is -mean(d)/2
    diff = LOSSES["clf"](uc, ur) - LOSSES["clf"](ur, uc)
    torch.testing.assert_close(diff, -(uc - ur).mean() / 2)


def test_rr_orientation_swap():
    # correctly oriented confident model beats the swapped one in every loss that ranks pairs
    strength, stratum = t([1.0, 2.0, 3.0, 4.0]), lt([0, 0, 1, 1])
    uc, ur = t([3.0, 2.0, 4.0, 1.0]), t([0.0, 0.0, 0.0, 0.0])
    for name in ("bt", "rr", "rr_pooled", "clf"):
        right = LOSSES[name](uc, ur, strength=strength, stratum=stratum)
        wrong = LOSSES[name](ur, uc, strength=strength, stratum=stratum)
        assert right < wrong, name


def test_rr_swap_flips_d_singletons():
    # on singleton strata rr is bt, so the exact bt identity must hold too
    uc, ur, _, _ = _loss_inputs("rr", seed=9)
    s, st = torch.arange(12.0), torch.arange(12)
    diff = rr_loss(uc, ur, s, st) - rr_loss(ur, uc, s, st)
    torch.testing.assert_close(diff, -(uc - ur).mean())


# ---------------------------------------------------------------- strength order


@pytest.mark.parametrize("seed", range(5))
def test_rr_strength_order_matters(seed):
    g = torch.Generator().manual_seed(seed)
    n_strata, m = 30, 6
    stratum = torch.arange(n_strata).repeat_interleave(m)
    strength = torch.rand(n_strata * m, generator=g, dtype=D64)
    # a model correct about strength: lower key (stronger) -> larger positive d
    d = 3.0 - 2.0 * strength + 0.01 * torch.rand(n_strata * m, generator=g, dtype=D64)
    zeros = torch.zeros_like(d)
    right = rr_loss(d, zeros, strength, stratum)
    reversed_ = rr_loss(d, zeros, -strength, stratum)
    assert right < reversed_
    # the same pairs as singletons carry no strength information: order is irrelevant there
    single = torch.arange(n_strata * m)
    torch.testing.assert_close(rr_loss(d, zeros, strength, single), rr_loss(d, zeros, -strength, single))


# ---------------------------------------------------------------- ties


def test_ties_inside_stratum_raise():
    with pytest.raises(ValueError, match="round_robin"):
        rr_loss(t([1.0, 2.0, 3.0]), t([0.0, 0.0, 0.0]), strength=t([1.0, 1.0, 2.0]), stratum=lt([0, 0, 0]))
    with pytest.raises(ValueError, match="tied"):
        make_rank_plan(t([0.5, 0.5]), lt([4, 4]))


def test_ties_in_pooled_are_split_round_robin(naive_rr):
    """rr_pooled deals tied strengths into tie-free sub-strata (one meaning in every track)."""
    from rlpref.strata import round_robin

    uc, ur, strength = t([1.0, 2.0, -0.5, 0.3]), t([0.0, 0.0, 0.0, 0.0]), t([1.0, 1.0, 0.5, 2.0])
    got = LOSSES["rr_pooled"](uc, ur, strength=strength)
    split = torch.as_tensor(round_robin(strength.numpy()))
    assert split.unique().numel() == 2  # the tie forced a second sub-stratum
    torch.testing.assert_close(got, naive_rr(uc - ur, strength, split), rtol=1e-12, atol=0)


def test_ties_check_can_be_disabled(naive_rr):
    """Unchecked ties keep their input order (stable sort), so the loss is the naive one in that order."""
    strength, stratum = t([0.5, 0.2, 0.5]), lt([4, 4, 4])
    plan = make_rank_plan(strength, stratum, check_ties=False)
    assert plan.index[plan.valid].tolist() == [1, 0, 2]
    d = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    tie_broken = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    expected = naive_rr(d, tie_broken, stratum)
    got = rr_loss(d, torch.zeros(3, dtype=torch.float64), plan=plan, use_kernel=False)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------- bad input


def test_mismatched_shapes():
    for name in LOSSES:
        with pytest.raises(ValueError, match="same shape"):
            LOSSES[name](t([1.0, 2.0]), t([1.0]), strength=t([1.0, 2.0]))


def test_nan_utilities():
    for name in LOSSES:
        with pytest.raises(ValueError, match="NaN"):
            LOSSES[name](t([1.0, float("nan")]), t([0.0, 0.0]), strength=t([1.0, 2.0]))


def test_nan_strength():
    with pytest.raises(ValueError, match="strength contains NaN"):
        rr_loss(t([1.0, 2.0]), t([0.0, 0.0]), strength=t([1.0, float("nan")]))


@pytest.mark.parametrize("name", sorted(USES_STRENGTH))
def test_strength_missing(name):
    with pytest.raises(ValueError, match="needs `strength`"):
        LOSSES[name](t([1.0, 2.0]), t([0.0, 0.0]))


def test_make_rank_plan_strength_missing():
    with pytest.raises(ValueError, match="needs `strength`"):
        make_rank_plan(None)
    with pytest.raises(ValueError, match="1-D"):
        make_rank_plan(t([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="no comparisons"):
        make_rank_plan(t([]))


def test_strength_wrong_shape():
    with pytest.raises(ValueError, match=r"strength must have shape \[2\]"):
        rr_loss(t([1.0, 2.0]), t([0.0, 0.0]), strength=t([1.0, 2.0, 3.0]))


def test_float_stratum_ids():
    for name in ("rr", "rt_regression"):
        with pytest.raises(TypeError, match="integer ids"):
            LOSSES[name](t([1.0, 2.0]), t([0.0, 0.0]), strength=t([1.0, 2.0]), stratum=t([0.0, 1.0]))


def test_stratum_wrong_shape():
    with pytest.raises(ValueError, match=r"stratum must have shape \[2\]"):
        rr_loss(t([1.0, 2.0]), t([0.0, 0.0]), strength=t([1.0, 2.0]), stratum=lt([0, 0, 0]))


def test_non_1d_inputs():
    for name in LOSSES:
        with pytest.raises(ValueError, match="must be 1-D"):
            LOSSES[name](t([[1.0, 2.0]]), t([[0.0, 0.0]]), strength=t([1.0, 2.0]))


def test_integer_utilities():
    with pytest.raises(TypeError, match="floating-point"):
        LOSSES["bt"](lt([1, 2]), lt([0, 0]))


def test_empty_input():
    with pytest.raises(ValueError, match="no comparisons"):
        LOSSES["bt"](t([]), t([]))


def test_unknown_loss_lists_choices():
    with pytest.raises(KeyError) as e:
        get_loss("bradley_terry")
    msg = str(e.value)
    assert "bradley_terry" in msg
    for name in LOSSES:
        assert name in msg


def test_get_loss_and_registry():
    assert get_loss("rr") is rr_loss
    assert set(LOSSES) >= {"bt", "rr", "rr_pooled", "clf", "rt_regression"}
    assert USES_STRENGTH <= set(LOSSES)
    assert "bt" not in USES_STRENGTH and "clf" not in USES_STRENGTH
    bt = LOSSES["bt"](t([1.0]), t([0.0]), strength=t([1.0]), stratum=lt([0])).item()
    assert bt == pytest.approx(math.log1p(math.exp(-1.0)))


def test_rr_overflow_fallback_matches_float64():
    """float32 exp overflows near d = 89: the loss must fall back to logcumsumexp and agree with float64."""
    g = torch.Generator().manual_seed(3)
    d64 = (torch.rand(40, generator=g, dtype=torch.float64) - 0.3) * 400  # up to ~280: exp overflows in f32
    strength = torch.randperm(40, generator=g).double()
    stratum = torch.arange(40) % 5
    rr = LOSSES["rr"]
    u32 = d64.float().requires_grad_()
    u64 = d64.clone().requires_grad_()
    l32 = rr(u32, torch.zeros(40), strength, stratum)
    l64 = rr(u64, torch.zeros(40, dtype=torch.float64), strength, stratum)
    assert torch.isfinite(l32) and l32.item() == pytest.approx(l64.item(), rel=1e-5)
    l32.backward()
    l64.backward()
    torch.testing.assert_close(u32.grad.double(), u64.grad, rtol=1e-4, atol=1e-6)


def test_rr_refuses_double_backward_instead_of_returning_wrong_second_derivatives():
    u = torch.randn(6, dtype=torch.float64, requires_grad=True)
    loss = LOSSES["rr"](u, torch.zeros(6, dtype=torch.float64), torch.arange(6.0), torch.zeros(6, dtype=torch.long))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, u, create_graph=True)


def test_rr_equal_sized_strata_skip_padding_and_agree_with_the_padded_path():
    import dataclasses

    from rlpref.losses import make_rank_plan, rr_loss

    g = torch.Generator().manual_seed(5)
    n = 48
    strength = torch.randperm(n, generator=g).double()
    stratum = (torch.arange(n) // 8)[torch.randperm(n, generator=g)]
    plan = make_rank_plan(strength, stratum)
    assert not plan.padded and make_rank_plan(strength[:-1], stratum[:-1]).padded
    grads = []
    for p in (plan, dataclasses.replace(plan, padded=True)):
        u = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_()
        loss = rr_loss(u, torch.zeros(n, dtype=torch.float64), plan=p, use_kernel=False)
        loss.backward()
        grads.append((loss.detach(), u.grad))
    torch.testing.assert_close(grads[0], grads[1])
    u = torch.randn(n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: rr_loss(x, torch.zeros(n, dtype=torch.float64), plan=plan, use_kernel=False), (u,)
    )


def test_hand_built_rank_plans_are_validated():
    from rlpref.losses import RankPlan

    good = make_rank_plan(t([3.0, 1.0, 2.0, 0.5]), lt([0, 0, 0, 1]))
    n = good.n
    bad_layouts = {
        "outside": good.index.masked_fill(good.index == 0, -1),
        "padding before an item": good.index.flip(1),
        "exactly once": good.index.masked_fill(good.index == 1, 2),
    }
    for problem, index in bad_layouts.items():
        with pytest.raises(ValueError, match=problem):
            RankPlan(index=index, valid=index < n, n=n)
    with pytest.raises(ValueError, match="rev_index"):
        RankPlan(index=good.index, valid=good.valid, n=n, rev_index=good.index)
    with pytest.raises(ValueError, match="pos"):
        RankPlan(index=good.index, valid=good.valid, n=n, pos=good.pos.flip(0))
    with pytest.raises(TypeError, match="long tensor"):
        RankPlan(index=good.index.float(), valid=good.valid, n=n)


def test_integer_strength_ranks_like_the_same_floats_and_bool_strata_are_refused(naive_rr):
    d = torch.tensor([0.5, -0.2, 1.5, 0.1], dtype=torch.float64)
    zeros = torch.zeros(4, dtype=torch.float64)
    stratum = lt([0, 0, 1, 1])
    as_int = rr_loss(d, zeros, torch.tensor([3, 1, 2, 0]), stratum, use_kernel=False)
    torch.testing.assert_close(as_int, naive_rr(d, torch.tensor([3.0, 1.0, 2.0, 0.0]), stratum))
    with pytest.raises(TypeError, match="integer ids"):
        rr_loss(d, zeros, torch.arange(4.0), torch.tensor([True, False, True, False]))


def test_finite_values_whose_sum_overflows_are_still_accepted_and_inf_differences_are_refused():
    big = torch.full((2,), 1.7e308, dtype=torch.float64)  # finite, but their sum overflows: the exact check runs
    assert LOSSES["bt"](big, big.clone()).item() == pytest.approx(math.log(2.0))
    huge = torch.tensor([1.7e308, -1.7e308], dtype=torch.float64)
    with pytest.raises(ValueError, match="overflows to inf"):
        rr_loss(huge, -huge, torch.tensor([0.0, 1.0], dtype=torch.float64), use_kernel=False)


@pytest.mark.parametrize("name", sorted(LOSS_SPECS))
def test_spec_inputs_give_the_loss_it_declares(name, random_problem):
    """Calling ``spec.fn(**spec.inputs(...))`` equals calling the loss with strength and strata directly,
    and options the loss does not accept are dropped (so a track can pass its config blindly)."""
    uc, ur, strength, stratum = random_problem(3, n_strata=5, max_size=4)
    spec = LOSS_SPECS[name]
    kwargs = spec.inputs(strength, stratum, label_smoothing=0.1)
    assert ("label_smoothing" in kwargs) == ("label_smoothing" in spec.options)
    assert ("plan" in kwargs) == (spec.ranks and spec.uses_strength)
    direct_kw = {"label_smoothing": 0.1} if "label_smoothing" in spec.options else {}
    stratum_arg = None if spec.pooled else stratum  # pooled: the stratum argument names the fit
    direct = spec.fn(uc, ur, strength=strength, stratum=stratum_arg, **direct_kw)
    torch.testing.assert_close(spec.fn(uc, ur, **kwargs), direct, rtol=1e-12, atol=0)


def test_spec_registry_is_the_loss_table():
    assert set(LOSS_SPECS) == set(LOSSES)
    assert USES_STRENGTH == {n for n, s in LOSS_SPECS.items() if s.uses_strength}
    assert get_loss_spec("rr_pooled").pooled and not get_loss_spec("rr").pooled
    with pytest.raises(KeyError, match="choose one of"):
        get_loss_spec("hinge")
