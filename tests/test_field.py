"""Algebra of the drifting field, Algorithm 2 (PAPER.md sections 1.3-1.4 and 12.1)."""
import pytest
import torch

from methods.drifting.field import KERNEL_NORMS, drift_mse, drifting_field


def _sets(g=None, n=16, p=24, m=20, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lead = (g,) if g else ()
    x = torch.randn(*lead, n, d, generator=gen, dtype=torch.float64)
    y_pos = torch.randn(*lead, p, d, generator=gen, dtype=torch.float64) + 0.5
    y_other = torch.randn(*lead, m, d, generator=gen, dtype=torch.float64)
    return x, y_pos, torch.cat([x, y_other], dim=-2)


def _weights(x, y_pos, y_neg, t):
    """W+ and W- of Alg. 2 written out step by step (no self mask)."""
    logits = -torch.cat([torch.cdist(x, y_pos), torch.cdist(x, y_neg)], -1) / t
    a = torch.sqrt(logits.softmax(-1) * logits.softmax(-2))
    a_pos, a_neg = a.split([y_pos.shape[-2], y_neg.shape[-2]], -1)
    return a_pos * a_neg.sum(-1, keepdim=True), a_neg * a_pos.sum(-1, keepdim=True)


def test_x_terms_cancel_row_sums_agree():
    x, y_pos, y_neg = _sets()
    w_pos, w_neg = _weights(x, y_pos, y_neg, 0.7)
    torch.testing.assert_close(w_pos.sum(-1), w_neg.sum(-1), rtol=1e-12, atol=1e-14)
    # hence V = W+ y+ - W- y- equals (W+ y+ - rowsum x) - (W- y- - rowsum x): V+ - V- of Eq. 10
    v = drifting_field(x, y_pos, y_neg, 0.7, mask_self=False)
    rows = w_pos.sum(-1, keepdim=True)
    torch.testing.assert_close(v, (w_pos @ y_pos - rows * x) - (w_neg @ y_neg - rows * x))


@pytest.mark.parametrize("norm", KERNEL_NORMS)
def test_swapping_positives_and_negatives_flips_v(norm):
    x, y_pos, _ = _sets()
    y_neg = torch.randn(30, x.shape[1], dtype=torch.float64)
    v = drifting_field(x, y_pos, y_neg, 0.5, mask_self=False, kernel_norm=norm)
    v_swapped = drifting_field(x, y_neg, y_pos, 0.5, mask_self=False, kernel_norm=norm)
    torch.testing.assert_close(v_swapped, -v)


@pytest.mark.parametrize("norm", KERNEL_NORMS)
def test_v_vanishes_when_positives_and_negatives_are_the_same_set(norm):
    x, y_pos, _ = _sets()
    v = drifting_field(x, y_pos, y_pos.clone(), 0.3, mask_self=False, kernel_norm=norm)
    assert v.abs().max() < 1e-12


def test_equals_notebook_form_k_over_sqrt_rowsum_colsum():
    """The official toy notebook's k / sqrt(rowsum(k) colsum(k)) on the raw kernel equals Alg. 2."""
    x, y_pos, y_neg = _sets()
    t = 0.4
    y = torch.cat([y_pos, y_neg])
    k = torch.exp(-torch.cdist(x, y) / t)
    a = k / torch.sqrt(k.sum(1, keepdim=True) * k.sum(0, keepdim=True))
    a_pos, a_neg = a.split([len(y_pos), len(y_neg)], 1)
    v_nb = (a_pos * a_neg.sum(1, keepdim=True)) @ y_pos - (a_neg * a_pos.sum(1, keepdim=True)) @ y_neg
    torch.testing.assert_close(drifting_field(x, y_pos, y_neg, t, mask_self=False), v_nb)


def test_self_mask_excludes_each_sample_from_its_own_negatives():
    x, y_pos, y_neg = _sets()
    v = drifting_field(x, y_pos, y_neg, 0.5, mask_self=True)
    # Masking by hand: sample j never sees negative column j (itself).
    n, p = x.shape[0], y_pos.shape[0]
    logits = -torch.cat([torch.cdist(x, y_pos), torch.cdist(x, y_neg)], -1) / 0.5
    logits[torch.arange(n), p + torch.arange(n)] = -float("inf")
    for i in (0, 7, n - 1):
        a = torch.sqrt(logits.softmax(-1) * logits.softmax(-2))[i]
        a_pos, a_neg = a[:y_pos.shape[0]], a[y_pos.shape[0]:]
        v_i = a_neg.sum() * (a_pos @ y_pos) - a_pos.sum() * (a_neg @ y_neg)
        torch.testing.assert_close(v[i], v_i)


def test_groups_are_independent():
    x, y_pos, y_neg = _sets(g=3)
    v = drifting_field(x, y_pos, y_neg, 0.5)
    for g in range(3):
        torch.testing.assert_close(v[g], drifting_field(x[g], y_pos[g], y_neg[g], 0.5))


def test_loss_value_is_mean_v_squared_and_gradient_is_minus_two_v_over_nd():
    x, y_pos, y_neg = _sets()
    x = x.clone().requires_grad_(True)
    v = drifting_field(x.detach(), y_pos, y_neg, 0.5)
    loss = drift_mse(x, v)
    n, d = x.shape
    torch.testing.assert_close(loss, v.pow(2).sum(-1).mean() / d)
    loss.backward()
    torch.testing.assert_close(x.grad, -2 * v / (n * d))


def test_drift_grows_with_the_mismatch_between_p_and_q():
    """Finite-sample floor (PAPER.md 12.2): E||V||^2 is small at p = q and grows with a mean shift."""
    g = torch.Generator().manual_seed(1)
    norms = []
    for shift in (0.0, 0.5, 2.0):
        trials = []
        for _ in range(20):
            x = torch.randn(64, 8, generator=g, dtype=torch.float64)
            y_pos = torch.randn(64, 8, generator=g, dtype=torch.float64)
            y_pos[:, 0] += shift
            trials.append(drifting_field(x, y_pos, x, 1.0).pow(2).sum(-1).mean())
        norms.append(torch.stack(trials).mean().item())
    assert norms[0] > 0 and norms[0] < norms[1] < norms[2]
    assert norms[2] > 4 * norms[0]


def test_mask_self_needs_x_among_the_negatives():
    x, y_pos, _ = _sets()
    with pytest.raises(ValueError, match="first rows of y_neg"):
        drifting_field(x, y_pos, x[:3], 0.5)


def test_unknown_kernel_norm():
    x, y_pos, y_neg = _sets()
    with pytest.raises(ValueError, match="choose one of: xy, y, none"):
        drifting_field(x, y_pos, y_neg, 0.5, kernel_norm="x")


def test_mmd_field_is_minus_half_n_times_the_mmd_gradient():
    """App. C.2: V_MMD(x_i) = -(N/2) d MMD^2(q, p) / d x_i for the Gaussian kernel (U-statistic within q)."""
    from methods.drifting.field import mmd_field
    torch.manual_seed(0)
    x = torch.randn(2, 12, 3, dtype=torch.float64).requires_grad_()
    y = torch.randn(2, 9, 3, dtype=torch.float64) + 0.5
    s = 0.7
    k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * s * s))  # noqa: E731
    n = x.shape[1]
    off = 1 - torch.eye(n, dtype=torch.float64)
    mmd2 = (k(x, x) * off).sum((1, 2)) / (n * (n - 1)) - 2 * k(x, y).mean((1, 2)) + k(y, y).mean((1, 2))
    (grad,) = torch.autograd.grad(mmd2.sum(), x)
    assert torch.allclose(mmd_field(x.detach(), y, s), -n / 2 * grad, rtol=1e-10, atol=1e-13)
