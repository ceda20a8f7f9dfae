"""The optional compiled rr kernel (rlpref.kernels) against the eager path and the naive reference.

The kernel is built by `make install` (`python -m rlpref.kernels build --optional`). Where no compiler
was available these tests are reported as skipped with that reason (pytest -ra lists it); set
RLPREF_REQUIRE_KERNEL=1 to turn a missing kernel into a failure.
"""

import os

import pytest
import torch

from rlpref import kernels
from rlpref.losses import LOSSES, make_rank_plan, rr_loss

D64 = torch.float64


@pytest.fixture(scope="module")
def kernel():
    module = kernels.load()
    if module is None:
        msg = "rr CPU kernel not built (python -m rlpref.kernels build)"
        if os.environ.get("RLPREF_REQUIRE_KERNEL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return module


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_size", [1, 9, 70])
def test_kernel_equals_eager_and_reference(kernel, seed, max_size, naive_rr, random_problem):
    uc, ur, strength, stratum = random_problem(seed, n_strata=60, max_size=max_size)
    plan = make_rank_plan(strength, stratum)
    fast = rr_loss(uc, ur, plan=plan, use_kernel=True)
    assert "RRFunction" in fast.grad_fn.name()  # the C++ node, not the eager _FastRR
    eager = rr_loss(uc, ur, plan=plan, use_kernel=False)
    ref = naive_rr(uc - ur, strength, stratum)
    g_fast = torch.autograd.grad(fast, (uc, ur))
    g_eager = torch.autograd.grad(eager, (uc, ur))
    g_ref = torch.autograd.grad(ref, (uc, ur))
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, eager, rtol=1e-13, atol=0)
    for a, b, c in zip(g_fast, g_eager, g_ref):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_kernel_float32_matches_float64(kernel, random_problem):
    uc, ur, strength, stratum = random_problem(5, max_size=40)
    plan = make_rank_plan(strength, stratum)
    u32 = uc.detach().float().requires_grad_()
    l32 = rr_loss(u32, ur.detach().float(), plan=plan, use_kernel=True)
    l64 = rr_loss(uc, ur, plan=plan, use_kernel=True)
    assert l32.dtype == torch.float32
    torch.testing.assert_close(l32.double(), l64.detach(), rtol=1e-5, atol=1e-6)
    g32 = torch.autograd.grad(l32, u32)[0]
    g64 = torch.autograd.grad(l64, uc)[0]
    torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-7)


def test_kernel_gradcheck(kernel, random_problem):
    uc, ur, strength, stratum = random_problem(6, n_strata=12, max_size=6)
    plan = make_rank_plan(strength, stratum)
    assert torch.autograd.gradcheck(lambda a, b: rr_loss(a, b, plan=plan, use_kernel=True), (uc, ur))


def test_kernel_refuses_double_backward(kernel):
    u = torch.randn(6, dtype=D64, requires_grad=True)
    loss = rr_loss(u, torch.zeros(6, dtype=D64), torch.arange(6.0, dtype=D64), use_kernel=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, u, create_graph=True)


def test_kernel_overflow_falls_back_to_the_stable_path(kernel, naive_rr):
    # exp(1e4) overflows inside the kernel; rr_loss must notice and recompute stably
    d = torch.tensor([1e4, -1e4, 3.0, 5e3], dtype=D64, requires_grad=True)
    strength, stratum = torch.tensor([0.0, 1.0, 2.0, 0.0], dtype=D64), torch.tensor([0, 0, 0, 1])
    loss = rr_loss(d, torch.zeros(4, dtype=D64), strength, stratum, use_kernel=True)
    ref = naive_rr(d, strength, stratum)
    torch.testing.assert_close(loss, ref)
    (g,) = torch.autograd.grad(loss, d)
    d_ref = d.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(naive_rr(d_ref, strength, stratum), d_ref)
    torch.testing.assert_close(g, g_ref)


def test_default_path_uses_the_kernel_when_built(kernel, random_problem):
    uc, ur, strength, stratum = random_problem(7)
    loss = LOSSES["rr"](uc, ur, strength, stratum)
    eager = rr_loss(uc, ur, strength, stratum, use_kernel=False)
    assert "RRFunction" in loss.grad_fn.name() and "RRFunction" not in eager.grad_fn.name()


def test_use_kernel_true_explains_what_is_wrong(kernel):
    u16 = torch.randn(4).half()
    with pytest.raises(RuntimeError, match="float32/float64"):
        rr_loss(u16, torch.zeros(4).half(), torch.arange(4.0), use_kernel=True)


def test_kernel_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("RLPREF_RR_KERNEL", "0")
    kernels.clear_cache()
    try:
        assert kernels.load() is None
        with pytest.raises(RuntimeError, match="disabled by RLPREF_RR_KERNEL"):
            rr_loss(torch.randn(3), torch.zeros(3), torch.arange(3.0), use_kernel=True)
    finally:
        monkeypatch.delenv("RLPREF_RR_KERNEL")
        kernels.clear_cache()


def test_kernel_with_only_one_input_requiring_grad(kernel, random_problem):
    uc, ur, strength, stratum = random_problem(8)
    plan = make_rank_plan(strength, stratum)
    fixed = ur.detach()
    (g_fast,) = torch.autograd.grad(rr_loss(uc, fixed, plan=plan, use_kernel=True), uc)
    (g_eager,) = torch.autograd.grad(rr_loss(uc, fixed, plan=plan, use_kernel=False), uc)
    torch.testing.assert_close(g_fast, g_eager, rtol=1e-12, atol=1e-15)


def test_kernel_threaded_rows_match_eager(kernel):
    # more rows than the kernel's parallel grain (2048), so two threads split them
    g = torch.Generator().manual_seed(9)
    n = 12_000
    uc = torch.randn(n, generator=g, dtype=D64, requires_grad=True)
    ur = torch.randn(n, generator=g, dtype=D64)
    plan = make_rank_plan(torch.randperm(n, generator=g).to(D64), torch.arange(n) // 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = rr_loss(uc, ur, plan=plan, use_kernel=True)
        (g_fast,) = torch.autograd.grad(fast, uc)
    finally:
        torch.set_num_threads(threads)
    eager = rr_loss(uc, ur, plan=plan, use_kernel=False)
    (g_eager,) = torch.autograd.grad(eager, uc)
    torch.testing.assert_close(fast, eager, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_fast, g_eager, rtol=1e-12, atol=1e-18)


def test_kernel_float32_long_stratum_is_as_accurate_as_eager(kernel):
    # One stratum of 100k (rr_pooled). Float32 running sums would put the gradient's suffix sums ~5e-6 off
    # (relative); the kernel accumulates in double, as torch's cumsum does for the eager path (~1e-7).
    g = torch.Generator().manual_seed(10)
    n = 100_000
    d64 = torch.randn(n, generator=g, dtype=D64)
    plan = make_rank_plan(torch.randperm(n, generator=g).to(D64))

    def grad(d, use_kernel):
        d = d.clone().requires_grad_()
        return torch.autograd.grad(rr_loss(d, torch.zeros_like(d), plan=plan, use_kernel=use_kernel), d)[0].double()

    ref = grad(d64, False)
    scale = float(ref.abs().max())
    err_fast = float((grad(d64.float(), True) - ref).abs().max()) / scale
    err_eager = float((grad(d64.float(), False) - ref).abs().max()) / scale
    assert err_fast <= 2 * err_eager + 1e-7, (err_fast, err_eager)
