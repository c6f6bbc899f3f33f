"""Parity and properties of the production drifting loss (methods/drifting/loss.py).

``official_drift_loss`` below is our own plain re-statement of the official release's algorithm
(github.com/lambertae/drifting, drift_loss.py; PAPER.md sections 2.4-2.7), written line by line from the
spec with no batching tricks, chunking or diagnostics: the expanded-form distance with its 1e-8 clip,
targets [gen, neg, pos], one weighted-mean scale, +100 self mask on normalised distances, the clipped
geometric-mean affinity, cross-weighting, per-temperature RMS normalisation and the per-group MSE.
"""
from __future__ import annotations

import math

import pytest
import torch

from methods.drifting.field import drift_mse, drifting_field
from methods.drifting.loss import DriftLossOptions, drift_loss


def official_drift_loss(gen, pos, neg=None, w_gen=None, w_pos=None, w_neg=None, temps=(0.02, 0.05, 0.2)):
    b, cg, s = gen.shape
    if neg is None:
        neg = gen.new_zeros(b, 0, s)
    cn = neg.shape[1]
    w_gen = torch.ones(b, cg, dtype=gen.dtype) if w_gen is None else w_gen
    w_pos = torch.ones(b, pos.shape[1], dtype=gen.dtype) if w_pos is None else w_pos
    w_neg = torch.ones(b, cn, dtype=gen.dtype) if w_neg is None else w_neg
    old = gen.detach()
    targets = torch.cat([old, neg, pos], 1)
    tw = torch.cat([w_gen, w_neg, w_pos], 1)
    with torch.no_grad():
        sq = (old * old).sum(-1)[:, :, None] + (targets * targets).sum(-1)[:, None, :] \
            - 2 * torch.einsum("bnd,bmd->bnm", old, targets)
        dist = sq.clamp(min=1e-8).sqrt()
        scale = (dist * tw[:, None, :]).mean() / tw.mean()
        scale_in = (scale / s ** 0.5).clamp(min=1e-3)
        old_s, tgt_s = old / scale_in, targets / scale_in
        dn = dist / scale.clamp(min=1e-3)
        mask = torch.zeros(cg, targets.shape[1], dtype=gen.dtype)
        mask[:, :cg] = torch.eye(cg, dtype=gen.dtype)
        dn = dn + 100.0 * mask[None]
        total = torch.zeros_like(old_s)
        info = {"scale": scale}
        for r in temps:
            logits = -dn / r
            aff = (logits.softmax(-1) * logits.softmax(-2)).clamp(min=1e-6).sqrt() * tw[:, None, :]
            a_neg, a_pos = aff[:, :, :cg + cn], aff[:, :, cg + cn:]
            coef = torch.cat([-a_neg * a_pos.sum(-1, keepdim=True), a_pos * a_neg.sum(-1, keepdim=True)], 2)
            force = torch.einsum("bit,bts->bis", coef, tgt_s) - coef.sum(-1)[..., None] * old_s
            fn = (force ** 2).mean()
            info[f"loss_{r}"] = fn
            total = total + force / fn.clamp(min=1e-8).sqrt()
        goal = old_s + total
    return ((gen / scale_in - goal) ** 2).mean(dim=(-1, -2)), info


def _inputs(dtype, g=3, n=12, p=10, m=5, d=16, seed=0, weights=True, negatives=True):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    x = (r(g, n, d) * 1.5 + 0.3).requires_grad_()
    pos = r(g, p, d) + 0.5
    neg = r(g, m, d) * 2 if negatives else None
    kw = {}
    if weights:
        u = lambda *s: torch.rand(*s, generator=gen, dtype=dtype) * 3 + 0.1  # noqa: E731
        kw = {"w_gen": u(g, n), "w_pos": u(g, p)}
        if negatives:
            kw["w_neg"] = u(g, m)
    return x, pos, neg, kw


def _loss_and_grad(fn, x, *args, **kw):
    x = x.detach().clone().requires_grad_()
    loss, info = fn(x, *args, **kw)
    (loss * torch.arange(1, len(loss) + 1, dtype=loss.dtype)).sum().backward()
    return loss.detach(), x.grad, info


def _rel(a, b):
    """Norm-wise relative error ||a - b|| / ||b||."""
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("negatives", [False, True])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_parity_with_official_restatement(negatives, weights, dtype, tol):
    x, pos, neg, kw = _inputs(dtype, weights=weights, negatives=negatives)
    l_ref, g_ref, info_ref = _loss_and_grad(official_drift_loss, x, pos, neg, **kw)
    l, g, info = _loss_and_grad(drift_loss, x, pos, neg, **kw)
    assert _rel(l, l_ref) < tol
    assert _rel(g, g_ref) < tol
    info_tol = max(tol, 1e-4)       # diagnostics: fp32 rounding of small mean squares
    assert abs(float(info["scale"] / info_ref["scale"]) - 1) < info_tol
    for t in (0.02, 0.05, 0.2):
        assert abs(float(info[f"drift_sq/{t:g}"] / info_ref[f"loss_{t}"]) - 1) < info_tol


def test_parity_with_temperature_order_and_single_temperature():
    x, pos, neg, kw = _inputs(torch.float64, seed=3)
    for temps in [(0.2, 0.05, 0.02), (0.05,)]:
        l_ref, g_ref, _ = _loss_and_grad(official_drift_loss, x, pos, neg, temps=temps, **kw)
        l, g, _ = _loss_and_grad(drift_loss, x, pos, neg, temperatures=temps, **kw)
        assert _rel(l, l_ref) < 1e-10 and _rel(g, g_ref) < 1e-10


def test_chunking_does_not_change_results():
    x, pos, neg, kw = _inputs(torch.float64, g=7, seed=1)
    l1, g1, i1 = _loss_and_grad(drift_loss, x, pos, neg, **kw)
    opts = DriftLossOptions(max_elements=12 * 27 * 2)     # chunks of 2 groups
    l2, g2, i2 = _loss_and_grad(drift_loss, x, pos, neg, opts=opts, **kw)
    assert _rel(l2, l1) < 1e-12 and _rel(g2, g1) < 1e-12
    assert all(abs(float(i1[k] - i2[k])) <= 1e-12 * abs(float(i1[k])) for k in i1)


def test_reduces_to_algorithm_2():
    """One temperature, no normalisations, no affinity floor: the loss and gradient of Alg. 1/2."""
    torch.manual_seed(0)
    x = torch.randn(40, 2, dtype=torch.float64).requires_grad_()
    pos = torch.randn(40, 2, dtype=torch.float64) * 0.5 + 1.0
    opts = DriftLossOptions(normalize_distance=False, normalize_drift=False, affinity_clamp=0.0)
    loss, _ = drift_loss(x[None], pos[None], temperatures=(0.3,), opts=opts)
    (g,) = torch.autograd.grad(loss.sum(), x)
    v = drifting_field(x.detach(), pos, x.detach(), 0.3)
    x2 = x.detach().clone().requires_grad_()
    ref = drift_mse(x2, v)
    ref.backward()
    assert torch.allclose(loss[0], ref, rtol=1e-12)
    assert torch.allclose(g, x2.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(g, -2 * v / v.numel(), rtol=1e-10, atol=1e-14)   # App. C.2: dL/dx = -2V/D (mean)


def test_reduces_to_algorithm_2_with_extra_negatives_and_y_norm():
    torch.manual_seed(1)
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    pos, neg = torch.randn(2, 20, 3, dtype=torch.float64), torch.randn(2, 9, 3, dtype=torch.float64) * 2
    for norm in ("xy", "y", "none"):
        opts = DriftLossOptions(normalize_distance=False, normalize_drift=False, affinity_clamp=0.0,
                                kernel_norm=norm)
        loss, _ = drift_loss(x, pos, neg, temperatures=(0.5,), opts=opts)
        v = drifting_field(x, pos, torch.cat([x, neg], 1), 0.5, kernel_norm=norm)
        assert torch.allclose(loss, v.pow(2).mean(dim=(1, 2)), rtol=1e-10)


def test_scale_invariance():
    """PAPER.md section 12.8: with the normalisations, c * phi gives the same loss as phi."""
    x, pos, neg, kw = _inputs(torch.float64, seed=2)
    l1, _ = drift_loss(x.detach(), pos, neg, **kw)
    l2, _ = drift_loss(7.5 * x.detach(), 7.5 * pos, 7.5 * neg, **kw)
    assert torch.allclose(l1, l2, rtol=1e-6)     # up to the fixed 1e-4 self-distance floor


def test_equilibrium_and_swap_antisymmetry():
    """V is anti-symmetric: swapping the roles of positives and negatives flips the drift."""
    torch.manual_seed(4)
    x = torch.randn(1, 16, 4, dtype=torch.float64)
    a, b = torch.randn(1, 20, 4, dtype=torch.float64), torch.randn(1, 20, 4, dtype=torch.float64) + 1
    opts = DriftLossOptions(normalize_distance=False, normalize_drift=False, affinity_clamp=0.0)
    # x plays a generated sample that is not among the negatives: take gen weights 0.
    w0 = torch.zeros(1, 16, dtype=torch.float64)
    xg = x.clone().requires_grad_()
    l_ab, _ = drift_loss(xg, a, b, w_gen=w0, temperatures=(1.0,), opts=opts)
    (g_ab,) = torch.autograd.grad(l_ab.sum(), xg)
    xg = x.clone().requires_grad_()
    l_ba, _ = drift_loss(xg, b, a, w_gen=w0, temperatures=(1.0,), opts=opts)
    (g_ba,) = torch.autograd.grad(l_ba.sum(), xg)
    assert torch.allclose(g_ab, -g_ba, rtol=1e-10, atol=1e-14)
    # Equal positive and negative sets: V = 0 exactly.
    l_aa, _ = drift_loss(x, a, a, w_gen=w0, temperatures=(1.0,), opts=opts)
    assert float(l_aa.max()) < 1e-25


def test_normalised_drift_has_unit_rms_per_temperature():
    x, pos, neg, _ = _inputs(torch.float64, seed=5)
    loss, info = drift_loss(x.detach(), pos, neg, temperatures=(0.05,), opts=DriftLossOptions(affinity_clamp=0))
    assert abs(float(loss.mean()) - 1.0) < 1e-9          # E||V~||^2 / D = 1 (Eq. 25), equal groups
    assert float(info["attract_sq/0.05"]) > 0 and float(info["repel_sq/0.05"]) > 0


def test_weight_zero_negatives_act_only_through_the_softmax():
    """CFG at alpha = 1 (w = 0): the weights multiply the affinity after the softmaxes (as the release), so
    zero-weight negatives exert no force and do not enter S, but nearby ones still share the row
    softmax (the paper: training at alpha = 1 is still influenced by them). Far away they are inert."""
    x, pos, neg, _ = _inputs(torch.float64, seed=6, weights=False)
    w0 = torch.zeros(neg.shape[:2], dtype=neg.dtype)
    l1, i1 = drift_loss(x.detach(), pos)
    l_far, i_far = drift_loss(x.detach(), pos, neg + 1e4, w_neg=w0)
    l_near, _ = drift_loss(x.detach(), pos, neg, w_neg=w0)
    assert torch.allclose(l1, l_far, rtol=1e-10) and torch.allclose(i1["scale"], i_far["scale"], rtol=1e-12)
    assert not torch.allclose(l1, l_near, rtol=1e-3)


def test_attraction_only_and_scales():
    x, pos, neg, _ = _inputs(torch.float64, seed=7, weights=False)
    base = DriftLossOptions(normalize_drift=False, affinity_clamp=0)
    _, info = drift_loss(x.detach(), pos, neg, temperatures=(0.1,), opts=base)
    _, info2 = drift_loss(x.detach(), pos, neg, temperatures=(0.1,),
                          opts=DriftLossOptions(normalize_drift=False, affinity_clamp=0, attraction=2.0))
    assert math.isclose(float(info2["attract_sq/0.1"]), 4 * float(info["attract_sq/0.1"]), rel_tol=1e-10)
    _, info3 = drift_loss(x.detach(), pos, neg, temperatures=(0.1,),
                          opts=DriftLossOptions(normalize_drift=False, affinity_clamp=0, repulsion=0.0))
    assert float(info3["repel_sq/0.1"]) < 1e-25
    assert math.isclose(float(info3["drift_sq/0.1"]), float(info3["attract_sq/0.1"]), rel_tol=1e-12)


def test_all_reduce_hook_sees_sums():
    """The hook receives the sums behind S and lambda; doubling them (two identical processes) is a no-op."""
    x, pos, neg, kw = _inputs(torch.float64, seed=8)
    seen = []
    l1, _ = drift_loss(x.detach(), pos, neg, **kw)
    l2, _ = drift_loss(x.detach(), pos, neg, all_reduce=lambda t: seen.append(t.shape) or 2 * t, **kw)
    assert torch.allclose(l1, l2, rtol=1e-12) and len(seen) == 2


@pytest.mark.parametrize("bad,msg", [
    (dict(pos=torch.zeros(2, 3, 5)), "pos must be"),
    (dict(w_pos=torch.ones(3, 5)), "weights of pos"),
    (dict(temperatures=()), "temperatures"),
    (dict(opts=DriftLossOptions(kernel_norm="z")), "kernel_norm"),
    (dict(opts=DriftLossOptions(attraction=0, repulsion=0)), "both be 0"),
])
def test_bad_inputs_fail_clearly(bad, msg):
    args = dict(gen=torch.zeros(3, 4, 6), pos=torch.zeros(3, 4, 6))
    args.update(bad)
    with pytest.raises(ValueError, match=msg):
        drift_loss(**args)


def test_segments_equal_separate_calls():
    """Several keys of equal D in one call (segments) = one call per key (own S and lambdas)."""
    xa, pa, na, kwa = _inputs(torch.float64, g=3, seed=9)
    xb, pb, nb, kwb = _inputs(torch.float64, g=4, seed=10)
    xb = (xb * 5).detach().requires_grad_()
    la, ia = drift_loss(xa, pa, na, **kwa)
    lb, ib = drift_loss(xb, pb * 5, nb * 5, **kwb)
    cat = lambda k: torch.cat([kwa[k], kwb[k]])  # noqa: E731
    seg = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    l, info = drift_loss(torch.cat([xa, xb]), torch.cat([pa, pb * 5]), torch.cat([na, nb * 5]), w_gen=cat("w_gen"),
                         w_pos=cat("w_pos"), w_neg=cat("w_neg"), segments=seg, num_segments=2,
                         opts=DriftLossOptions(max_elements=12 * 27 * 2))
    assert torch.allclose(l, torch.cat([la, lb]), rtol=1e-10)
    for key in ia:
        assert torch.allclose(info[key], torch.stack([ia[key], ib[key]]), rtol=1e-10)
